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
    """AUROC of every run of ``reps`` simulated two-arm comparisons: shape (reps, 2, folds, seeds); arm 1 is
    better by ``delta`` (see :func:`simulate_arms`)."""
    return simulate_arms(reps, folds, seeds, cases, run_sd, rho, (0.0, delta), rng, arm_case=arm_case)


def simulate_arms(reps: int, folds: int, seeds: int, cases: int, run_sd: float, rho: float,
                  deltas: Sequence[float], rng: np.random.Generator | None = None, *, arm_case: float = ARM_CASE,
                  sd_scale: Sequence[float] | None = None, collapse: float = 0.0, fold_sd: float = 0.0,
                  fold_corr: float = 0.0) -> np.ndarray:
    """AUROC of every run of ``reps`` simulated comparisons of ``len(deltas)`` arms: (reps, arms, folds, seeds).

    The per-case table is simulated as the module docstring says; each run's AUROC is computed by the
    project's ``macro_auroc`` statistic from its probabilities and labels, all runs in one call. Arm a is
    shifted by ``deltas[a]`` AUROC (to first order). Beyond the docstring's model:

    * ``sd_scale``: per-arm factor on the run-to-run SD (an unstable strategy's runs vary more);
    * ``collapse``: share of runs whose training collapsed to chance (beta = 0: AUROC near 0.5), any arm;
    * ``fold_sd``: an arm x fold term of the AUROC not visible in the cases (the arm's luck with the fold's
      training set), SD in AUROC; ``fold_corr``: its correlation across the folds of one arm (K-fold training
      sets overlap: the arm's data-level luck on this data set, shared by its folds).
    """
    rng = rng or np.random.default_rng(0)
    arms = len(deltas)
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
    own = clustered((arms,))[:, :, :, None, :]  # (reps, arm, folds, 1, cases): the arm's errors, shared by seeds
    eps = np.sqrt(arm_case) * own + np.sqrt(1 - arm_case) * clustered((arms, seeds)).transpose(0, 1, 3, 2, 4)
    scale = np.ones(arms) if sd_scale is None else np.asarray(sd_scale, float)
    sd_beta = run_sd / _slope() * scale[None, :, None, None, None]
    beta = BETA_0 + sd_beta * rng.standard_normal((reps, arms, folds, seeds, 1))
    beta += (np.asarray(deltas, float) / _slope())[None, :, None, None, None]
    if fold_sd:
        shared = rng.standard_normal((reps, arms, 1, 1, 1))
        term = np.sqrt(fold_corr) * shared + np.sqrt(1 - fold_corr) * rng.standard_normal((reps, arms, folds, 1, 1))
        beta += fold_sd / _slope() * term
    if collapse:
        beta = np.where(rng.random((reps, arms, folds, seeds, 1)) < collapse, 0.0, beta)
    y = labels[:, None, :, None, :]
    score = beta * y + SHARED * z + np.sqrt(1 - SHARED**2) * eps
    p1 = 1 / (1 + np.exp(-score))
    runs = reps * arms * folds * seeds
    flat_p1 = p1.reshape(runs * cases)
    fields = {"probs": np.stack([1 - flat_p1, flat_p1], axis=1),
              "labels": np.broadcast_to(y, p1.shape).reshape(runs * cases)}
    aurocs = CASE_STATISTICS.get("macro_auroc")(fields, np.arange(runs * cases).reshape(runs, cases))
    return aurocs.reshape(reps, arms, folds, seeds)


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


def holm_reject(p: np.ndarray, alpha: float = 0.05) -> np.ndarray:
    """Holm's step-down rejections of (..., m) p-values, vectorised over the leading axes (NaN: not rejected)."""
    p = np.nan_to_num(np.asarray(p, float), nan=1.0)
    m = p.shape[-1]
    order = np.argsort(p, axis=-1)
    ranked = np.take_along_axis(p, order, axis=-1)
    passes = ranked < alpha / (m - np.arange(m))
    keep = np.cumprod(passes, axis=-1).astype(bool)  # reject while every smaller p passed its step
    out = np.zeros_like(keep)
    np.put_along_axis(out, order, keep, axis=-1)
    return out


