"""Per-case data of one arm and the case bootstrap shared by every statistic of a comparison."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from bench.cases import CASE_STATISTICS, CaseSet, pooled_case_bootstrap, stratified_draws
from bench.errors import BenchError

# (fields with one entry per case, B×N case indices) -> B values; the contract of bench.cases.CASE_STATISTICS.
Statistic = Callable[[Mapping[str, np.ndarray], np.ndarray], np.ndarray]
StatisticSpec = str | Statistic


def resolve_statistic(statistic: StatisticSpec) -> Statistic:
    """A ``CASE_STATISTICS`` name (``mean``, ``macro_auroc``) or a callable with the same contract."""
    return CASE_STATISTICS.get(statistic) if isinstance(statistic, str) else statistic


def balanced_accuracy(fields: Mapping[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Per row of ``idx`` (B×N case indices), balanced accuracy of the selected cases, all rows at once.

    Fields: ``probs`` (N×C class probabilities; the prediction is their arg-max) and ``labels`` (N ints).
    Balanced accuracy = (1/|K|) * sum_{k in K} #{pred = k, y = k} / #{y = k}, with K the classes present in
    the resample, as sklearn's ``balanced_accuracy_score`` (Brodersen et al. 2010). Pass it as the
    ``statistic`` of a set-level metric.
    """
    labels = np.asarray(fields["labels"], int)[idx]
    preds = np.asarray(fields["probs"], float).argmax(axis=1)[idx]
    recalls = []
    for k in range(np.asarray(fields["probs"]).shape[1]):
        truth = labels == k
        n_k = truth.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            recalls.append(np.where(n_k > 0, (truth & (preds == k)).sum(1) / n_k, np.nan))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(recalls, axis=1), axis=1)


@dataclass(frozen=True)
class ArmCases:
    """One arm's per-case data: R replicates (seeds, or fold models scoring one test part) of N cases.

    Every field has shape (R, N, ...), cases in one order shared by all arms of a comparison, so that a
    case draw pairs the arms. The arm's value is the replicate mean of the statistic,
    theta = (1/R) * sum_r T(D_r), as in :func:`bench.cases.pooled_case_bootstrap`.

    Example:
        >>> round(ArmCases.per_case([[0.5, 0.7], [0.6, 0.8]]).value(), 6)
        0.65
    """

    fields: Mapping[str, np.ndarray]
    statistic: StatisticSpec = "mean"

    def __post_init__(self) -> None:
        shapes = {k: np.shape(v)[:2] for k, v in self.fields.items()}
        if not shapes or any(len(s) < 2 for s in shapes.values()) or len(set(shapes.values())) != 1:
            raise BenchError(f"arm fields must all have shape (replicates, cases, ...), but got {shapes}. "
                             "Give one row per seed (or per fold model) and one column per case.")

    @classmethod
    def per_case(cls, values: ArrayLike) -> ArmCases:
        """Per-case values (Dice, HD95, ...): shape (N,) for one replicate or (R, N); NaN = undefined case."""
        array = np.asarray(values, float)
        return cls({"values": array[None] if array.ndim == 1 else array}, "mean")

    @classmethod
    def from_case_sets(cls, case_sets: Sequence[CaseSet]) -> ArmCases:
        """One :class:`bench.cases.CaseSet` per replicate (e.g. each seed's ``val_cases.json``)."""
        if not case_sets or len({c.statistic for c in case_sets}) != 1 or len({c.n for c in case_sets}) != 1:
            raise BenchError(f"replicates of one arm must share the statistic and the cases, but got "
                             f"{[(c.statistic, c.n) for c in case_sets]}. Were they run on different splits?")
        names = list(case_sets[0].fields)
        return cls({k: np.stack([np.asarray(c.fields[k]) for c in case_sets]) for k in names},
                   case_sets[0].statistic)

    @property
    def replicates(self) -> int:
        return int(np.shape(next(iter(self.fields.values())))[0])

    @property
    def n(self) -> int:
        return int(np.shape(next(iter(self.fields.values())))[1])

    def replicate(self, r: int) -> dict[str, np.ndarray]:
        return {k: np.asarray(v)[r] for k, v in self.fields.items()}

    def thetas(self, idx: np.ndarray) -> np.ndarray:
        """theta*_b = (1/R) * sum_r T(D_r[I_b]) for each row I_b of ``idx`` (B×N); NaN where undefined."""
        fn = resolve_statistic(self.statistic)
        return np.mean([fn(self.replicate(r), idx) for r in range(self.replicates)], axis=0)

    def value(self) -> float:
        """The arm's point estimate theta: the statistic on all cases, averaged over replicates."""
        return float(self.thetas(np.arange(self.n)[None])[0])


