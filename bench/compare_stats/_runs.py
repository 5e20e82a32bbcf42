"""The verdict's test: over training runs (fold x seed), not over the cases of a few fixed models.

"Arm A trains better models than B" is replicated by training runs and by data, so its test must vary
both (Bouthillier et al. 2021, "Accounting for variance in machine learning benchmarks", MLSys). With K
folds and S seeds every arm has one value per fold x seed run, and the paired differences follow

    d_fs = delta + u_f + e_fs,

u_f the fold's term (its validation cases, patients and training set; shared by the fold's S seeds) and
e_fs the run-to-run term of training (initialisation, data order). The seeds of a fold share its cases,
so they are not independent replicates; the fold means d_f = (1/S) sum_s d_fs are (disjoint validation
cases), with Var(d_f) = sigma_fold^2 + sigma_seed^2 / S. The test is the one-sample t test of the K fold
means (``scipy.stats.ttest_1samp``, df = K - 1): in a balanced one-way random-effects model this is the
variance-components test (Var(mean) = MS_fold / (K S)) with its exact t reference. Wilcoxon or t over the
K x S runs would count a fold's seeds as independent and reject too often when the fold term is large
(small folds, correlated images of a patient); the validity suite (:mod:`bench.compare_stats._validity`)
measures both.

sigma_fold^2 and sigma_seed^2 are the method-of-moments components of the one-way ANOVA of d_fs by fold
(Searle, Casella & McCulloch 1992, ch. 3): sigma_seed^2 = MS_within, sigma_fold^2 = max(0, (MS_between -
MS_within) / S). They give the smallest difference the comparison could detect (80 % power, two-sided,
at the Holm-adjusted alpha of its first step, alpha / m) and the seeds a given difference would need
(``statsmodels.stats.power.TTestPower``: power of the one-sample t test of K fold means).

With fewer than :data:`MIN_SEEDS` seeds per fold there is no verdict: the table is descriptive only.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from bench.errors import BenchError

MIN_SEEDS = 5  # seeds per fold a verdict needs (power 0.47 at 5 seeds for +0.017 AUROC, run SD 0.015)
POWER = 0.8


class RunTest(NamedTuple):
    """Paired run-level comparison: mean of the K fold means of d_fs, its t interval, p and components."""

    n_folds: int
    n_seeds: int
    delta: float
    low: float
    high: float
    p: float
    sd_fold: float
    sd_seed: float


def fold_means(differences: ArrayLike) -> np.ndarray:
    """(..., K, S) paired run differences -> (..., K) means over the seeds of each fold (NaN runs skipped)."""
    d = np.asarray(differences, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(d, axis=-1)


def run_level_p(differences: ArrayLike) -> np.ndarray:
    """Two-sided p of "delta = 0" for (..., K, S) paired run differences, vectorised over the leading axes.

    The one-sample t test of the K fold means (``scipy.stats.ttest_1samp``, df = K - 1). Where the fold
    means do not vary (zero variance) there is nothing to test: p is NaN, never 0.
    """
    from scipy.stats import ttest_1samp

    means = fold_means(differences)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        p = np.asarray(ttest_1samp(means, 0.0, axis=-1, nan_policy="propagate").pvalue, float)
        spread = np.nanstd(means, axis=-1)
    return np.where(spread > 1e-12 * np.maximum(1.0, np.abs(np.nanmean(means, axis=-1))), p, np.nan)


def variance_components(differences: ArrayLike) -> tuple[float, float]:
    """(sigma_fold^2, sigma_seed^2) of K x S paired run differences by one-way ANOVA (method of moments).

    MS_within = sum (d_fs - d_f)^2 / (K (S - 1)) estimates sigma_seed^2; MS_between = S sum (d_f - d)^2 /
    (K - 1) estimates S sigma_fold^2 + sigma_seed^2. With one seed the two cannot be told apart: the whole
    variance is reported as the fold term and sigma_seed^2 is NaN. Folds with a missing run are left out.
    """
    d = np.asarray(differences, float)
    if d.ndim != 2:
        raise BenchError(f"variance components need a folds x seeds table of differences, but got shape {d.shape}.")
    d = d[np.isfinite(d).all(axis=1)]
    k, s = d.shape
    if k < 2:
        return float("nan"), float("nan")
    means = d.mean(axis=1)
    between = s * float(np.sum((means - means.mean()) ** 2)) / (k - 1)
    if s < 2:
        return between, float("nan")
    within = float(np.sum((d - means[:, None]) ** 2)) / (k * (s - 1))
    return max(0.0, (between - within) / s), within


def run_level_test(differences: ArrayLike, level: float = 0.95) -> RunTest:
    """:func:`run_level_p` of a K x S table with the t interval of the mean of the fold means.

    Example:
        >>> d = [[0.02, 0.03], [0.01, 0.02], [0.03, 0.04], [0.02, 0.02]]
        >>> r = run_level_test(d)
        >>> (r.n_folds, r.n_seeds, round(r.delta, 5), round(r.p, 3))
        (4, 2, 0.02375, 0.011)
    """
    from scipy.stats import t as student_t

    d = np.asarray(differences, float)
    if d.ndim != 2 or d.shape[0] < 1:
        raise BenchError(f"a run-level test needs a folds x seeds table of paired differences, but got shape "
                         f"{d.shape}. Give one value per fold and seed.")
    means = fold_means(d)
    means = means[np.isfinite(means)]
    k = means.size
    var_fold, var_seed = variance_components(d)
    delta = float(means.mean()) if k else float("nan")
    low = high = float("nan")
    if k >= 2:
        se = float(means.std(ddof=1)) / np.sqrt(k)
        half = float(student_t.ppf((1 + level) / 2, k - 1)) * se
        low, high = delta - half, delta + half
    p = float(run_level_p(d[None])[0]) if k >= 2 else float("nan")
    return RunTest(k, int(d.shape[1]), delta, low, high, p, float(np.sqrt(var_fold)), float(np.sqrt(var_seed)))


def _effect_size(folds: int, alpha: float, power: float) -> float:
    """Standardised difference a one-sample t test of ``folds`` values detects with ``power`` at ``alpha``."""
    from statsmodels.stats.power import TTestPower  # lazy: statsmodels takes ~1 s to import

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(TTestPower().solve_power(effect_size=None, nobs=folds, alpha=alpha, power=power,
                                              alternative="two-sided"))


def detectable_difference(sd_fold: float, sd_seed: float, folds: int, seeds: int, alpha: float = 0.05,
                          power: float = POWER) -> float:
    """Smallest |delta| the run-level test detects with ``power`` at ``alpha`` (two-sided) with K folds x S
    seeds: the standardised effect of ``TTestPower`` times sqrt(sigma_fold^2 + sigma_seed^2 / S).

    A NaN seed term (a one-seed pilot) counts as zero: the fold term then holds all the variance it saw.
    """
    if folds < 2 or seeds < 1 or not np.isfinite(sd_fold):
        return float("nan")
    seed_var = float(sd_seed) ** 2 if np.isfinite(sd_seed) else 0.0
    sd = np.sqrt(float(sd_fold) ** 2 + seed_var / seeds)
    return float(_effect_size(folds, alpha, power) * sd) if sd > 0 else 0.0


def seeds_needed(target: float, sd_fold: float, sd_seed: float, folds: int, alpha: float = 0.05,
                 power: float = POWER, max_seeds: int = 200) -> int | None:
    """Fewest seeds per fold (at least :data:`MIN_SEEDS`) whose detectable difference is <= |target|;
    None when even ``max_seeds`` do not reach it (the fold term alone is too large: more folds or cases)."""
    if folds < 2 or not np.isfinite(sd_fold):
        return None
    seed_var = float(sd_seed) ** 2 if np.isfinite(sd_seed) else 0.0
    scale = _effect_size(folds, alpha, power)
    for s in range(MIN_SEEDS, max_seeds + 1):
        if scale * np.sqrt(float(sd_fold) ** 2 + seed_var / s) <= abs(target):
            return s
    return None
