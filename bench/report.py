"""Plots and the self-contained HTML report of a leaderboard (matplotlib, PNGs embedded as base64).

Every plot function returns PNG bytes so the same figure can be embedded in HTML, written to disk or
logged to MLflow as an artifact. matplotlib is imported lazily with the headless Agg backend, so nothing
here needs a display and importing this module stays cheap.

Example:
    >>> png = learning_curve_png([{"stage": "cls", "epoch": 0, "val_auroc": 0.7}])
    >>> png[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: CI and SSH sessions have no display
    import matplotlib.pyplot as plt

    return plt


def _png(fig, tight: bool = True) -> bytes:
    """PNG bytes of ``fig``; ``tight=False`` skips the bounding-box pass (a second full draw, about half the
    time of a small figure) for figures whose margins are set by hand, like the per-trial learning curve."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight" if tight else None, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def learning_curve_png(history: Iterable[Mapping[str, Any]]) -> bytes:
    """Per-epoch curves of one trial, one panel per stage (e.g. ``seg`` and ``cls``).

    Args:
        history: ``TrialResult.history``: dicts with ``stage``, ``epoch`` and metric values.

    Returns:
        PNG bytes.

    Raises:
        BenchError: when the history holds no record with a stage and an epoch.
    """
    rows = [dict(r) for r in history if "stage" in r and "epoch" in r]
    if not rows:
        raise BenchError("a learning curve needs history records with 'stage' and 'epoch', but got none. "
                         "Pass TrialResult.history of a trial that ran at least one epoch.")
    frame = pd.DataFrame(rows)
    stages = list(dict.fromkeys(frame["stage"]))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(stages), figsize=(4.5 * len(stages), 3.2), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        part = frame[frame["stage"] == stage].sort_values("epoch")
        for col in part.columns.drop(["stage", "epoch"]):
            values = pd.to_numeric(part[col], errors="coerce")
            if values.notna().any():
                # Losses and scores share one axis; markers keep single-epoch stages visible.
                ax.plot(part["epoch"], values, marker="o", label=col)
        ax.set_title(f"stage {stage}")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    # Fixed margins instead of a tight bounding box: this figure is drawn once per trial, on its clock.
    fig.subplots_adjust(left=0.1 / len(stages), right=1 - 0.02 / len(stages), bottom=0.16, top=0.88, wspace=0.25)
    return _png(fig, tight=False)


