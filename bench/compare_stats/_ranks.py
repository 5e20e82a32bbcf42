"""Ranks of arms: within one task by case bootstrap, across tasks by Friedman and Nemenyi (Demšar 2006).

Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7:1-30.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import friedmanchisquare, rankdata, studentized_range

from bench.compare_stats._resample import ArmCases, case_draws, percentile_ci
from bench.errors import BenchError


def _ranks(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Rank along the last axis, 1 = best, ties get the average of the ranks they span."""
    return rankdata(-values if higher_is_better else values, axis=-1)


def bootstrap_ranks(arms: Mapping[str, ArmCases], higher_is_better: bool, level: float = 0.95,
                    resamples: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Rank of each arm on all cases, and its mean rank and percentile CI over case resamples.

    For b = 1..B one draw I_b of N case indices is shared by all arms; each arm's theta*_b
    (:meth:`ArmCases.thetas`) is ranked among the arms (1 = best, ties averaged); resamples where some arm's
    statistic is undefined are left out. Reported: ``rank`` on all cases, ``mean_rank`` = (1/B) sum_b
    rank*_b and the (1-level)/2, (1+level)/2 quantiles of rank*_b (Hall & Miller 2009, "Using the bootstrap
    to quantify the authority of an empirical ranking", Ann. Statist. 37:3929).

    Returns:
        DataFrame with columns arm, value, rank, mean_rank, rank_low, rank_high, sorted by rank.
    """
    names = list(arms)
    sizes = {arms[a].n for a in names}
    if len(sizes) != 1:
        raise BenchError(f"ranking arms needs the same cases in every arm, but got case counts {sorted(sizes)}. "
                         "Score every arm on every fold and seed.")
    idx = case_draws(sizes.pop(), resamples, seed)
    draws = np.stack([arms[a].thetas(idx) for a in names], axis=1)
    return rank_table(names, np.array([arms[a].value() for a in names]), draws, higher_is_better, level)


def rank_table(names: list[str], values: np.ndarray, draws: np.ndarray, higher_is_better: bool,
               level: float = 0.95) -> pd.DataFrame:
    """:func:`bootstrap_ranks` from the arms' values on all cases and their B×arms draws on one case draw."""
    draws = draws[np.isfinite(draws).all(axis=1)]
    rank_draws = _ranks(draws, higher_is_better) if draws.size else np.full((1, len(names)), np.nan)
    bounds = [percentile_ci(rank_draws[:, i], level) for i in range(len(names))]
    table = pd.DataFrame({
        "arm": names, "value": values, "rank": _ranks(values, higher_is_better),
        "mean_rank": rank_draws.mean(axis=0),
        "rank_low": [b[0] for b in bounds], "rank_high": [b[1] for b in bounds],
    })
    return table.sort_values(["rank", "arm"], kind="stable").reset_index(drop=True)


def nemenyi_q(k: int, alpha: float = 0.05) -> float:
    """Critical value q_alpha of the Nemenyi test for k arms: the studentized range quantile
    q(1 - alpha; k, inf) divided by sqrt(2) (Demšar 2006, sec. 3.2.2 and table 5a: k=4, alpha=.05 -> 2.569)."""
    if k < 2:
        raise BenchError(f"the Nemenyi test compares at least 2 arms, but got {k}. Add arms.")
    return float(studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference CD = q_alpha * sqrt(k (k + 1) / (6 N)) for k arms over N tasks
    (Demšar 2006, eq. 4): two arms whose mean ranks differ by at least CD differ significantly."""
    if n < 1:
        raise BenchError(f"a critical difference needs at least one task or data set, but got {n}.")
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6 * n)))


@dataclass(frozen=True)
class FriedmanResult:
    """Mean ranks over tasks (1 = best), Friedman's test and the Nemenyi critical difference.

    ``statistic``/``p`` are NaN when the test does not apply; ``note`` then says why. ``iman_davenport`` /
    ``p_iman_davenport``: Iman & Davenport's (1980) F form of Friedman's statistic, less conservative than
    the chi-square (Demšar 2006, sec. 3.2.2), reported beside it. The critical difference means something
    only when Friedman's test rejects (:attr:`rejects`): pairwise Nemenyi comparisons are post-hoc tests.
    """

    mean_ranks: pd.Series
    statistic: float
    p: float
    cd: float
    alpha: float
    n_tasks: int
    note: str = ""
    iman_davenport: float = float("nan")
    p_iman_davenport: float = float("nan")

    @property
    def rejects(self) -> bool:
        """Friedman's test rejects "all arms rank alike" at alpha (then the CD diagram may be drawn)."""
        return bool(np.isfinite(self.p) and self.p < self.alpha)


def friedman_nemenyi(scores: pd.DataFrame, higher_is_better: bool, alpha: float = 0.05) -> FriedmanResult:
    """Compare arms across several tasks or data sets (Demšar 2006, sec. 3.2).

    Each row of ``scores`` is a task, each column an arm, each value the arm's metric on that task. Arms are
    ranked within each task (1 = best, ties averaged); R_j is arm j's mean rank. Friedman's test
    (``scipy.stats.friedmanchisquare``; Friedman 1937) tests whether all arms rank alike; it needs at least
    3 arms and 2 tasks. The Nemenyi critical difference (:func:`critical_difference`) says which pairs of
    mean ranks differ at ``alpha``.

    Raises:
        BenchError: on a missing score, or fewer than 2 arms.
    """
    if scores.shape[1] < 2:
        raise BenchError(f"comparing arms across tasks needs at least 2 arms (columns), but got "
                         f"{list(scores.columns)}. Give one column per arm.")
    values = scores.to_numpy(float)
    if not np.isfinite(values).all():
        missing = [f"{t}/{a}" for t, a in zip(*np.nonzero(~np.isfinite(values)))]
        raise BenchError(f"every arm needs a score on every task, but got none for (task/arm index) "
                         f"{missing[:5]}. Drop the task or re-run the arm.")
    n, k = values.shape
    mean_ranks = pd.Series(_ranks(values, higher_is_better).mean(axis=0), index=scores.columns, name="mean_rank")
    statistic = p = float("nan")
    note = ""
    if k < 3:
        note = (f"Friedman's test needs at least 3 arms, but this comparison has {k}: "
                "compare the two arms directly (paired test per task) instead.")
    elif n < 2:
        note = f"Friedman's test needs at least 2 tasks or data sets, but got {n}."
    elif (values == values[:, :1]).all():  # scipy's tie correction would divide by zero
        statistic, p, note = 0.0, 1.0, "all arms tie on every task."
    else:
        result = friedmanchisquare(*values.T)
        statistic, p = float(result.statistic), float(result.pvalue)
    f_id = p_id = float("nan")
    if np.isfinite(statistic) and n >= 2:
        from scipy.stats import f as f_dist

        # Iman & Davenport (1980): F = (N - 1) chi2 / (N (k - 1) - chi2) on (k - 1, (k - 1)(N - 1)) df;
        # chi2 reaches N (k - 1) when every task ranks the arms alike: F infinite, p 0
        room = n * (k - 1) - statistic
        f_id = (n - 1) * statistic / room if room > 1e-12 else float("inf")
        p_id = float(f_dist.sf(f_id, k - 1, (k - 1) * (n - 1))) if room > 1e-12 else 0.0
    return FriedmanResult(mean_ranks.sort_values(kind="stable"), statistic, p, critical_difference(k, n, alpha),
                          alpha, n, note, float(f_id), p_id)
