"""What a comparison writes: results.csv, results.md, plots, report.html (also its parent run's artifacts),
and the cross-task summary of ``--summarize`` (Friedman test, Nemenyi critical-difference diagram).
"""

from __future__ import annotations

import base64
import html
import io
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from bench.compare.read import RESULTS_CSV
from bench.compare_plots import case_strip_png, cd_diagram_png, forest_png
from bench.compare_stats import (
    friedman_nemenyi,
    per_case_means,
    results_csv,
    results_display,
    results_markdown,
)
from bench.config import atomic_write_text
from bench.errors import BenchError

if TYPE_CHECKING:
    from bench.compare.result import ComparisonResult
    from bench.tracking import Tracker


def figures(result: ComparisonResult) -> dict[str, bytes]:
    """forest.png (differences in the primary metric), forest-more-<k>.png (the other metrics, three per
    figure) and cases-<metric>.png per per-case metric."""
    table = result.analysis.table
    out = {}
    if (table["verdict"] != "baseline").any():
        out["forest.png"] = forest_png(table[table["metric"] == result.metric])
        others = [m for m in dict.fromkeys(table["metric"]) if m != result.metric]
        for k in range(0, len(others), 3):
            out[f"forest-more-{k // 3 + 1}.png"] = forest_png(table[table["metric"].isin(others[k : k + 3])])
    for metric in result.cases.per_case:
        if metric in set(table["metric"]):
            frame = result.cases.frame[["arm", "fold", "seed", "case", metric]]
            out[f"cases-{metric}.png"] = case_strip_png(per_case_means(frame, metric), metric)
    return out


def header_lines(result: ComparisonResult) -> list[str]:
    s = result.settings
    lines = [
        (f"comparison {result.name}: task {result.task}, dimension {s['dimension']}, arms {s['arms']}, "
         f"baseline {s['baseline']}"),
        (f"{s['folds']} folds x seeds {s['seeds']} ({s['mode']} mode, {s['config_source']}), preset "
         f"{s['preset']}, split sha256 {s.get('split_sha256', '')[:16]}…, commit {s.get('commit', '?')}"),
        (f"primary metric {result.metric}; runs: {result.n_ran} ran now, {result.n_skipped} finished earlier, "
         f"{result.n_failed} failed; {result.trial_hours_total:.3f} trial-hours in all"),
    ]
    if result.dropped_cells:
        lines.append(f"(fold, seed) cells left out because some arm did not finish there: {result.dropped_cells}")
    return lines