def anytime_png(table: pd.DataFrame, objective: str, higher: bool) -> bytes:
    """Best objective so far against trials, epochs and run time spent (the search's anytime performance).

    Trials are taken in trial order; every run spends resources (pruned and failed ones too: their
    ``epochs_trained`` and ``run_seconds``), only COMPLETE trials can improve the best. A resource panel is
    drawn only when the table has its column (older stores lack ``epochs_trained``).
    """
    ordered = table[pd.to_numeric(table["trial"], errors="coerce").notna()].sort_values("trial")
    complete = ordered.index.isin(_complete(ordered, objective).index)
    values = pd.to_numeric(ordered[objective], errors="coerce").where(complete)
    running = values.fillna(-np.inf if higher else np.inf)
    best = (running.cummax() if higher else running.cummin()).replace([np.inf, -np.inf], np.nan)
    axes_spec = [("trial number", ordered["trial"].to_numpy(float))]
    for column, label in (("epochs_trained", "epochs spent (all trials)"), ("run_seconds", "run time spent (s)")):
        spent = pd.to_numeric(ordered[column], errors="coerce") if column in ordered else pd.Series(dtype=float)
        if spent.notna().any():
            axes_spec.append((label, spent.fillna(0).cumsum().to_numpy(float)))
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(axes_spec), figsize=(4.2 * len(axes_spec), 3.2), squeeze=False, sharey=True)
    from matplotlib.ticker import MaxNLocator

    for ax, (label, x) in zip(axes[0], axes_spec):
        if complete.any():
            ax.scatter(x[complete], values[complete], s=14, alpha=0.5, label="complete trial")
            ax.step(x, best, where="post", color="C3", label="best so far")
            ax.legend(fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(objective)
    return _png(fig)


def strategy_png(table: pd.DataFrame, objective: str, by: str = "guidance") -> bytes:
    """Box plot with the individual trials overlaid (strip) of the objective per value of ``by``; each tick
    says its number of complete trials (a box of n = 1 is a single line)."""
    done = _complete(table, objective)
    groups = ({f"{k} (n={len(g)})": g[objective].to_numpy(float) for k, g in done.groupby(done[by].astype(str))}
              if not done.empty and by in done else {})
    return _box_strip_png(groups, by, objective)


def case_dice_png(per_strategy: Mapping[str, np.ndarray], name: str, by: str) -> bytes:
    """Box plot of per-case validation Dice, one box per strategy (its best trial), cases overlaid."""
    return _box_strip_png(per_strategy, f"{by} (best trial of each)", f"{name} per case")


def _box_strip_png(groups: Mapping[str, np.ndarray], xlabel: str, ylabel: str) -> bytes:
    """One box per group with its values overlaid as jittered points; an empty mapping gives empty axes."""
    plt = _pyplot()
    # wide enough that every box keeps ~0.8 inch: a comparison's seven arms were squeezed into 5 inches
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(groups) + 2.0), 3.6))
    if groups:
        labels = list(groups)
        ax.boxplot([groups[k] for k in labels], showfliers=False)
        # One tick per box; long or many names are slanted so they do not run into each other.
        slanted = len(labels) > 3 or max(len(k) for k in labels) > 12
        ax.set_xticks(range(1, len(labels) + 1), labels, rotation=25 if slanted else 0,
                      ha="right" if slanted else "center")
        jitter = np.random.default_rng(0)  # fixed so the exported report is reproducible
        for i, k in enumerate(labels, start=1):
            ax.scatter(i + jitter.uniform(-0.12, 0.12, len(groups[k])), groups[k], s=12, alpha=0.65)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, axis="y")
    return _png(fig)


def importances_png(importances: Mapping[str, float]) -> bytes:
    """Horizontal bar chart of Optuna parameter importances."""
    names = list(importances)[::-1]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 0.4 * len(names) + 1))
    ax.barh(names, [importances[n] for n in names])
    ax.set_xlabel("importance (fANOVA)")
    return _png(fig)


def study_importances(storage: str, study: str) -> dict[str, float]:
    """Optuna parameter importances of a study, read from its storage (journal file or RDB URL).

    Raises:
        BenchError: when the storage is missing or the study has too few finished trials.
    """
    import optuna

    if "://" not in storage:
        if not Path(storage).exists():
            raise BenchError(f"the Optuna journal must exist to compute importances, but got '{storage}'. "
                             "Run the leaderboard in the search's folder.")
        from optuna.storages.journal import JournalFileBackend

        # Opened read-only in effect: we never write, and the journal format tolerates concurrent readers.
        store: Any = optuna.storages.JournalStorage(JournalFileBackend(storage))
    else:
        store = storage
    try:
        loaded = optuna.load_study(study_name=study, storage=store)
        return dict(optuna.importance.get_param_importances(loaded))
    except Exception as exc:  # Optuna raises KeyError/RuntimeError/ValueError depending on what is missing
        raise BenchError(f"parameter importances need a study with ≥2 finished trials and a varying "
                         f"parameter, but study '{study}' gave: {exc}. Run more trials.") from exc


def _complete(table: pd.DataFrame, objective: str) -> pd.DataFrame:
    done = table[table["state"].eq("COMPLETE")] if "state" in table else table
    return done[pd.to_numeric(done[objective], errors="coerce").notna()]


@dataclass(frozen=True)
class Figure:
    """A report figure: its heading, the PNG and a caption saying what it shows (strategy, trial, axes)."""

    title: str
    png: bytes
    caption: str


