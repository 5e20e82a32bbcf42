"""DeLong's test for correlated AUROCs on the same cases, in the fast midrank form.

DeLong, DeLong & Clarke-Pearson (1988), "Comparing the areas under two or more correlated receiver
operating characteristic curves: a nonparametric approach", Biometrics 44:837-845; computed with the
midrank algorithm of Sun & Xu (2014), "Fast implementation of DeLong's algorithm for comparing the areas
under correlated receiver operating characteristic curves", IEEE Signal Processing Letters 21:1389-1393.
Neither scipy nor statsmodels nor sklearn has it.

Images of one patient are not independent cases: with ``clusters`` (each case's patient) the covariance is
Obuchowski's (1997) clustered form, "Nonparametric analysis of clustered ROC curve data", Biometrics
53:567-578, which sums the same structural components within each patient before taking their spread; with
one case per patient it equals DeLong's.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm, rankdata

from bench.errors import BenchError


def delong_covariance(labels: ArrayLike, scores: ArrayLike, clusters: ArrayLike | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs of k score vectors on the same binary cases and DeLong's covariance matrix of them.

    With m positive cases X and n negative cases Y, the structural components of score vector r are
    V10_r(X_i) = (1/n) sum_j psi(X_ri, Y_rj) and V01_r(Y_j) = (1/m) sum_i psi(X_ri, Y_rj), with
    psi(x, y) = 1 if x > y, 1/2 if x = y, 0 otherwise, and AUC_r is their mean. DeLong's estimate is

        S = S10 / m + S01 / n,

    with S10, S01 the k×k sample covariance matrices of the V10 over positives and of the V01 over
    negatives. Sun & Xu compute the components from midranks in O(k N log N): with T_z the midrank of a
    case among all N cases, T_x among the positives and T_y among the negatives,
    V10 = (T_z - T_x) / n, V01 = 1 - (T_z - T_y) / m, AUC = (sum_i T_z(X_i) - m(m+1)/2) / (m n).

    Args:
        labels: N binary labels (1 = positive).
        scores: k×N (or N) scores, higher = more likely positive.
        clusters: N patient labels (any values) or None (every case its own patient); see
            :func:`clustered_covariance`.

    Returns:
        (aucs of shape (k,), covariance of shape (k, k)).

    Raises:
        BenchError: when the labels are not binary or a class has fewer than two cases.
    """
    y = np.asarray(labels)
    z = np.atleast_2d(np.asarray(scores, float))
    if not np.isin(y, (0, 1)).all() or z.shape[1] != y.shape[0]:
        raise BenchError(f"DeLong's test needs binary labels (0/1) and one score per label, but got labels "
                         f"{np.unique(y).tolist()[:5]} and scores of shape {z.shape}. Pass P(class 1).")
    positive = y.astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m < 2 or n < 2:
        raise BenchError(f"DeLong's test needs at least two positive and two negative cases, but got {m} "
                         f"and {n}. Score more cases.")
    pos, neg = z[:, positive], z[:, ~positive]
    tx, ty = rankdata(pos, axis=1), rankdata(neg, axis=1)
    tz = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    if clusters is not None:
        groups = np.asarray(clusters)
        if groups.shape != y.shape:
            raise BenchError(f"a clustered DeLong test needs one patient per case, but got {groups.size} patients "
                             f"for {y.size} cases.")
        return aucs, clustered_covariance(aucs, v10, v01, groups[positive], groups[~positive])
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def clustered_covariance(aucs: np.ndarray, v10: np.ndarray, v01: np.ndarray, pos_clusters: np.ndarray,
                         neg_clusters: np.ndarray) -> np.ndarray:
    """Obuchowski's (1997) covariance of k AUCs from their structural components summed per patient.

    With I patients, patient c holding m_c positive and n_c negative cases (M, N in all), A_r(c) the sum of
    V10_r over c's positives and B_r(c) the sum of V01_r over its negatives, I10 (I01) the number of patients
    with a positive (negative) case:

        S10 = I10 / ((I10 - 1) M) * sum_c (A_r(c) - m_c AUC_r)(A_s(c) - m_c AUC_s)
        S01 = I01 / ((I01 - 1) N) * sum_c (B_r(c) - n_c AUC_r)(B_s(c) - n_c AUC_s)
        S11 = I / (I - 1) * sum_c (A_r(c) - m_c AUC_r)(B_s(c) - n_c AUC_s)
        Cov = S10 / M + S01 / N + (S11 + S11') / (M N)

    The last term is what a patient with both a positive and a negative image adds. With one case per
    patient S11 = 0 and S10, S01 are the sample covariances: DeLong's estimate.

    Raises:
        BenchError: when fewer than two patients hold positive or negative cases.
    """
    everyone = np.concatenate([pos_clusters, neg_clusters]).astype(str)
    names, index = np.unique(everyone, return_inverse=True)
    pos_of, neg_of = index[: pos_clusters.size], index[pos_clusters.size :]
    size = names.size
    m, n = pos_of.size, neg_of.size
    m_c, n_c = np.bincount(pos_of, minlength=size), np.bincount(neg_of, minlength=size)
    i10, i01 = int((m_c > 0).sum()), int((n_c > 0).sum())
    if i10 < 2 or i01 < 2:
        raise BenchError(f"a clustered DeLong test needs positive cases from two patients and negative cases "
                         f"from two patients, but got {i10} and {i01}. Score more patients.")
    a = np.stack([np.bincount(pos_of, row, minlength=size) for row in v10]) - np.outer(aucs, m_c)
    b = np.stack([np.bincount(neg_of, row, minlength=size) for row in v01]) - np.outer(aucs, n_c)
    s10 = i10 / ((i10 - 1) * m) * (a @ a.T)
    s01 = i01 / ((i01 - 1) * n) * (b @ b.T)
    s11 = size / (size - 1) * (a @ b.T)
    return s10 / m + s01 / n + (s11 + s11.T) / (m * n)