class Summary(NamedTuple):
    n: int
    mean: float
    ci_low: float
    ci_high: float


def case_draws(n: int, resamples: int, seed: int) -> np.ndarray:
    """B×N case indices drawn with replacement; the same draws as :func:`bench.cases.pooled_case_bootstrap`,
    so an arm's CI and its paired differences come from one set of resamples."""
    if n < 1 or resamples < 1:
        raise BenchError(f"a case bootstrap needs at least one case and one resample, but got n={n}, "
                         f"resamples={resamples}.")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def draws_for(statistic: StatisticSpec, n: int, resamples: int, seed: int,
              labels: ArrayLike | None = None) -> np.ndarray:
    """B×N case indices for ``statistic``: its own ``case_draws`` when it has them (a
    :class:`bench.compare_stats.Stratified` statistic draws within its strata), else :func:`case_draws`.

    With ``labels`` (the class of each case, for a set-level statistic) the draws are also stratified by
    class: every resample keeps each class's count (within each stratum), so a rare class is never missing
    from a resample and a class-averaged statistic (macro AUROC, balanced accuracy) is always defined.
    """
    own = getattr(statistic, "case_draws", None)
    if labels is None:
        return own(n, resamples, seed) if callable(own) else case_draws(n, resamples, seed)
    strata = np.asarray(labels).astype(str)
    outer = getattr(statistic, "strata", None)
    if outer is not None:
        strata = np.char.add(np.char.add(np.asarray(outer).astype(str), "|"), strata)
    return stratified_draws(strata, resamples, seed)


def percentile_ci(draws: np.ndarray, level: float) -> tuple[float, float]:
    """(1-level)/2 and (1+level)/2 quantiles of the finite draws (Efron & Tibshirani 1993, ch. 13)."""
    finite = draws[np.isfinite(draws)]
    if not finite.size:
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def arm_summary(arm: ArmCases, level: float = 0.95, resamples: int = 2000, seed: int = 0) -> Summary:
    """Mean of one arm pooled over replicates and its percentile case-bootstrap CI.

    For b = 1..B draw N case indices I_b with replacement, shared by all replicates, and take
    theta*_b = (1/R) * sum_r T(D_r[I_b]); the CI is the percentile interval of theta*_b. A registered
    statistic goes through :func:`bench.cases.pooled_case_bootstrap` itself; a callable one through the
    same formula here, on the statistic's own draws (:func:`draws_for`: within strata for a stratified one).

    Example:
        >>> arm_summary(ArmCases.per_case([0.2, 0.4, 0.6, 0.8]), resamples=200).mean
        0.5
    """
    if isinstance(arm.statistic, str):
        sets = [CaseSet("", arm.statistic, arm.replicate(r)) for r in range(arm.replicates)]
        mean, lo, hi = pooled_case_bootstrap(sets, level=level, resamples=resamples, seed=seed)
        return Summary(arm.n, mean, lo, hi)
    labels = arm.fields.get("labels")
    labels = None if labels is None else np.asarray(labels)[0]
    lo, hi = percentile_ci(arm.thetas(draws_for(arm.statistic, arm.n, resamples, seed, labels)), level)
    return Summary(arm.n, arm.value(), lo, hi)