REPORT_CSS = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}h1{margin-bottom:.2em}"
    "dl.headline{display:grid;grid-template-columns:max-content auto;gap:2px 12px;margin:0 0 1em}"
    "dl.headline dt{font-weight:bold;color:#555}dl.headline dd{margin:0}"
    "table{border-collapse:collapse;font-size:12px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:2px 6px}"
    "th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "figure{display:inline-block;vertical-align:top;width:48%;margin:0 1% 1.5em 0}figure.wide{width:98%}"
    "figure img{max-width:100%}"
    "figcaption{font-size:13px;color:#333}figcaption b{display:block;margin-bottom:2px}"
    ".notes{color:#555;font-size:13px}.scroll{overflow-x:auto}"
)


def html_table(frame: pd.DataFrame) -> str:
    """``frame`` as an HTML table with the terminal's number format (4 significant digits, ``-`` for none);
    a named index (``rank``) is the first column, a plain row counter is left out."""
    from bench.tables import NO_VALUE, number

    if frame.index.name is None and isinstance(frame.index, pd.RangeIndex):
        frame = frame.reset_index(drop=True)
    else:
        frame = frame.reset_index()
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for value, is_num in zip(row, numeric):
            if is_num:
                cells.append(f'<td class="num">{html.escape(number(value))}</td>')
            else:
                cells.append(f"<td>{html.escape(NO_VALUE if pd.isna(value) else str(value))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _wide(png: bytes) -> str:
    """`` class='wide'`` for a PNG over twice as wide as high (panels side by side, overlay rows): it gets
    the page's width instead of half of it."""
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")  # PNG IHDR
    return " class='wide'" if height and width > 2 * height else ""


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def html_report(title: str, headline: Mapping[str, str], top: pd.DataFrame, groups: pd.DataFrame | None,
                figures: Sequence[Figure], notes: Iterable[str], table: pd.DataFrame, by: str = "") -> str:
    """A single HTML file a reviewer reads top-down: the headline (task, objective, data, split, trials, wall
    time), the top trials, the strategy summary, the captioned figures, notes, and the full table last.

    Args:
        title: page title.
        headline: label -> value, shown first.
        top: the ranked top trials (a few columns: the terminal's).
        groups: the strategy summary (:func:`bench.leaderboard.group_summary`) or None.
        figures: captioned figures, in reading order.
        notes: sentences on what could not be computed or how to read the numbers.
        table: every trial with every column.
        by: the strategy column of ``groups``.
    """
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<dl class='headline'>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                          for k, v in headline.items()) + "</dl>",
        f"<h2>Top {len(top)} trials</h2>", "<div class='scroll'>", html_table(top), "</div>",
    ]
    if groups is not None and not groups.empty:
        # a group of one trial has no CI: "-" there, and a note says why
        parts += [f"<h2>Strategies ({html.escape(by)})</h2>", html_table(groups)]
    if figures:
        parts.append("<h2>Figures</h2>")
        for fig in figures:
            parts.append(f"<figure{_wide(fig.png)}>{_img(fig.png, fig.title)}<figcaption><b>{html.escape(fig.title)}</b>"
                         f"{html.escape(fig.caption)}</figcaption></figure>")
    notes = list(notes)
    if notes:
        parts += ["<h2>Notes</h2>", "<ul class='notes'>", *[f"<li>{html.escape(n)}</li>" for n in notes], "</ul>"]
    parts += [f"<h2>All {len(table)} trials, every column</h2>", "<div class='scroll'>", html_table(table),
              "</div></body></html>"]
    return "\n".join(parts)


