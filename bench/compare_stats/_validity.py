"""Does the verdict hold? A seeded, vectorised simulation with known truth that calls the verdict's code.

Each replicate is a comparison of two arms on K folds x S seeds: per-case two-class scores, from which
every run's AUROC is the project's own ``macro_auroc`` statistic (:mod:`bench.cases`, all runs in one
vectorised call) and the verdict the project's run-level test (:func:`bench.compare_stats.run_level_p`
at alpha, no verdict below :data:`~bench.compare_stats._runs.MIN_SEEDS` seeds).

The model of a run's scores (arm a, fold f, seed s, case i of patient p, label y_i shared by a patient's
images):

    score = beta_afs * y_i + g z_i + sqrt(1 - g^2) eps_afsi,    beta_afs = beta_0 + shift_a + tau_afs,

with z (case difficulty, shared by every arm and run) and eps = sqrt(h) a_ai + sqrt(1 - h) r_afsi, where
a_ai is the arm's own systematic error on the case (shared by the arm's seeds: models of one arm trained on
one fold err on the same cases; under the null it has mean zero over cases, so it is a fold-level term of
the paired differences) and r the run's own errors; z, a and r are each sqrt(rho) * patient part +
sqrt(1 - rho) * image part, so rho is the intra-patient correlation of the images. tau ~ N(0, sd_beta^2) is the run-to-run variation of training, scaled so that a run's AUROC has
standard deviation ``run_sd`` (AUROC = Phi(beta / sqrt 2), so dAUROC/dbeta = phi(beta_0 / sqrt 2) / sqrt 2).
Under the null both arms share beta_0; ``delta`` shifts arm 1 by delta AUROC (to first order).
A patient holds 1-3 images (as the standard xray-heart split: 163 images of 80 patients).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import binom, norm

from bench.cases import CASE_STATISTICS
from bench.compare_stats._runs import MIN_SEEDS, run_level_p

BETA_0 = 1.5  # AUROC Phi(1.5 / sqrt 2) = 0.855
SHARED = 0.7  # g: share of a case's score noise that every arm and run sees (its difficulty)
ARM_CASE = 0.5  # h: share of the rest that is the arm's own systematic error on the case (shared by its seeds)
CASES = (33, 100, 300)
RUN_SDS = (0.0, 0.015, 0.032)
RHOS = (0.0, 0.5)


def _slope() -> float:
    return float(norm.pdf(BETA_0 / np.sqrt(2)) / np.sqrt(2))


def _patients(n: int, rng: np.random.Generator) -> np.ndarray:
    """Patient number of each of n images, 1-3 images per patient, in order (0, 0, 1, 2, 2, 2, ...)."""
    sizes = rng.integers(1, 4, size=n)
    return np.repeat(np.arange(n), sizes)[:n]


def simulate_run_aurocs(reps: int, folds: int, seeds: int, cases: int, run_sd: float, rho: float,
                        delta: float = 0.0, rng: np.random.Generator | None = None,
                        arm_case: float = ARM_CASE) -> np.ndarray:
    """AUROC of every run of ``reps`` simulated two-arm comparisons: shape (reps, 2, folds, seeds).

    The per-case table is simulated as the module docstring says; each run's AUROC is computed by the
    project's ``macro_auroc`` statistic from its probabilities and labels, all runs in one call.
    """
    rng = rng or np.random.default_rng(0)
    shape = (reps, folds, cases)
    patient = np.stack([_patients(cases, rng) for _ in range(reps * folds)]).reshape(shape)
    p_label = rng.integers(0, 2, size=shape)  # label per patient number: images of a patient share it
    labels = np.take_along_axis(p_label, patient, axis=-1)

    def clustered(extra: tuple[int, ...]) -> np.ndarray:
        """sqrt(rho) * patient part + sqrt(1 - rho) * image part, shape (reps, *extra, folds, cases)."""
        full = (reps, *extra, folds, cases)
        per_patient = rng.standard_normal(full)
        idx = np.broadcast_to(patient.reshape(reps, *([1] * len(extra)), folds, cases), full)
        return np.sqrt(rho) * np.take_along_axis(per_patient, idx, axis=-1) + np.sqrt(1 - rho) * rng.standard_normal(full)

    z = clustered(())[:, None, :, None, :]  # shared by arms and seeds
    own = clustered((2,))[:, :, :, None, :]  # (reps, arm, folds, 1, cases): the arm's errors, shared by seeds
    eps = np.sqrt(arm_case) * own + np.sqrt(1 - arm_case) * clustered((2, seeds)).transpose(0, 1, 3, 2, 4)
    sd_beta = run_sd / _slope()
    beta = BETA_0 + sd_beta * rng.standard_normal((reps, 2, folds, seeds, 1))
    beta[:, 1] += delta / _slope()
    y = labels[:, None, :, None, :]
    score = beta * y + SHARED * z + np.sqrt(1 - SHARED**2) * eps
    p1 = 1 / (1 + np.exp(-score))
    runs = reps * 2 * folds * seeds
    flat_p1 = p1.reshape(runs * cases)
    fields = {"probs": np.stack([1 - flat_p1, flat_p1], axis=1),
              "labels": np.broadcast_to(y, p1.shape).reshape(runs * cases)}
    aurocs = CASE_STATISTICS.get("macro_auroc")(fields, np.arange(runs * cases).reshape(runs, cases))
    return aurocs.reshape(reps, 2, folds, seeds)


def verdict_rate(aurocs: np.ndarray, alpha: float = 0.05) -> float:
    """Share of replicates whose verdict is "better" or "worse": run-level p < alpha, with enough seeds."""
    if aurocs.shape[-1] < MIN_SEEDS:
        return 0.0
    p = run_level_p(aurocs[:, 1] - aurocs[:, 0])
    return float(np.mean(np.nan_to_num(p, nan=1.0) < alpha))


def wilcoxon_over_runs_rate(aurocs: np.ndarray, alpha: float = 0.05) -> float:
    """The rejected alternative: Wilcoxon signed-rank over the K x S runs as if independent."""
    from scipy.stats import wilcoxon

    d = (aurocs[:, 1] - aurocs[:, 0]).reshape(len(aurocs), -1)
    p = np.array([wilcoxon(row[row != 0]).pvalue if np.any(row != 0) else 1.0 for row in d])
    return float(np.mean(p < alpha))


def binomial_bounds(reps: int, alpha: float = 0.05, confidence: float = 0.999) -> tuple[float, float]:
    """Range of the false-positive rate of ``reps`` replicates of a test of exact size alpha."""
    lo, hi = binom.ppf([(1 - confidence) / 2, (1 + confidence) / 2], reps, alpha)
    return float(lo / reps), float(hi / reps)


def validity_grid(reps: int = 1000, folds: int = 5, seeds: int = MIN_SEEDS, cases: Sequence[int] = CASES,
                  run_sds: Sequence[float] = RUN_SDS, rhos: Sequence[float] = RHOS, alpha: float = 0.05,
                  power_delta: float = 0.017, seed: int = 0, chunk: int = 250) -> list[dict[str, Any]]:
    """False-positive rate (equal arms) and power (arm 1 better by ``power_delta`` AUROC) of the verdict in
    every cell of cases per fold x run SD x intra-patient correlation; beside them the rate of Wilcoxon over
    the K x S runs (the rejected alternative) under the null."""
    rows = []
    for n in cases:
        for run_sd in run_sds:
            for rho in rhos:
                rng = np.random.default_rng([seed, n, int(run_sd * 1e4), int(rho * 100)])
                null, alt, wil, deltas = [], [], [], []
                for start in range(0, reps, chunk):
                    size = min(chunk, reps - start)
                    a0 = simulate_run_aurocs(size, folds, seeds, n, run_sd, rho, 0.0, rng)
                    a1 = simulate_run_aurocs(size, folds, seeds, n, run_sd, rho, power_delta, rng)
                    null.append(verdict_rate(a0, alpha) * size)
                    alt.append(verdict_rate(a1, alpha) * size)
                    wil.append(wilcoxon_over_runs_rate(a0, alpha) * size)
                    deltas.append(float(np.nanmean(a1[:, 1] - a1[:, 0])) * size)
                rows.append({"cases_per_fold": n, "run_sd": run_sd, "rho": rho, "reps": reps,
                             "false_positive_rate": sum(null) / reps, "power": sum(alt) / reps,
                             "true_delta": sum(deltas) / reps,
                             "wilcoxon_over_runs_fpr": sum(wil) / reps})
    return rows
