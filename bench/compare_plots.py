"""Plots of a comparison: forest plot of differences, per-case strip/box plots, critical-difference diagram.

Each function returns PNG bytes (for the HTML report, a file or an MLflow artifact). matplotlib is imported
lazily with the headless Agg backend through :mod:`bench.report`, so callers may import this module freely.
The critical-difference diagram follows Demšar (2006), "Statistical comparisons of classifiers over
multiple data sets", JMLR 7:1-30, figure 1.

Example:
    >>> cd_diagram_png({"dice": 1.4, "spread_dice": 2.1, "roi_dice": 2.5}, cd=1.2)[:4] == b"\\x89PNG"
    True
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bench.errors import BenchError
from bench.report import _box_strip_png, _png, _pyplot

VERDICT_COLOURS = {"better": "tab:green", "worse": "tab:red", "no detectable": "tab:gray"}
FOREST_COLUMNS = ("metric", "arm", "delta", "delta_low", "delta_high", "verdict", "baseline")


def _colour(verdict: str) -> str:
    return next((c for start, c in VERDICT_COLOURS.items() if verdict.startswith(start)), "black")


def forest_png(table: pd.DataFrame) -> bytes:
    """Difference of every arm from the baseline with its CI, one panel per metric (a forest plot).

    Args:
        table: results of :func:`bench.compare_stats.compare_arms` (several metrics may be concatenated);
            the baseline rows are left out, points are coloured by verdict.

    Raises:
        BenchError: when the table lacks a results column or has no arm besides the baseline.
    """
    missing = [c for c in FOREST_COLUMNS if c not in table]
    if missing:
        raise BenchError(f"a forest plot needs the results columns {list(FOREST_COLUMNS)}, but the table lacks "
                         f"{missing}. Pass the table compare_arms returns.")
    compared = table[table["verdict"] != "baseline"]
    if compared.empty:
        raise BenchError("a forest plot needs at least one arm besides the baseline, but got none. "
                         "Compare two or more arms.")
    metrics = list(dict.fromkeys(compared["metric"]))
    n_arms = compared.groupby("metric").size().max()
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics), 0.45 * n_arms + 1.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        part = compared[compared["metric"] == metric].iloc[::-1]  # first arm on top
        y = np.arange(len(part))
        delta = part["delta"].to_numpy(float)
        errors = np.abs(np.stack([delta - part["delta_low"].to_numpy(float),
                                  part["delta_high"].to_numpy(float) - delta]))
        for i, (d, verdict) in enumerate(zip(delta, part["verdict"])):
            ax.errorbar(d, y[i], xerr=errors[:, i : i + 1], fmt="o", color=_colour(str(verdict)), capsize=3)
        ax.axvline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_yticks(y, part["arm"].astype(str))
        ax.set_ylim(-0.7, len(part) - 0.3)
        direction = ""
        if "higher_is_better" in part:
            direction = " (higher is better →)" if bool(part["higher_is_better"].iloc[0]) else " (← lower is better)"
        ax.set_xlabel(f"Δ vs {part['baseline'].iloc[0]}{direction}")
        ax.set_title(str(metric), fontsize=10)
        ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def case_strip_png(per_arm: Mapping[str, ArrayLike], metric: str) -> bytes:
    """One box per arm with its per-case values overlaid as points (NaN cases left out).

    Args:
        per_arm: arm -> per-case values (e.g. :func:`bench.compare_stats.per_case_means`).
        metric: the metric's name, the y label.
    """
    groups = {str(arm): np.asarray(v, float)[np.isfinite(np.asarray(v, float))] for arm, v in per_arm.items()}
    if not groups or not any(v.size for v in groups.values()):
        raise BenchError(f"a per-case plot needs per-case values of at least one arm, but got none for "
                         f"'{metric}'. Pass arm -> values.")
    return _box_strip_png(groups, "arm", f"{metric} per case")


def rank_cliques(mean_ranks: ArrayLike, cd: float) -> list[tuple[int, int]]:
    """Groups of arms, by position in ascending mean rank, whose ranks differ by less than ``cd``.

    Each group (i, j) spans the sorted arms i..j with r_j - r_i < cd, is maximal (not inside another group)
    and has at least two arms: the thick bars of Demšar's diagram, "not significantly different".

    Example:
        >>> rank_cliques([1.0, 1.5, 2.8, 3.0], cd=1.0)
        [(0, 1), (2, 3)]
    """
    ranks = np.sort(np.asarray(mean_ranks, float))
    groups: list[tuple[int, int]] = []
    for i in range(len(ranks)):
        j = int(np.searchsorted(ranks, ranks[i] + cd, side="left")) - 1
        if j > i and not (groups and groups[-1][1] >= j):
            groups.append((i, j))
    return groups


def cd_diagram_png(mean_ranks: Mapping[str, float] | pd.Series, cd: float, title: str | None = None) -> bytes:
    """Critical-difference diagram (Demšar 2006, fig. 1): arms on a mean-rank axis (1 = best, left), the
    Nemenyi CD as a bar above it, and thick bars joining arms whose mean ranks differ by less than CD.

    Args:
        mean_ranks: arm -> mean rank over tasks (``FriedmanResult.mean_ranks``).
        cd: the critical difference (``FriedmanResult.cd``).
        title: optional title, e.g. the Friedman p-value.
    """
    ranks = pd.Series(mean_ranks, dtype=float).sort_values(kind="stable")
    if len(ranks) < 2 or not np.isfinite(ranks.to_numpy()).all() or not np.isfinite(cd) or cd <= 0:
        raise BenchError(f"a critical-difference diagram needs at least 2 arms with finite mean ranks and a "
                         f"positive CD, but got {ranks.to_dict()} and CD {cd}. Pass FriedmanResult fields.")
    k = len(ranks)
    low, high = 1, max(k, int(np.ceil(ranks.max())))
    cliques = rank_cliques(ranks.to_numpy(), cd)
    left = (k + 1) // 2  # best half labelled on the left, the rest on the right
    rows = max(left, k - left)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 1.4 + 0.32 * rows + 0.15 * len(cliques)))
    ax.hlines(0, low, high, color="black", linewidth=1)
    for tick in range(low, high + 1):
        ax.vlines(tick, 0, 0.12, color="black", linewidth=1)
        ax.text(tick, 0.2, str(tick), ha="center", va="bottom", fontsize=9)
    ax.hlines(0.75, low, low + cd, color="black", linewidth=1.5)
    ax.vlines([low, low + cd], 0.65, 0.85, color="black", linewidth=1.5)
    ax.text(low + cd / 2, 0.9, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=9)
    bar_depth = 0.25 + 0.18 * np.arange(len(cliques))
    for (i, j), depth in zip(cliques, bar_depth):
        ax.hlines(-depth, ranks.iloc[i] - 0.03, ranks.iloc[j] + 0.03, color="black", linewidth=3.5)
    first_label = -(bar_depth[-1] if cliques else 0.1) - 0.35
    for position, (arm, rank) in enumerate(ranks.items()):
        on_left = position < left
        depth = first_label - 0.32 * (position if on_left else k - 1 - position)
        end = low - 0.15 if on_left else high + 0.15
        ax.plot([rank, rank, end], [0, depth, depth], color="black", linewidth=0.8)
        ax.text(end - 0.05 if on_left else end + 0.05, depth, f"{arm} ({rank:.2f})",
                ha="right" if on_left else "left", va="center", fontsize=9)
    ax.set_xlim(low - 0.3, high + 0.3)  # labels may run past the axes: the tight bounding box keeps them
    ax.set_ylim(first_label - 0.32 * rows, 1.3)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    return _png(fig)

