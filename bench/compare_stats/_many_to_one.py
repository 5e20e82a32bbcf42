"""Many arms against one baseline over the same K folds: the arm x fold table tested as one family.

Each arm a has one value per fold f, y_af (its seeds averaged: the fold's runs share its cases). The
arm-fold table follows the two-way mixed model of a randomised block design with folds as blocks,

    y_af = mu + alpha_a + b_f + (ab)_af,

b_f the fold's term (its cases, shared by every arm: it cancels in a difference) and (ab)_af the arm x fold
term (the arm's luck on that fold: its training set, its seeds' spread averaged). The contrast of arm a
with the baseline, mean_f (y_af - y_0f), has variance 2 sigma_ab^2 / K when every arm's (ab) has the same
variance, and sigma_ab^2 is estimated from the whole table: the interaction mean square with (A - 1)(K - 1)
degrees of freedom, not K - 1 per arm (Montgomery, "Design and analysis of experiments", ch. 4; statsmodels'
OLS ``y ~ C(arm) + C(fold)`` gives the same t values). The A - 1 contrasts share the baseline, so they are
correlated (0.5); the family is tested as Dunnett (1955) does, by the distribution of max_a |t_a|: a
multivariate t with the pooled degrees of freedom and that correlation (``scipy.stats.multivariate_t``).
Adjusted p of an arm = P(max |T| >= |t_a|) (single step).

The pooled variance assumes the arms' run-to-run spread is alike. Where one arm's runs vary much more (an
unstable strategy), pooling would lend it the others' precision. Bartlett's test of equal variance of the
contrasts (at :data:`HOMOGENEITY_ALPHA`) decides, one arm at a time: while it rejects, the arm whose contrast
varies most is set apart and tested on its own K fold values (a t test with K - 1 degrees of freedom). The
pooled variance stays the whole table's (every arm, (A - 1)(K - 1) degrees of freedom): pooled over the arms
left after a selection it would be selected small, and the simulation showed that raise the false-positive
rate with all arms equal. The familywise level is split by count (Bonferroni over the two blocks): a pooled
arm's adjusted p is its max-t p over the pooled block times m / m_pooled, a set-apart arm's its p times m
(both capped at 1). With no arm set apart this is Dunnett's test. HOMOGENEITY_ALPHA = 0.2 was chosen by the
simulation in :mod:`bench.compare_stats._validity` (7 arms, 5 x 5 runs, 400 replicates per cell: with one
arm's runs 3x as variable the familywise rate was 0.070 at 0.05, 0.058 at 0.2, 0.043 at 0.35; the power for
one better arm 0.218, 0.208, 0.180).

Equivalence (two one-sided tests, Schuirmann 1987): an arm is practically equivalent to the baseline when
the (1 - 2 alpha) interval of its contrast lies inside (-rope, +rope).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from bench.errors import BenchError

HOMOGENEITY_ALPHA = 0.2  # chosen by simulation (module docstring)
_MVT_SEED = 20261208  # the multivariate t CDF is a quasi-Monte-Carlo integral: a fixed seed, the same p each time


class ManyToOne(NamedTuple):
    """Contrasts of the non-baseline arms (in the table's order) with the baseline (row 0)."""

    delta: np.ndarray  # mean over folds of y_af - y_0f
    se: np.ndarray
    df: np.ndarray
    t: np.ndarray
    p: np.ndarray  # two-sided, unadjusted
    p_adjusted: np.ndarray  # familywise over the arms: max-t (pooled) or Holm (per arm)
    low: np.ndarray  # marginal t interval at ``level``
    high: np.ndarray
    pooled: np.ndarray  # per arm: tested with the pooled variance (else set apart: its own, K - 1 df)
    homogeneity_p: float  # Bartlett's p of equal contrast variances over all arms (NaN with fewer than two)
    n_folds: int


def complete_folds(table: ArrayLike) -> np.ndarray:
    """The (A, K) table restricted to folds where every arm has a finite value."""
    y = np.asarray(table, float)
    if y.ndim != 2:
        raise BenchError(f"a many-to-one test needs an arms x folds table, but got shape {y.shape}.")
    return y[:, np.isfinite(y).all(axis=0)]


def max_t_p(t_abs: ArrayLike, m: int, df: float, correlation: float = 0.5) -> np.ndarray:
    """P(max_j |T_j| >= t) for each t, T an m-variate t with ``df`` and equal ``correlation`` (Dunnett)."""
    t_abs = np.atleast_1d(np.asarray(t_abs, float))
    out = np.full(t_abs.shape, np.nan)
    if m < 1 or not np.isfinite(df) or df <= 0:
        return out
    from scipy.stats import multivariate_t
    from scipy.stats import t as student_t

    if m == 1:
        return np.where(np.isfinite(t_abs), 2 * student_t.sf(t_abs, df), np.nan)
    shape = np.full((m, m), correlation)
    np.fill_diagonal(shape, 1.0)
    dist = multivariate_t(loc=np.zeros(m), shape=shape, df=df, seed=_MVT_SEED)
    for i, value in enumerate(t_abs):
        if np.isfinite(value):
            inside = dist.cdf(np.full(m, value), lower_limit=np.full(m, -value), maxpts=50_000 * m)
            out[i] = float(1.0 - inside)
    # The integral's error (~1e-5) swamps tiny p; the max-t p lies between one arm's p and Bonferroni's m p.
    marginal = 2 * student_t.sf(t_abs, df)
    return np.clip(out, marginal, np.minimum(1.0, m * marginal))


def max_t_critical(m: int, df: float, alpha: float = 0.05, correlation: float = 0.5) -> float:
    """The |t| whose :func:`max_t_p` is ``alpha`` (Dunnett's two-sided critical value)."""
    from scipy.optimize import brentq
    from scipy.stats import t as student_t

    if m <= 1:
        return float(student_t.ppf(1 - alpha / 2, df))
    low, high = float(student_t.ppf(1 - alpha / 2, df)), float(student_t.ppf(1 - alpha / (2 * m), df)) + 1e-6
    return float(brentq(lambda x: float(max_t_p([x], m, df, correlation)[0]) - alpha, low, high, xtol=1e-4))


def bartlett_p(groups: ArrayLike) -> np.ndarray:
    """Bartlett's test of equal variances of the rows of (..., G, K) groups (K values each), vectorised over
    the leading axes (``scipy.stats.bartlett`` takes one set of groups at a time; the tests compare the two).
    NaN where a group has no spread."""
    from scipy.stats import chi2

    x = np.asarray(groups, float)
    g, k = x.shape[-2], x.shape[-1]
    var = x.var(axis=-1, ddof=1)
    n_total, dof = g * k, k - 1
    pooled = var.mean(axis=-1)  # equal group sizes: the pooled variance is the mean of the variances
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = (n_total - g) * np.log(pooled) - dof * np.log(var).sum(axis=-1)
        stat /= 1 + (g / dof - 1 / (n_total - g)) / (3 * (g - 1))
    return np.where(np.all(var > 0, axis=-1), chi2.sf(stat, g - 1), np.nan)


def set_apart(d: np.ndarray, homogeneity_alpha: float = HOMOGENEITY_ALPHA) -> np.ndarray:
    """Arms (rows of the (m, K) contrasts ``d``) whose spread differs from the rest: while Bartlett rejects
    among the arms still pooled, the one whose contrast varies most is set apart."""
    apart = np.zeros(len(d), bool)
    spread = d.var(axis=1, ddof=1)
    while (~apart).sum() >= 2:
        rest = d[~apart]
        p = float(bartlett_p(rest)) if np.all(spread[~apart] > 0) else float("nan")
        if not (np.isfinite(p) and p < homogeneity_alpha):
            break
        apart[np.flatnonzero(~apart)[np.argmax(spread[~apart])]] = True
    return apart


def contrasts(table: ArrayLike, homogeneity_alpha: float = HOMOGENEITY_ALPHA) -> dict[str, np.ndarray]:
    """Contrast statistics of a complete (A, K) table (row 0 the baseline): delta, se, df, t, two-sided p
    (each (A - 1,)), ``pooled`` (per arm) and ``homogeneity_p`` (Bartlett over all arms)."""
    from scipy.stats import t as student_t

    y = np.asarray(table, float)
    a, k = y.shape
    d = y[1:] - y[0]
    delta = d.mean(axis=1)
    own_var = d.var(axis=1, ddof=1)
    homogeneity = float(bartlett_p(d)) if a > 2 else float("nan")
    apart = set_apart(d, homogeneity_alpha)
    # every arm, set apart or not: pooled over the arms left after a selection it would be selected small
    resid = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    df_pooled = (a - 1) * (k - 1)
    var_ab = float(np.sum(resid**2)) / df_pooled
    se = np.where(apart, np.sqrt(own_var / k), np.sqrt(2 * var_ab / k))
    df = np.where(apart, float(k - 1), float(df_pooled))
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(se > 1e-12 * np.maximum(1.0, np.abs(delta)), delta / se, np.nan)
    p = np.where(np.isfinite(t), 2 * student_t.sf(np.abs(t), df), np.nan)
    return {"delta": delta, "se": se, "df": df, "t": t, "p": p, "pooled": ~apart, "homogeneity_p": homogeneity}


def many_to_one(table: ArrayLike, level: float = 0.95, homogeneity_alpha: float = HOMOGENEITY_ALPHA) -> ManyToOne:
    """Test every arm (rows 1..A-1 of an arms x folds table of fold means) against row 0.

    Example:
        >>> import numpy as np
        >>> y = np.array([[.80, .82, .79, .81, .80], [.83, .85, .81, .84, .83], [.80, .83, .78, .81, .81]])
        >>> r = many_to_one(y)
        >>> r.pooled.tolist(), int(r.df[0]), [round(float(d), 3) for d in r.delta]
        ([True, True], 8, [0.028, 0.002])
    """
    from scipy.stats import t as student_t

    y = complete_folds(table)
    a, k = y.shape
    m = a - 1
    if m < 1 or k < 2:
        nan = np.full(max(m, 0), np.nan)
        return ManyToOne(nan, nan, nan, nan, nan, nan, nan, nan, np.ones(max(m, 0), bool), float("nan"), k)
    c = contrasts(y, homogeneity_alpha)
    pooled = c["pooled"]
    adjusted = np.minimum(1.0, c["p"] * m)
    if pooled.any():
        in_block = max_t_p(np.abs(c["t"][pooled]), int(pooled.sum()), float(c["df"][pooled][0]))
        adjusted[pooled] = np.minimum(1.0, in_block * m / pooled.sum())
    half = student_t.ppf((1 + level) / 2, c["df"]) * c["se"]
    return ManyToOne(c["delta"], c["se"], c["df"], c["t"], c["p"], adjusted, c["delta"] - half,
                     c["delta"] + half, pooled, c["homogeneity_p"], k)


def family_rejects(table: ArrayLike, alpha: float = 0.05,
                   homogeneity_alpha: float = HOMOGENEITY_ALPHA) -> np.ndarray:
    """Which arms :func:`many_to_one` calls different at ``alpha`` (its adjusted p < alpha), by critical
    values instead of p-values (the simulation's thousands of tables)."""
    from scipy.stats import t as student_t

    c = contrasts(complete_folds(table), homogeneity_alpha)
    pooled, m = c["pooled"], len(c["delta"])
    t_abs = np.abs(np.nan_to_num(c["t"]))
    reject = t_abs >= student_t.ppf(1 - alpha / (2 * m), c["df"])  # set apart: p < alpha / m
    if pooled.any():
        share = pooled.sum() / m
        reject[pooled] = t_abs[pooled] >= cached_critical(int(pooled.sum()), float(c["df"][pooled][0]), alpha * share)
    return reject


@functools.lru_cache(maxsize=256)
def cached_critical(m: int, df: float, alpha: float) -> float:
    return max_t_critical(m, df, alpha)


def equivalent(delta: float, se: float, df: float, rope: float, alpha: float = 0.05) -> bool:
    """Two one-sided tests at ``alpha``: the (1 - 2 alpha) t interval of the contrast lies in (-rope, rope)."""
    from scipy.stats import t as student_t

    if not (np.isfinite(delta) and np.isfinite(se) and np.isfinite(df) and rope > 0):
        return False
    half = float(student_t.ppf(1 - alpha, df)) * se
    return bool(delta - half > -rope and delta + half < rope)
