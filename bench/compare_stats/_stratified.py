"""Set-level statistics computed within strata (folds) and averaged, with the stratified case bootstrap.

Pooling the out-of-fold predictions of K fold models into one AUROC also scores how alike the K models are
calibrated: a case of fold 1 is ranked against a case of fold 2 by two different models. Computing the
AUROC within each fold, on that fold's own validation cases, and averaging the folds scores discrimination
alone. Its uncertainty comes from the stratified bootstrap: each resample draws n_f cases with replacement
inside every fold f (Davison & Hinkley 1997, sec. 3.7), so a fold's AUROC is always computed from its own
model's predictions, and a fold keeps its size and weight.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from bench.cases import stratified_draws
from bench.compare_stats._resample import StatisticSpec, resolve_statistic
from bench.errors import BenchError


def stratified_case_draws(strata: ArrayLike, resamples: int, seed: int) -> np.ndarray:
    """B×N case indices where column j is drawn with replacement from the cases of j's stratum.

    Column j belongs to the stratum of case j for every draw, so a statistic applied to the columns of one
    stratum sees only that stratum's cases, n_s of them (as many as the stratum has).

    Example:
        >>> idx = stratified_case_draws([0, 0, 1, 1, 1], resamples=4, seed=0)
        >>> bool((idx[:, :2] < 2).all() and (idx[:, 2:] >= 2).all())
        True
    """
    return stratified_draws(strata, resamples, seed)


@dataclass(frozen=True, eq=False)  # eq=False: its strata array has no truth value to compare or hash
class Stratified:
    """A statistic computed within each stratum and averaged with weights proportional to stratum size.

    theta(D) = sum_s w_s T(D_s) / sum_{s: T(D_s) defined} w_s, with w_s = n_s / N (the stratum's share of
    the cases) and T the wrapped statistic (e.g. ``macro_auroc``): the case-weighted mean, so that every
    case counts equally, as in the pooled statistic. A stratum where T is undefined (one class only) drops
    out of that resample's mean and the weights of the others are renormalised; all undefined gives NaN.
    With an arm's seeds as replicates (:class:`ArmCases`), each fold x seed stratum then counts
    n_f / (N * R): the "AUROC within every fold x seed, averaged by cases".

    Its :meth:`case_draws` draw within strata (:func:`stratified_case_draws`); every function of this
    package that resamples an arm uses them (:func:`bench.compare_stats.draws_for`).

    Example:
        >>> probs = np.array([[.8, .2], [.3, .7], [.2, .8], [.9, .1]])
        >>> fields = {"probs": probs, "labels": np.array([0, 1, 1, 0])}
        >>> float(Stratified("macro_auroc", np.array([0, 0, 1, 1]))(fields, np.arange(4)[None])[0])
        1.0
    """

    statistic: StatisticSpec
    strata: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "strata", np.asarray(self.strata))
        if self.strata.ndim != 1 or not self.strata.size:
            raise BenchError(f"a stratified statistic needs one stratum label per case, but got strata of "
                             f"shape {self.strata.shape}.")

    def groups(self) -> list[np.ndarray]:
        """Column positions of each stratum, in first-appearance order."""
        return [np.flatnonzero(self.strata == s) for s in dict.fromkeys(self.strata.tolist())]

    def per_stratum(self, fields: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        """B×S: the statistic of each stratum's columns of ``idx`` (B×N)."""
        if idx.shape[1] != self.strata.size:
            raise BenchError(f"a stratified statistic needs one stratum label per case, but got "
                             f"{self.strata.size} labels for {idx.shape[1]} cases. Were the arms run on "
                             f"different folds?")
        fn = resolve_statistic(self.statistic)
        return np.stack([fn(fields, idx[:, cols]) for cols in self.groups()], axis=1)

    def __call__(self, fields: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        values = self.per_stratum(fields, idx)
        weights = np.array([cols.size for cols in self.groups()], float)
        defined = np.isfinite(values)
        total = (defined * weights).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.where(total > 0, np.where(defined, values, 0.0) @ weights / total, np.nan)

    def case_draws(self, n: int, resamples: int, seed: int) -> np.ndarray:
        if n != self.strata.size:
            raise BenchError(f"a stratified bootstrap needs one stratum label per case, but got "
                             f"{self.strata.size} labels for {n} cases.")
        return stratified_case_draws(self.strata, resamples, seed)