class DeLongResult(NamedTuple):
    auc_a: float
    auc_b: float
    delta: float
    se: float
    z: float
    p: float


def _no_variance(auc_a: float, auc_b: float, delta: float) -> DeLongResult:
    if abs(delta) < 1e-12:
        return DeLongResult(auc_a, auc_b, delta, 0.0, 0.0, 1.0)
    return DeLongResult(auc_a, auc_b, delta, 0.0, float("nan"), float("nan"))


def delong_test(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike,
                clusters: ArrayLike | None = None) -> DeLongResult:
    """Two-sided DeLong test of AUC(a) = AUC(b) for two classifiers scored on the same cases.

    Each of ``scores_a`` and ``scores_b`` is N scores or R×N (R seeds of the same arm on the same cases);
    an arm's AUC is then the mean of its R AUCs. The difference is the contrast L·AUC with
    L = (1/R_a, ..., 1/R_a, -1/R_b, ..., -1/R_b) over all R_a + R_b score vectors, its variance L S L'
    with S from :func:`delong_covariance` (DeLong et al. 1988, section 3), z = L·AUC / sqrt(L S L') and
    p = 2 (1 - Phi(|z|)). A zero variance gives p = 1 when the AUCs are equal (e.g. two identical score
    sets) and NaN when they differ: nothing to test (e.g. 2 + 2 perfectly separated cases), never p = 0.
    With ``clusters`` (each case's patient) S is Obuchowski's clustered covariance.

    Example:
        >>> delong_test([0, 0, 1, 1, 0, 1], [.1, .2, .8, .9, .3, .7], [.1, .2, .8, .9, .3, .7]).p
        1.0
    """
    a, b = np.atleast_2d(np.asarray(scores_a, float)), np.atleast_2d(np.asarray(scores_b, float))
    aucs, cov = delong_covariance(labels, np.concatenate([a, b]), clusters)
    contrast = np.concatenate([np.full(len(a), 1 / len(a)), np.full(len(b), -1 / len(b))])
    delta = float(contrast @ aucs)
    variance = float(contrast @ cov @ contrast)
    auc_a, auc_b = float(aucs[: len(a)].mean()), float(aucs[len(a) :].mean())
    if variance <= 1e-15:
        return _no_variance(auc_a, auc_b, delta)
    se = variance**0.5
    z = delta / se
    return DeLongResult(auc_a, auc_b, delta, se, z, float(2 * norm.sf(abs(z))))


def stratified_delong_test(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike,
                           strata: ArrayLike, clusters: ArrayLike | None = None) -> DeLongResult:
    """DeLong's test of the case-weighted mean of per-stratum AUROCs (AUROC within each fold, averaged).

    Strata hold disjoint cases, so their AUROC differences are independent: with w_s = n_s / N,
    delta = sum_s w_s delta_s and Var(delta) = sum_s w_s^2 Var(delta_s), each stratum's delta_s and
    Var(delta_s) = L S_s L' from :func:`delong_covariance` on its own cases (the contrast L of
    :func:`delong_test`, seeds as replicates); z = delta / sqrt(Var) and p = 2 (1 - Phi(|z|)), the
    stratified form of DeLong et al. (1988) as for a stratified Mann-Whitney statistic (van Elteren 1960).
    With ``clusters`` (patients, each within one stratum) each stratum's S_s is Obuchowski's clustered one.

    Raises:
        BenchError: when a stratum has fewer than two positive or two negative cases.
    """
    y = np.asarray(labels)
    a, b = np.atleast_2d(np.asarray(scores_a, float)), np.atleast_2d(np.asarray(scores_b, float))
    groups = np.asarray(strata)
    contrast = np.concatenate([np.full(len(a), 1 / len(a)), np.full(len(b), -1 / len(b))])
    delta = variance = auc_a = auc_b = 0.0
    for stratum in dict.fromkeys(groups.tolist()):
        cols = groups == stratum
        weight = cols.sum() / groups.size
        aucs, cov = delong_covariance(y[cols], np.concatenate([a[:, cols], b[:, cols]]),
                                      None if clusters is None else np.asarray(clusters)[cols])
        delta += weight * float(contrast @ aucs)
        variance += weight**2 * float(contrast @ cov @ contrast)
        auc_a += weight * float(aucs[: len(a)].mean())
        auc_b += weight * float(aucs[len(a) :].mean())
    if variance <= 1e-15:
        return _no_variance(auc_a, auc_b, delta)
    se = variance**0.5
    return DeLongResult(auc_a, auc_b, delta, se, delta / se, float(2 * norm.sf(abs(delta / se))))