def write_outputs(result: ComparisonResult, out_dir: str | Path) -> list[Path]:
    """Write results.csv, results.md, runs.csv, verdicts.txt, the PNGs and report.html into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = result.analysis.table
    paths = [out / RESULTS_CSV, out / "results.md", out / "runs.csv", out / "verdicts.txt"]
    results_csv(table, paths[0])
    head = "\n".join(f"- {line}" for line in header_lines(result))
    verdicts = "\n".join(f"- {v}" for v in result.analysis.verdicts)
    notes = "\n".join(f"- {n}" for n in result.analysis.notes)
    markdown = (f"# Comparison {result.name}\n\n{head}\n\n## Verdicts ({result.metric})\n\n{verdicts}\n\n"
                f"## Results\n\nThe verdicts are decided over training runs: every arm's value per fold x seed "
                f"run, paired with the baseline's, seeds averaged within a fold, a t test over the folds (Δ over "
                f"runs, p, adjusted p; none below 5 seeds). Mean and Δ vs baseline with their CIs are given these "
                f"models (a bootstrap of the validation cases). Unit of those: `case` = validation cases pooled "
                f"over folds (seed-averaged), `fold` = the metric within each fold x seed on its own cases, "
                f"averaged weighted by cases (cases resampled within folds), `run` = one value per fold x seed "
                f"run.\n\n{_markdown_by_unit(table)}"
                + (f"\n## Notes\n\n{notes}\n" if notes else ""))
    atomic_write_text(paths[1], markdown)
    atomic_write_text(paths[2], result.runs.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(paths[3], "\n".join(result.analysis.verdicts) + "\n")
    pngs = figures(result)
    for name, data in pngs.items():
        (out / name).write_bytes(data)
        paths.append(out / name)
    paths.append(out / "report.html")
    atomic_write_text(paths[-1], report_html(result, pngs))
    return paths


def _markdown_by_unit(table: pd.DataFrame) -> str:
    blocks = []
    for metric, part in table.groupby("metric", sort=False):
        text = results_markdown(part)
        blocks.append(text.replace(f"### {metric} (", f"### {metric} [unit: {part['unit'].iloc[0]}] (", 1))
    return "\n".join(blocks)


def _markdown_frame(frame: pd.DataFrame, decimals: int) -> str:
    """A frame as a Markdown table (index first), numbers rounded; pandas' to_markdown needs tabulate."""
    header = ["", *map(str, frame.columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in frame.iterrows():
        cells = [f"{v:.{decimals}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join([str(index), *cells]) + " |")
    return "\n".join(lines)


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


VERDICT_COLUMNS = ["arm", "n", "Δ over runs [CI]", "adjusted p", "verdict", "detectable Δ", "mean [CI]"]


def report_html(result: ComparisonResult, pngs: Mapping[str, bytes]) -> str:
    """One self-contained page, the answer first: the primary metric's verdict table, then settings, figures
    (one per row, at their own size: readable at 100 % zoom), every metric's results with numbers rounded to
    what their CIs support, notes and runs."""
    table = result.analysis.table
    primary = results_display(table[table["metric"] == result.metric])
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             f"<title>bench compare {html.escape(result.name)}</title>",
             ("<style>body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse;"
              "font-size:14px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
              "img{display:block;max-width:100%;margin:8px 0}</style></head><body>"),
             f"<h1>bench compare {html.escape(result.name)}</h1>",
             f"<h2>Verdicts: {html.escape(result.metric)}</h2>",
             primary[[c for c in VERDICT_COLUMNS if c in primary]].to_html(index=False, escape=True),
             "<ul>"] + [f"<li>{html.escape(v)}</li>" for v in result.analysis.verdicts] + ["</ul>"]
    parts += ["<h2>Settings</h2>"] + [f"<p>{html.escape(line)}</p>" for line in header_lines(result)]
    parts += ["<h2>Figures</h2>"] + [_img(png, name) for name, png in pngs.items()]
    parts += ["<h2>All metrics</h2>", results_display(table).to_html(index=False, escape=True)]
    if result.analysis.notes:
        parts += ["<h2>Notes</h2><ul>"] + [f"<li>{html.escape(n)}</li>" for n in result.analysis.notes] + ["</ul>"]
    runs = result.runs[[c for c in ("arm", "fold", "seed", "state", "reason", "seconds", result.metric, "run_id")
                        if c in result.runs]]
    parts += ["<h2>Runs</h2>", runs.to_html(index=False, float_format=lambda x: f"{x:.4g}", na_rep=""),
              "</body></html>"]
    return "\n".join(parts)


def log_outputs(tracker: Tracker, parent: str, result: ComparisonResult) -> None:
    """The same files as parent-run artifacts."""
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        write_outputs(result, tmp)
        tracker.log_artifacts(parent, tmp)


# --- across tasks / data sets -------------------------------------------------------------------------
def summarize(run_ids: Sequence[str], out_dir: str | Path | None = None, alpha: float = 0.05
              ) -> tuple[pd.DataFrame, object, list[Path]]:
    """Friedman test and Nemenyi critical difference over several comparisons (Demšar 2006).

    Each comparison (its parent run id) contributes its primary metric's arm means as one row; arms are
    ranked within each row. Comparisons must share the arms (their intersection is used) and the metric
    direction.

    Returns:
        (scores: comparison x arm, the FriedmanResult, the files written to ``out_dir``).

    Raises:
        BenchError: an id that is not a comparison's parent run, fewer than 2 common arms, or directions
            that disagree.
    """
    from bench.tracking import client as store_client
    from bench.tracking import read_run_artifact

    client = store_client()
    rows, directions = {}, set()
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
            stored = read_run_artifact(client, run_id, RESULTS_CSV)
        except Exception as exc:  # noqa: BLE001  unknown run id or no results artifact
            raise BenchError(f"--summarize needs parent run ids of finished comparisons, but {run_id} has no "
                             f"{RESULTS_CSV} ({type(exc).__name__}). Use the id `bench compare` printed.") from None
        table = pd.read_csv(io.BytesIO(stored))
        metric = run.data.tags.get("metric") or table["metric"].iloc[0]
        part = table[table["metric"] == metric]
        directions.add(bool(part["higher_is_better"].iloc[0]))
        label = f"{run.data.tags.get('comparison', run_id)} ({metric})"
        rows[label] = part.set_index("arm")["mean"]
    if len(directions) > 1:
        raise BenchError("--summarize needs comparisons whose primary metrics point the same way, but got both "
                         "higher- and lower-is-better metrics. Pass --metric to align them.")
    scores = pd.DataFrame(rows).T
    common = scores.columns[scores.notna().all()]
    if len(common) < 2:
        raise BenchError(f"--summarize needs at least 2 arms shared by every comparison, but got "
                         f"{list(common)}. Compare the same arms on each task.")
    scores = scores[common]
    result = friedman_nemenyi(scores, directions.pop(), alpha)
    paths: list[Path] = []
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        scores.to_csv(out / "summary-scores.csv", float_format="%.6g")
        ranks = result.mean_ranks.to_frame()
        ranks.to_csv(out / "summary-ranks.csv", float_format="%.6g")
        verdict = (f"Friedman chi2 = {result.statistic:.3f}, p = {result.p:.3g}; Iman-Davenport F = "
                   f"{result.iman_davenport:.3f}, p = {result.p_iman_davenport:.3g}; Nemenyi CD = {result.cd:.3f} "
                   f"(alpha = {alpha:g}, {result.n_tasks} comparisons). {result.note}")
        png = None
        if result.rejects:  # the Nemenyi post-hoc test (the CD) only after Friedman's test rejects
            png = cd_diagram_png(result.mean_ranks, result.cd,
                                 title=f"Friedman p = {result.p:.3g}, CD = {result.cd:.2f} (alpha = {alpha:g})")
            (out / "cd_diagram.png").write_bytes(png)
        else:
            (out / "cd_diagram.png").unlink(missing_ok=True)  # a diagram of an earlier export would mislead
            verdict += (" Friedman's test does not reject that all arms rank alike, so no critical-difference "
                        "diagram is drawn (its pairwise comparisons are post-hoc tests).")
        text = (f"# Summary of {len(rows)} comparisons\n\n{verdict}\n\n"
                + _markdown_frame(scores, 4) + "\n\nMean ranks (1 = best):\n\n"
                + _markdown_frame(ranks, 3) + "\n")
        atomic_write_text(out / "summary.md", text)
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>bench compare summary</title></head>"
                f"<body style='font-family:sans-serif'><h1>Summary of {len(rows)} comparisons</h1>"
                f"<p>{html.escape(verdict)}</p>{_img(png, 'cd_diagram.png') if png else ''}"
                f"{scores.to_html(float_format=lambda x: f'{x:.4f}')}{ranks.to_html()}</body></html>")
        atomic_write_text(out / "report.html", page)
        paths = [out / n for n in ("summary-scores.csv", "summary-ranks.csv", "cd_diagram.png", "summary.md",
                                   "report.html") if (out / n).exists()]
    return scores, result, paths
