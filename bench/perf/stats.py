"""Validity of ``bench compare``'s verdict by simulation with known truth: ``bench perf --suite stats``.

The full grid of :func:`bench.compare_stats._validity.validity_grid` (cases per fold 33 / 100 / 300 x
run-to-run SD of a run's AUROC 0 / 0.015 / 0.032 x intra-patient correlation 0 / 0.5; 5 folds x 5 seeds):
the false-positive rate of the verdict with equal arms, its power for a true +0.017 AUROC, and the rate of
the rejected alternative (Wilcoxon over the K x S runs as if independent) beside it; then the power of
the run-level test against the number of seeds. Writes the table to results/compare/validity.md.

Goal (issue 21): a false-positive rate <= 0.06 in every cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

GOAL = 0.06


def stats(reps: int = 2000, folds: int = 5, seeds: int = 5, cases: Sequence[int] = (33, 100, 300),
          run_sds: Sequence[float] = (0.0, 0.015, 0.032), rhos: Sequence[float] = (0.0, 0.5),
          power_delta: float = 0.017, power_seeds: Sequence[int] = (2, 3, 5, 10), seed: int = 0,
          markdown: str | None = "results/compare/validity.md", family_reps: int = 1000,
          family_cases: int = 300, rope: float = 0.02) -> dict[str, Any]:
    """Run the two-arm grid (``reps`` replicates per cell), the power-by-seeds curve and the many-arm family
    grid (``family_reps`` per cell: the verdict's procedure beside the earlier one on the same runs); write
    ``markdown``."""
    from scipy.stats import binom

    from bench.compare_stats._runs import run_level_p
    from bench.compare_stats._validity import (
        ARM_CASE,
        binomial_bounds,
        family_grid,
        simulate_run_aurocs,
        validity_grid,
    )

    rows = validity_grid(reps, folds, seeds, cases, run_sds, rhos, power_delta=power_delta, seed=seed)
    curve = []
    for s in power_seeds:
        point = {"seeds": s}
        for h in (ARM_CASE, 0.0):  # with and without the arms' own systematic case errors (the fold term)
            rng = np.random.default_rng([seed, 99, s, int(h * 100)])
            aurocs = simulate_run_aurocs(reps, folds, s, 100, 0.015, 0.0, power_delta, rng, arm_case=h)
            p = run_level_p(aurocs[:, 1] - aurocs[:, 0])
            point["power" if h == ARM_CASE else "power_no_arm_case_errors"] = float(
                np.mean(np.nan_to_num(p, nan=1.0) < 0.05))
        curve.append(point)
    worst = max(r["false_positive_rate"] for r in rows)
    lo, hi = binomial_bounds(reps)
    # how often an exact level-0.05 test shows some cell above the goal by chance alone
    chance = 1 - binom.cdf(int(np.floor(GOAL * reps + 1e-9)), reps, 0.05) ** len(rows)
    result = {"rows": rows, "power_by_seeds": curve, "max_false_positive_rate": worst,
              "binomial_range": [lo, hi], "goal": f"false-positive rate <= {GOAL} in every cell",
              "met": bool(worst <= GOAL), "chance_exact_test_exceeds_goal_somewhere": float(chance),
              "cells_in_binomial_range": sum(lo <= r["false_positive_rate"] <= hi for r in rows)}
    if family_reps:
        family = family_grid(family_reps, folds=folds, seeds=seeds, cases=family_cases, power_delta=power_delta,
                             rope=rope, seed=seed)
        better = next(r for r in family if "power" in r)
        result["family"] = {"rows": family, "reps": family_reps, "cases_per_fold": family_cases, "rope": rope,
                            "binomial_range": list(binomial_bounds(family_reps)),
                            # where the null holds: the overlap cell's arms really differ on their data set
                            "max_familywise_fpr": max(r["familywise_fpr"] for r in family if "overlap" not in r["cell"]),
                            "power_ratio": better["power"] / better["power_old"] if better["power_old"] else
                            float("inf"),
                            "equivalent_rate_all_equal": family[0]["equivalent_rate"]}
    if markdown:
        from bench.config import atomic_write_text

        atomic_write_text(Path(markdown), _markdown(result, reps, folds, seeds, power_delta))
    return result


def _markdown(result: dict[str, Any], reps: int, folds: int, seeds: int, delta: float) -> str:
    lo, hi = result["binomial_range"]
    intro = (f"Simulated two-arm comparisons with known truth, {folds} folds x {seeds} seeds, {reps} replicates "
             "per cell, alpha = 0.05 (bench/compare_stats/_validity.py: per-case two-class scores with a shared "
             "case difficulty, each arm's own systematic errors on a case shared by its seeds, patients of 1-3 "
             "images, run-to-run variation of training; every run's AUROC is the project's `macro_auroc`, the "
             "verdict the project's run-level test: t over the fold means of the paired run differences, no "
             "verdict below 5 seeds).")
    bounds = (f"With an exact alpha the false-positive rate of {reps} replicates lies in [{lo:.3f}, {hi:.3f}] "
              f"(99.9 % binomial range). Power: arm 1 better by +{delta:g} AUROC (`true Δ` is the mean "
              "difference the simulation produced). The last column is the rejected alternative, Wilcoxon over "
              "the K x S runs as if they were independent.")
    header = ("| cases per fold | run SD | intra-patient corr | false-positive rate | power | true Δ | "
              "Wilcoxon over runs FPR |")
    lines = ["# Validity of the verdict (`bench perf --suite stats`)", "", intro, "", bounds, "", header,
             "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['cases_per_fold']} | {r['run_sd']:g} | {r['rho']:g} | {r['false_positive_rate']:.3f} | "
                     f"{r['power']:.3f} | {r['true_delta']:+.4f} | {r['wilcoxon_over_runs_fpr']:.3f} |")
    largest = (f"Largest false-positive rate: {result['max_false_positive_rate']:.3f} (goal <= {GOAL}: "
               f"{'met' if result['met'] else 'NOT met'}). A test of exact size 0.05 shows some cell above {GOAL} "
               f"by chance alone with probability {result['chance_exact_test_exceeds_goal_somewhere']:.2f} at "
               f"{reps} replicates per cell; {result['cells_in_binomial_range']} of {len(result['rows'])} cells lie "
               f"in the binomial range above.")
    curve = (f"Power of the run-level test for +{delta:g} AUROC, 100 cases per fold, run SD 0.015, by seeds per "
             "fold (a verdict needs 5); with the arms' own systematic case errors (as in the grid) the fold term "
             "limits it and more seeds barely help; without them (each run's errors its own) seeds do:")
    lines += ["", largest, "", curve, "", "| seeds | power | power without the arms' own case errors |",
              "|---|---|---|"]
    lines += [f"| {c['seeds']} | {c['power']:.3f} | {c['power_no_arm_case_errors']:.3f} |"
              for c in result["power_by_seeds"]]
    if "family" in result:
        lines += ["", *_family_markdown(result["family"], folds, seeds, delta)]
    return "\n".join(lines) + "\n"


def _family_markdown(family: dict[str, Any], folds: int, seeds: int, delta: float) -> list[str]:
    lo, hi = family["binomial_range"]
    lines = [
        "## Many arms against one baseline", "",
        (f"Seven arms (a baseline and six), {folds} folds x {seeds} seeds, {family['cases_per_fold']} cases per fold, "
        f"run SD 0.015, {family['reps']} replicates per cell, alpha = 0.05, the same generator as above "
        "(`simulate_arms`). **new**: the verdict's procedure (`bench.compare_stats.many_to_one`: the arm x fold "
        "term pooled over the arms, Dunnett's max-t; per-arm t and Holm when Bartlett's test says the arms' run "
        "spread differs); **old**: t over each arm's fold means, Holm over the arms, on the same simulated runs. "
        "Familywise false-positive rate: any equal arm called better or worse. Power: the arm that is better "
        f"by +{delta:g} AUROC called better. Equivalent: share of equal arms called practically equivalent "
        f"within ±{family['rope']:g} (two one-sided tests at 0.05)."), "",
        (f"With an exact alpha the familywise rate of {family['reps']} replicates lies in [{lo:.3f}, {hi:.3f}] "
        "(99.9 % binomial range)."), "",
        "| cell | familywise FPR (new) | familywise FPR (old) | power (new) | power (old) | equivalent (equal arms) |",
        "|---|---|---|---|---|---|"]
    for r in family["rows"]:
        power = (f"{r['power']:.3f} | {r['power_old']:.3f}" if "power" in r else "– | –")
        lines.append(f"| {r['cell']} | {r['familywise_fpr']:.3f} | {r['familywise_fpr_old']:.3f} | {power} | "
                     f"{r['equivalent_rate']:.3f} |")
    null_rows = [r for r in family["rows"] if "overlap" not in r["cell"]]
    worst = max(r["familywise_fpr"] for r in null_rows)
    overlap = [r for r in family["rows"] if "overlap" in r["cell"]]
    lines += ["", f"power ratio (new/old): {family['power_ratio']:.2f}", "",
              (f"Largest familywise false-positive rate of the new procedure where the null holds (every cell but "
              f"the overlap one): {worst:.3f} (goal <= 0.06: {'met' if worst <= 0.06 else 'NOT met'}; the binomial "
              f"range of an exact 0.05 test at {family['reps']} replicates is [{lo:.3f}, {hi:.3f}]).")]
    if overlap:
        lines += ["", (f"The overlap cell ({overlap[0]['familywise_fpr']:.3f} new, {overlap[0]['familywise_fpr_old']:.3f} "
                  "old) violates the population null on purpose: an arm's luck with the data set is shared by its "
                  "folds, so the arm really is different on this data set, and a verdict claims that, not a "
                  "difference on new data sets.")]
    return lines