def family_decisions(aurocs: np.ndarray, procedure: str, alpha: float = 0.05) -> np.ndarray:
    """Signed decisions (+1 arm above the baseline, -1 below, 0 none) of every non-baseline arm of (reps, A,
    K, S) simulated runs: ``many_to_one`` (the verdict's: :func:`bench.compare_stats._many_to_one.family_rejects`
    on each replicate's arm x fold table of seed means) or ``holm_t`` (the earlier procedure: t over each arm's
    K fold means, Holm over the arms). No decision below MIN_SEEDS seeds."""
    from bench.compare_stats._many_to_one import family_rejects
    from bench.compare_stats._runs import fold_means

    reps, arms, _, seeds = aurocs.shape
    if seeds < MIN_SEEDS:
        return np.zeros((reps, arms - 1), int)
    tables = fold_means(aurocs)
    sign = np.sign(tables[:, 1:].mean(axis=-1) - tables[:, :1].mean(axis=-1))
    if procedure == "holm_t":
        reject = holm_reject(run_level_p(aurocs[:, 1:] - aurocs[:, :1]), alpha)
    elif procedure == "many_to_one":
        reject = np.stack([family_rejects(table, alpha) for table in tables])
    else:
        raise ValueError(f"procedure must be many_to_one or holm_t, but got {procedure!r}")
    return (reject * sign).astype(int)


def equivalence_rate(aurocs: np.ndarray, rope: float, alpha: float = 0.05) -> float:
    """Share of (replicate, non-baseline arm) pairs the verdict calls practically equivalent within ±rope."""
    from scipy.stats import t as student_t

    from bench.compare_stats._many_to_one import contrasts
    from bench.compare_stats._runs import fold_means

    inside = []
    for table in fold_means(aurocs):
        c = contrasts(table)
        half = student_t.ppf(1 - alpha, c["df"]) * c["se"]
        inside.append((c["delta"] - half > -rope) & (c["delta"] + half < rope))
    return float(np.mean(inside))


FAMILY_CELLS: tuple[dict[str, Any], ...] = (
    {"cell": "7 arms equal", "better": 0.0},
    {"cell": "one of 6 arms better by 0.017", "better": 0.017},
    {"cell": "one null arm's runs vary 3x", "better": 0.0, "sd_scale": 3.0},
    {"cell": "5 % of runs collapse to chance", "better": 0.0, "collapse": 0.05},
    {"cell": "15 % of runs collapse to chance", "better": 0.0, "collapse": 0.15},
    {"cell": "arm x fold term not in the cases (SD 0.01)", "better": 0.0, "fold_sd": 0.01},
    {"cell": "arm x fold term, folds' training sets overlap (corr 0.3)", "better": 0.0, "fold_sd": 0.01,
     "fold_corr": 0.3},
)


def family_grid(reps: int = 1000, arms: int = 7, folds: int = 5, seeds: int = MIN_SEEDS, cases: int = 300,
                run_sd: float = 0.015, rho: float = 0.0, rope: float = 0.02, alpha: float = 0.05, seed: int = 0,
                chunk: int = 100, cells: Sequence[dict[str, Any]] = FAMILY_CELLS,
                power_delta: float = 0.017) -> list[dict[str, Any]]:
    """Familywise false-positive rate (any equal arm called better or worse), power (the better arm called
    better) and the equivalence rate of the equal arms, for the verdict's procedure and the earlier one on
    the same simulated runs, in every cell of ``cells``."""
    rows = []
    for number, spec in enumerate(cells):
        rng = np.random.default_rng([seed, 7, number])
        deltas = np.zeros(arms)
        deltas[1] = power_delta if spec["better"] else 0.0
        scale = np.ones(arms)
        scale[-1] = spec.get("sd_scale", 1.0)
        null = np.asarray(deltas[1:] == 0)
        counts = {"fp_new": 0.0, "fp_old": 0.0, "power_new": 0.0, "power_old": 0.0, "equivalent": 0.0}
        for start in range(0, reps, chunk):
            size = min(chunk, reps - start)
            aurocs = simulate_arms(size, folds, seeds, cases, run_sd, rho, deltas, rng, sd_scale=scale,
                                   collapse=spec.get("collapse", 0.0), fold_sd=spec.get("fold_sd", 0.0),
                                   fold_corr=spec.get("fold_corr", 0.0))
            for name, procedure in (("new", "many_to_one"), ("old", "holm_t")):
                decided = family_decisions(aurocs, procedure, alpha)
                counts[f"fp_{name}"] += float(np.sum(np.any(decided[:, null] != 0, axis=1)))
                if not null.all():
                    counts[f"power_{name}"] += float(np.sum(decided[:, 0] == 1))
            equal = aurocs[:, np.concatenate([[True], null])]
            counts["equivalent"] += equivalence_rate(equal, rope, alpha) * size
        row = {"cell": spec["cell"], "reps": reps, "arms": arms, "cases_per_fold": cases, "run_sd": run_sd,
               "familywise_fpr": counts["fp_new"] / reps, "familywise_fpr_old": counts["fp_old"] / reps,
               "equivalent_rate": counts["equivalent"] / reps}
        if not null.all():
            row.update(power=counts["power_new"] / reps, power_old=counts["power_old"] / reps)
        rows.append(row)
    return rows