def headline(tracker: Any, table: pd.DataFrame, objective: str, direction: str,
              searches: list[dict[str, object]], study: str | None) -> dict[str, str]:
    """The report's first lines: task, objective and the best trial, data, split hash, trial counts and wall
    time (the finished searches' logged seconds, else the trials' run times summed).

    Args:
        tracker: the task's tracker (the best trial's params are read from it).
        table: a :func:`bench.leaderboard.leaderboard` table, best first.
        objective: its objective column; ``direction``: "higher" or "lower".
        searches: :func:`bench.leaderboard._search_runs` rows (seconds, split_hash).
        study: the study the table is limited to, if any.
    """
    from bench.tables import number

    states = table["state"].value_counts()
    counts = ", ".join(f"{int(states[s])} {w}" for s, w in (("COMPLETE", "complete"), ("PRUNED", "pruned"),
                                                             ("FAIL", "failed"), ("RUNNING", "running"))
                       if s in states)
    best = table.iloc[0]
    params = tracker.run(str(best["run_id"])).data.params
    data = params.get("data", "?")
    source = "built-in phantom" if data == "phantom" else f"folder {data} ({params.get('data_format', '?')})"
    splits = sorted({str(s["split_hash"]) for s in searches if s["split_hash"]} | {params.get("split_hash", "")}
                    - {""})
    seconds = [float(s["seconds"]) for s in searches if not np.isnan(float(s["seconds"]))]
    if seconds:
        wall = f"{sum(seconds):,.0f} s ({len(seconds)} search{'es' if len(seconds) > 1 else ''})"
    else:
        wall = f"{table['run_seconds'].sum():,.0f} s (trial run times summed; no finished search run)"
    return {
        "task": tracker.task + (f", study {study}" if study else ""),
        "objective": f"{objective} ({direction} is better); best {number(best[objective])} by {best['run']}",
        "data": f"{source}, fold {params.get('fold', '?')}",
        "split hash": ", ".join(splits) or "not recorded",
        "trials": f"{len(table)} ({counts})",
        "wall time": wall,
    }


def overlay_png(images, true_masks, pred_masks, saliency=None, titles=None) -> bytes:
    """Predictions overlaid on a few cases: image in grey, true mask contour green, predicted contour red.

    With ``saliency`` a second row shows each image with the saliency map as a semi-transparent heat map.

    Args:
        images: (N,H,W) or (N,1,H,W) arrays or tensors (N is usually 4 validation cases).
        true_masks: ground-truth masks, same shape as ``images``.
        pred_masks: predicted masks, same shape as ``images``.
        saliency: optional non-negative saliency maps, same shape as ``images``.
        titles: optional one title per case (never a patient identifier).

    Returns:
        PNG bytes.

    Raises:
        BenchError: when there are no cases or the arrays do not have the same number of cases.
    """
    imgs, trues, preds = (_as_2d_stack(a) for a in (images, true_masks, pred_masks))
    sal = _as_2d_stack(saliency) if saliency is not None else None
    counts = {len(imgs), len(trues), len(preds)} | ({len(sal)} if sal is not None else set())
    if len(imgs) == 0 or len(counts) != 1:
        raise BenchError(f"an overlay needs the same non-zero number of images, masks and saliency maps, but got "
                         f"{sorted(counts)}. Pass aligned arrays of the same cases.")
    n, rows = len(imgs), 2 if sal is not None else 1
    plt = _pyplot()
    fig, axes = plt.subplots(rows, n, figsize=(2.4 * n, 2.4 * rows), squeeze=False)
    for i in range(n):
        ax = axes[0][i]
        ax.imshow(imgs[i], cmap="gray")
        for mask, colour in ((trues[i], "lime"), (preds[i], "red")):
            if mask.max() > 0.5 and mask.min() < 0.5:  # contour needs both levels present
                ax.contour(mask, levels=[0.5], colors=colour, linewidths=1.0)
        ax.set_title(titles[i] if titles else f"case {i}", fontsize=8)
        if sal is not None:
            ax2 = axes[1][i]
            ax2.imshow(imgs[i], cmap="gray")
            ax2.imshow(sal[i], cmap="jet", alpha=0.45)
            ax2.set_title("saliency", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("green: true mask, red: predicted", fontsize=8)
    return _png(fig)


def _as_2d_stack(values) -> np.ndarray:
    """(N,H,W) float array from (N,H,W) or (N,1,H,W) arrays or tensors."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=float)
    if arr.ndim == 4:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise BenchError(f"overlay arrays must be (N,H,W) or (N,1,H,W), but got shape {arr.shape}. "
                         "Stack the cases along the first axis.")
    return arr
