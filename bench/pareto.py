"""Pareto fronts over logged metrics, each metric in its declared direction (``bench leaderboard --pareto``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.metrics import higher_is_better


def pareto_mask(values: np.ndarray, higher: Sequence[bool]) -> np.ndarray:
    """Which rows of ``values`` (runs × metrics) are not dominated.

    Row a dominates row b when a is at least as good as b on every metric and strictly better on one
    (better = larger where ``higher`` is True, smaller otherwise). Rows with a NaN are never on the front
    and dominate nothing. Identical rows do not dominate each other, so both stay on the front.

    Example:
        >>> pareto_mask(np.array([[0.9, 10.0], [0.8, 5.0], [0.7, 20.0]]), [True, False]).tolist()
        [True, True, False]
    """
    x = np.asarray(values, float)
    if x.ndim != 2 or x.shape[1] != len(higher):
        raise BenchError(f"pareto_mask needs one column per direction, but got shape {x.shape} and "
                         f"{len(higher)} directions.")
    signed = np.where(np.asarray(higher, bool), x, -x)  # larger is better in every column now
    ok = np.isfinite(signed).all(axis=1)
    good = signed[ok]
    # all pairs at once (runs × runs × metrics); fine for the 10^4 runs a leaderboard holds in slices of rows
    front = np.zeros(len(good), bool)
    for start in range(0, len(good), 512):
        block = good[start : start + 512, None, :]
        dominated = ((good[None] >= block).all(-1) & (good[None] > block).any(-1)).any(1)
        front[start : start + 512] = ~dominated
    mask = np.zeros(len(x), bool)
    mask[np.flatnonzero(ok)] = front
    return mask


def pareto_table(table: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The COMPLETE rows of a leaderboard table on the Pareto front of ``metrics``, best first metric first.

    Args:
        table: a :func:`bench.leaderboard.leaderboard` table.
        metrics: two or more of its metric columns (``val_auroc``, ``n_weights``, ``trial_seconds`` …).

    Returns:
        The front's rows (original ranks kept as the index) with only run, state, the metrics and the
        searched dimensions.
    """
    metrics = list(dict.fromkeys(metrics))
    missing = [m for m in metrics if m not in table]
    if len(metrics) < 2 or missing:
        known = [c for c in table.columns if pd.api.types.is_float_dtype(table[c]) and c != "trial"]
        raise BenchError(f"--pareto needs two or more logged metric columns, but got {metrics} "
                         f"({'missing: ' + ', '.join(missing) if missing else 'too few'}). Known: {', '.join(known)}.")
    done = table[table["state"].eq("COMPLETE")]
    values = done[metrics].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    front = done[pareto_mask(values, [higher_is_better(m) for m in metrics])]
    keep = ["run", "run_id", "state", *metrics] + [c for c in ("seg_arch", "seg_loss", "guidance") if c in table]
    first = metrics[0]
    return front[list(dict.fromkeys(keep))].sort_values(first, ascending=not higher_is_better(first))
