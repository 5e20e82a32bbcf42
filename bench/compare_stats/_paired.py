"""Paired comparison of an arm with the baseline on the same cases, Holm adjustment and the verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import wilcoxon

from bench.compare_stats._delong import delong_test, stratified_delong_test
from bench.compare_stats._resample import ArmCases, case_draws, draws_for, percentile_ci
from bench.compare_stats._runs import MIN_SEEDS
from bench.compare_stats._stratified import Stratified
from bench.errors import BenchError

BETTER, WORSE, SAME = "better than", "worse than", "no detectable difference from"
EQUIVALENT = "practically equivalent to"


class PairedResult(NamedTuple):
    """Arm minus baseline: ``p`` is from ``test`` (wilcoxon, delong, stratified delong, bootstrap or stratified
    bootstrap); ``p_bootstrap`` always."""

    n: int
    delta: float
    delta_low: float
    delta_high: float
    p: float
    test: str
    p_bootstrap: float


def bootstrap_p_value(draws: ArrayLike) -> float:
    """Two-sided p-value of "difference = 0" from bootstrap draws of the difference.

    p = min(1, 2 * min((1 + #{d*_b <= 0}) / (B + 1), (1 + #{d*_b >= 0}) / (B + 1))): twice the smaller tail
    beyond zero, the smallest alpha at which the percentile interval excludes 0 (Efron & Tibshirani 1993,
    sec. 15.4), with the +1 of Davison & Hinkley (1997, eq. 4.11) so that B draws never claim p = 0.

    Example:
        >>> bootstrap_p_value([0.0, 0.0, 0.0])
        1.0
    """
    d = np.asarray(draws, float)
    d = d[np.isfinite(d)]
    if not d.size:
        return float("nan")
    tail = min(np.count_nonzero(d <= 0), np.count_nonzero(d >= 0))
    return float(min(1.0, 2 * (1 + tail) / (d.size + 1)))


EXACT_UP_TO = 16  # non-zero differences enumerated exactly (2^16 sign patterns)


def wilcoxon_p(differences: ArrayLike) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; all-zero differences give p = 1.0.

    Zero differences are dropped first (Wilcoxon's own zero method: they carry no sign). Up to 16 non-zero
    differences the p-value is exact, from every one of the 2^n sign patterns of their midranks
    (``scipy.stats.wilcoxon`` with ``PermutationMethod``: exact with tied magnitudes too); above, scipy's
    default (exact null distribution up to 50 untied differences, else the normal approximation). Handed
    zeros or ties, scipy's default switches to the normal approximation even for a handful of cases.
    """
    d = np.asarray(differences, float)
    d = d[np.isfinite(d) & (d != 0)]
    if d.size < 2:  # no difference, or one: each sign is as likely (exact two-sided p = 1)
        return 1.0
    if d.size <= EXACT_UP_TO:
        from scipy.stats import PermutationMethod

        return float(wilcoxon(d, method=PermutationMethod(n_resamples=np.inf)).pvalue)
    return float(wilcoxon(d).pvalue)


def _case_means(values: ArmCases | ArrayLike) -> np.ndarray:
    """Per-case value averaged over replicates (NaN only where every replicate is NaN)."""
    if isinstance(values, ArmCases):
        if values.statistic != "mean":
            raise BenchError(f"a per-case comparison needs per-case values (statistic 'mean'), but got "
                             f"'{values.statistic}'. Use paired_set_level for set-level metrics.")
        values = values.fields["values"]
    array = np.atleast_2d(np.asarray(values, float))
    out = np.full(array.shape[1], np.nan)
    defined = np.isfinite(array).any(axis=0)
    out[defined] = np.nanmean(array[:, defined], axis=0)
    return out


def paired_per_case(arm: ArmCases | ArrayLike, baseline: ArmCases | ArrayLike, level: float = 0.95,
                    resamples: int = 2000, seed: int = 0, clusters: ArrayLike | None = None,
                    strata: ArrayLike | None = None) -> PairedResult:
    """Per-case difference of arm and baseline: mean with case-bootstrap CI and Wilcoxon signed-rank p.

    With a_c, b_c the per-case values averaged over replicates (seeds), d_c = a_c - b_c over the n cases
    where both are defined; delta = (1/n) sum_c d_c, its CI the percentile interval of the mean of d over
    B case resamples, and p the two-sided Wilcoxon signed-rank test of the d_c (Wilcoxon 1945).

    With ``clusters`` (one patient number per case; images of one patient are not independent) the unit is
    the patient: p is the Wilcoxon test of the patients' mean differences, and each resample draws
    patients with replacement (within ``strata``, e.g. folds, when given) and takes the mean over all
    their cases (the cluster bootstrap, Davison & Hinkley 1997, sec. 3.8); ``n`` counts patients.

    Args:
        arm, baseline: per-case values, N or R×N (same cases, same order), or :class:`ArmCases` of them.
        clusters: per case, its patient (any labels; unique within the comparison, e.g. fold and number).
        strata: per case, the stratum its patient is drawn within.

    Example:
        >>> paired_per_case([0.9, 0.8, 0.7, 0.6, 0.5], [0.8, 0.6, 0.4, 0.2, 0.0]).p
        0.0625
    """
    a, b = _case_means(arm), _case_means(baseline)
    if a.shape != b.shape:
        raise BenchError(f"a paired comparison needs the same cases in both arms, but got {a.size} and "
                         f"{b.size} cases. Score every arm on every fold and seed.")
    defined = np.isfinite(a - b)
    d = (a - b)[defined]
    if not d.size:
        raise BenchError("a paired comparison needs at least one case defined in both arms, but got none. "
                         "Check the metric column for NaNs.")
    if clusters is None:
        draws = d[case_draws(d.size, resamples, seed)].mean(axis=1)
        lo, hi = percentile_ci(draws, level)
        return PairedResult(int(d.size), float(d.mean()), lo, hi, wilcoxon_p(d), "wilcoxon",
                            bootstrap_p_value(draws))
    from bench.cases import patient_numbers, stratified_draws

    per_case = patient_numbers(np.asarray(clusters).astype(str)[defined])  # clusters in first-appearance order
    size = int(per_case.max()) + 1
    sums, counts = np.bincount(per_case, d, size), np.bincount(per_case, minlength=size).astype(float)
    if strata is None:
        idx = case_draws(size, resamples, seed)
    else:
        stratum_of = np.empty(size, dtype=object)
        stratum_of[per_case] = np.asarray(strata).astype(str)[defined]
        idx = stratified_draws(stratum_of.astype(str), resamples, seed)
    draws = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    lo, hi = percentile_ci(draws, level)
    return PairedResult(size, float(d.mean()), lo, hi, wilcoxon_p(sums / counts),
                        "wilcoxon on patient means", bootstrap_p_value(draws))


def _binary_auroc_inputs(arm: ArmCases) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(labels, R×N scores of class 1, strata or None) when the arm's statistic is an AUROC of two classes
    whose probabilities sum to one (then macro one-vs-rest AUROC equals the binary AUROC DeLong tests),
    plain or :class:`Stratified` (then with its strata, for :func:`stratified_delong_test`)."""
    statistic, strata = arm.statistic, None
    if isinstance(statistic, Stratified):
        statistic, strata = statistic.statistic, statistic.strata
    if statistic != "macro_auroc" or {"probs", "labels"} - set(arm.fields):
        return None
    probs, labels = np.asarray(arm.fields["probs"], float), np.asarray(arm.fields["labels"])
    if probs.ndim != 3 or probs.shape[2] != 2 or not np.allclose(probs.sum(axis=2), 1.0):
        return None
    if not np.isin(labels, (0, 1)).all() or not (labels == labels[0]).all():
        return None
    return labels[0].astype(int), probs[:, :, 1], strata


def _delong_p(arm: ArmCases, baseline: ArmCases, clusters: np.ndarray | None = None) -> tuple[float, str] | None:
    """DeLong's p (stratified for a stratified AUROC; Obuchowski's clustered form when ``clusters`` gives each
    case's patient) when both arms hold a two-class AUROC that DeLong's test can take (two cases, and with
    clusters two patients, of each class in every stratum); None otherwise (the bootstrap p is used)."""
    binary_a, binary_b = _binary_auroc_inputs(arm), _binary_auroc_inputs(baseline)
    if binary_a is None or binary_b is None:
        return None
    labels, strata = binary_a[0], binary_a[2]
    clustered = "clustered " if clusters is not None else ""
    if strata is None:
        if clusters is not None and min(_patients_per_class(labels, clusters)) < 2:
            return None
        return delong_test(labels, binary_a[1], binary_b[1], clusters).p, f"{clustered}delong"
    if binary_b[2] is None or not np.array_equal(strata, binary_b[2]):
        return None
    counts = [np.bincount(labels[strata == s], minlength=2) for s in np.unique(strata)]
    if min(c.min() for c in counts) < 2:
        return None
    if clusters is not None and min(min(_patients_per_class(labels[strata == s], np.asarray(clusters)[strata == s]))
                                    for s in np.unique(strata)) < 2:
        return None
    return (stratified_delong_test(labels, binary_a[1], binary_b[1], strata, clusters).p,
            f"stratified {clustered}delong")


def _patients_per_class(labels: np.ndarray, clusters: np.ndarray) -> tuple[int, int]:
    """How many patients hold a negative and how many a positive case."""
    clusters = np.asarray(clusters).astype(str)
    return len(set(clusters[labels == 0])), len(set(clusters[labels == 1]))


def paired_set_level(arm: ArmCases, baseline: ArmCases, level: float = 0.95, resamples: int = 2000,
                     seed: int = 0) -> PairedResult:
    """Difference of a set-level statistic (AUROC, balanced accuracy, ...) between arm and baseline.

    Paired case bootstrap: for b = 1..B one draw I_b of N case indices is shared by both arms and all their
    replicates, d*_b = theta*_arm(I_b) - theta*_baseline(I_b) (see :meth:`ArmCases.thetas`); delta is the
    difference of the point estimates, the CI the percentile interval of d*_b and ``p_bootstrap`` from
    :func:`bootstrap_p_value`. For a two-class AUROC ``p`` is DeLong's test (:func:`delong_test`), else the
    bootstrap p. A :class:`Stratified` statistic (AUROC within each fold, averaged) draws cases within its
    strata (the stratified bootstrap) and uses :func:`stratified_delong_test` for two classes.
    """
    if arm.n != baseline.n:
        raise BenchError(f"a paired comparison needs the same cases in both arms, but got {arm.n} and "
                         f"{baseline.n} cases. Score every arm on every fold and seed.")
    labels = arm.fields.get("labels")
    idx = draws_for(arm.statistic, arm.n, resamples, seed, None if labels is None else np.asarray(labels)[0])
    return set_level_from_draws(arm, baseline, arm.thetas(idx), baseline.thetas(idx), level)


def set_level_from_draws(arm: ArmCases, baseline: ArmCases, arm_draws: np.ndarray, baseline_draws: np.ndarray,
                         level: float = 0.95, clusters: ArrayLike | None = None) -> PairedResult:
    """:func:`paired_set_level` from both arms' theta*_b on one shared case draw, so that a comparison of
    many arms computes each arm's draws once (they are the costly part: AUROC ranks every resample).
    ``clusters`` (each case's patient) make DeLong's p Obuchowski's clustered test."""
    labels_a, labels_b = arm.fields.get("labels"), baseline.fields.get("labels")
    if labels_a is not None and labels_b is not None and not np.array_equal(labels_a[0], labels_b[0]):
        raise BenchError("a paired comparison needs the same cases in the same order in both arms, but "
                         "their labels differ. Sort both by fold and case.")
    draws = np.asarray(arm_draws) - np.asarray(baseline_draws)
    lo, hi = percentile_ci(draws, level)
    delta, p_boot = arm.value() - baseline.value(), bootstrap_p_value(draws)
    delong = _delong_p(arm, baseline, None if clusters is None else np.asarray(clusters))
    if delong is not None:
        return PairedResult(arm.n, delta, lo, hi, delong[0], delong[1], p_boot)
    test = "stratified bootstrap" if isinstance(arm.statistic, Stratified) else "bootstrap"
    return PairedResult(arm.n, delta, lo, hi, p_boot, test, p_boot)


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values over the arms (``statsmodels`` ``multipletests``,
    ``method='holm'``); NaN entries (no test) stay NaN and do not count as hypotheses."""
    p = np.asarray(p_values, float)
    out = np.full(p.shape, np.nan)
    finite = np.isfinite(p)
    if finite.any():
        from statsmodels.stats.multitest import multipletests  # lazy: statsmodels takes ~1 s to import

        out[finite] = multipletests(p[finite], method="holm")[1]
    return out


def metric_direction(metric: str, higher_is_better: bool | None = None) -> bool:
    """``higher_is_better`` when given, else the direction ``bench.metrics`` declares for ``metric``."""
    if higher_is_better is not None:
        return bool(higher_is_better)
    from bench.metrics import higher_is_better as declared  # lazy: bench.metrics imports torch

    return declared(metric)


def verdict(delta: float, p_adjusted: float, higher_is_better: bool, baseline: str, alpha: float = 0.05,
            equivalent_within: float | None = None) -> str:
    """"better than B" / "worse than B" when the adjusted p is below alpha (the sign of delta and the
    metric's direction decide which); else "practically equivalent to B (within +-r)" when the equivalence
    test passed (``equivalent_within`` = r), else "no detectable difference from B": the comparison cannot
    tell.

    Example:
        >>> verdict(-2.0, 0.01, higher_is_better=False, baseline="dice")
        'better than dice'
    """
    if not (np.isfinite(p_adjusted) and p_adjusted < alpha and np.isfinite(delta) and delta != 0):
        if equivalent_within:
            return f"{EQUIVALENT} {baseline} (within ±{equivalent_within:g})"
        return f"{SAME} {baseline}"
    return f"{BETTER if (delta > 0) == higher_is_better else WORSE} {baseline}"


DESCRIPTIVE = "descriptive only"


def run_verdict(delta: float, p_adjusted: float, higher_is_better: bool, baseline: str, alpha: float = 0.05, *,
                n_seeds: int, n_runs: int, min_seeds: int = MIN_SEEDS, pooled: bool = False,
                equivalent_within: float | None = None) -> str:
    """The verdict of a run-level test (:func:`bench.compare_stats.run_level_test`), or why there is none.

    * ``pooled``: a statistic of the predictions pooled over fold models has no per-run value to test;
    * fewer than ``min_seeds`` seeds per fold: "too few runs (n): descriptive only", never better/worse;
    * a NaN p with a non-zero difference (the fold means do not vary: zero variance): no verdict;
    * else :func:`verdict`.

    Example:
        >>> run_verdict(0.03, 0.01, True, "none", n_seeds=2, n_runs=10)
        'too few runs (10): descriptive only'
    """
    if pooled:
        return f"{DESCRIPTIVE} (pooled over fold models: no per-run value)"
    if n_seeds < min_seeds:
        return f"too few runs ({n_runs}): {DESCRIPTIVE}"
    if not np.isfinite(p_adjusted) and np.isfinite(delta) and delta != 0:
        return "no verdict: the runs' differences do not vary (zero variance)"
    return verdict(delta, p_adjusted, higher_is_better, baseline, alpha, equivalent_within)
