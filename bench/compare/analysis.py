"""The statistics of a comparison: one :func:`bench.compare_stats.compare_arms` table per metric.

**The verdict's unit is the training run.** Whatever the metric, each arm has one value per fold x seed
run, paired with the baseline's on the same fold and seed; the verdict is the t test of the K fold means
of those differences (seeds averaged within a fold, because they share its validation cases), Holm over
the arms (:mod:`bench.compare_stats._runs`). With fewer than 5 seeds per fold the verdict column says
"too few runs (n): descriptive only". A run's value, by where the metric comes from:

* per-case metrics in ``val_cases.json`` (heart Dice, lesion Dice): the mean over the run's own
  validation cases; beside it, given these models, the case-bootstrap CI of the pooled cases and the
  Wilcoxon p of per-case differences (``p_case``);
* ``<metric>@fold`` for a set-level metric (``val_auroc@fold``, the xray-heart guidance primary): the
  metric within the run's fold on its own cases; given these models, the stratified case bootstrap
  (cases resampled within fold x class) and stratified DeLong for two classes;
* set-level metrics of the out-of-fold predictions pooled over folds (``val_auroc``): no per-run value,
  so descriptive only (pooling K fold models also scores whether they are calibrated alike); given these
  models, the paired case bootstrap (DeLong for two classes);
* everything else a run logs (HD95, shift gap, attention in heart, test-part scores), and ``<metric>@run``
  for the runs' own values of a pooled metric (``val_auroc@run``): the logged value.

P-values are Holm-adjusted over the arms within each metric; the verdicts of the primary metric are the
comparison's answer, the other metrics describe it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from bench.compare.collect import CaseData, run_frame
from bench.compare.plan import MetricPlan
from bench.compare_stats import MIN_SEEDS, compare_arms
from bench.errors import BenchError, ConfigError

ALPHA = 0.05


@dataclass
class Analysis:
    table: pd.DataFrame  # compare_arms rows of every metric, plus "unit"
    verdicts: list[str]
    notes: list[str] = field(default_factory=list)


PER_RUN = "@run"  # "val_auroc@run": the runs' own val_auroc values, paired per fold x seed
WITHIN_FOLD = "@fold"  # "val_auroc@fold": AUROC within each fold x seed on its cases, averaged by cases


def metric_source(metric: str, cases: CaseData, runs: pd.DataFrame) -> str | None:
    """"case", "set" or "run": where the metric's values come from; None when no run has it.

    ``<metric>@run`` asks for the per-run values of a metric that is otherwise computed from the pooled
    cases (e.g. the mean of the folds' own AUROCs beside the AUROC of the pooled predictions);
    ``<metric>@fold`` (source "fold") the set-level metric within each fold, averaged by cases.
    """
    if metric.endswith(WITHIN_FOLD):
        return "fold" if metric[: -len(WITHIN_FOLD)] in cases.set_level else None
    if metric.endswith(PER_RUN):
        logged = metric[: -len(PER_RUN)]
        return "run" if logged in runs and pd.to_numeric(runs[logged], errors="coerce").notna().any() else None
    if metric in cases.per_case:
        return "case"
    if metric in cases.set_level:
        return "set"
    if metric in runs and pd.to_numeric(runs[metric], errors="coerce").notna().any():
        return "run"
    return None


def analyse(cases: CaseData, runs: pd.DataFrame, metrics: MetricPlan, baseline: str,
            trial_hours: Mapping[str, float], alpha: float = ALPHA, resamples: int = 2000,
            rope: float | None = None) -> Analysis:
    """Compare every arm with ``baseline`` on each metric of ``metrics``; verdict lines from the primary one.

    Args:
        cases: per-case values of the usable runs (:func:`bench.compare.collect.case_data`).
        runs: the usable runs with their logged metrics (:func:`bench.compare.collect.usable_runs`).
        metrics: primary and other metrics; others nobody logged are skipped with a note.
        baseline: the baseline arm's label.
        trial_hours: arm -> hours of all its runs (the compute column).
        rope: region of practical equivalence of the primary metric (default: the metric's declared one);
            the other metrics use their declared ones.

    Raises:
        ConfigError: the primary metric is not available from these runs.
    """
    tables, notes = [], []
    for metric in metrics.all:
        source = metric_source(metric, cases, runs)
        if source is None:
            if metric == metrics.primary:
                logged = [c for c in runs.columns if c.startswith(("val_", "test_", "shift_gap_"))]
                available = sorted({*cases.per_case, *cases.set_level,
                                    *[f"{m}{WITHIN_FOLD}" for m in cases.set_level], *logged})
                raise ConfigError(f"--metric must be a metric these runs logged, but got '{metric}'. "
                                  f"Available: {available}.")
            notes.append(f"{metric}: not logged by these runs, left out.")
            continue
        try:
            table = _one_metric(metric, source, cases, runs, baseline, trial_hours, alpha, resamples,
                                rope if metric == metrics.primary else None)
        except BenchError as exc:
            if metric == metrics.primary:
                raise
            notes.append(f"{metric}: left out ({exc})")
            continue
        table["unit"] = {"run": "run", "fold": "fold"}.get(source, "case")
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    seeds = runs["seed"].nunique() if "seed" in runs else 0
    if seeds < MIN_SEEDS:
        notes.insert(0, f"{seeds} seed(s) per fold: a verdict needs at least {MIN_SEEDS} (run-to-run variation "
                        f"of training is part of the question), so the table is descriptive only. Add seeds "
                        f"with --resume --seeds {MIN_SEEDS}.")
    primary = table[table["metric"] == metrics.primary]
    verdicts = [f"{r.arm}: {r.verdict} (alpha = {alpha:g})" for r in primary.itertuples() if r.verdict != "baseline"]
    return Analysis(table, verdicts, notes)


def _one_metric(metric: str, source: str, cases: CaseData, runs: pd.DataFrame, baseline: str,
                trial_hours: Mapping[str, float], alpha: float, resamples: int,
                rope: float | None = None) -> pd.DataFrame:
    common = {"alpha": alpha, "resamples": resamples, "trial_hours": trial_hours, "rope": rope}
    if source == "case":
        patient = ["group"] if "group" in cases.frame else []  # per-case tests on patient means
        frame = cases.frame[["arm", "fold", "seed", "case", *patient, metric]]
        return compare_arms(frame, metric, baseline, **common)
    if source == "set":
        statistic, fields = cases.set_level[metric]
        return compare_arms(cases.frame, metric, baseline, statistic=statistic, fields=fields, **common)
    from bench.compare_stats import metric_direction

    if source == "fold":
        pooled = metric[: -len(WITHIN_FOLD)]
        statistic, fields = cases.set_level[pooled]
        return compare_arms(cases.frame, metric, baseline, statistic=statistic, fields=fields, strata="fold",
                            higher_is_better=metric_direction(pooled), **common)
    logged = metric.removesuffix(PER_RUN)
    per_run = pd.DataFrame({"arm": runs["arm"].astype(str), "fold": runs["fold"].astype(int),
                            "seed": runs["seed"].astype(int), metric: pd.to_numeric(runs[logged], errors="coerce")})
    frame = run_frame(runs, logged).rename(columns={logged: metric})
    return compare_arms(frame, metric, baseline, higher_is_better=metric_direction(logged), runs=per_run, **common)


def trial_hours(table: pd.DataFrame, arms: Sequence[str]) -> dict[str, float]:
    """Hours of every run of each arm (finished, failed and killed ones too: compute spent is spent)."""
    seconds = table.groupby("arm")["seconds"].sum(min_count=1) if not table.empty else pd.Series(dtype=float)
    return {arm: float(seconds.get(arm, 0.0)) / 3600.0 for arm in arms}


def seeds_for(table: pd.DataFrame, metric: str, target: float, folds: int | None = None,
              alpha: float = ALPHA) -> pd.DataFrame:
    """Seeds per fold each arm would need to detect a difference of ``target`` (80 % power, two-sided, at
    alpha / m: Holm's first step over the m arms), from a finished comparison's variance components.

    ``table`` is the pilot's results table (``results.csv``: ``sd_fold``, ``sd_seed``, ``n_folds``, ``n_seeds``
    per arm); ``folds`` the K planned (default the pilot's). A one-seed pilot cannot separate the seed term
    from the fold term and reports all its variance as the fold term (then more seeds cannot help and the
    answer is None: more folds or cases, or a pilot with 2 seeds or more).

    Raises:
        BenchError: the table has no variance components (made by an older bench: recompute it with
            ``bench compare --name NAME --resume``) or no such metric.
    """
    from bench.compare_stats import detectable_difference, seeds_needed

    part = table[table["metric"] == metric]
    if part.empty:
        raise BenchError(f"--plan-for needs the pilot's metric {metric}, but its results table holds "
                         f"{sorted(set(table['metric']))}. Pass --metric.")
    if "sd_fold" not in part or part["sd_fold"].isna().all():
        raise BenchError(f"--plan-for needs the pilot's run-level variance components (sd_fold, sd_seed) of "
                         f"{metric}, but its results table has none (made by an older bench, or the metric has no "
                         f"per-run value). Recompute it with `bench compare --name NAME --resume`.")
    others = part[part["verdict"] != "baseline"]
    m = max(1, len(others))
    rows = []
    for r in others.itertuples():
        k = int(folds or r.n_folds)
        rows.append({"arm": r.arm, "delta_now": r.run_delta, "sd_fold": r.sd_fold, "sd_seed": r.sd_seed,
                     "pilot": f"{int(r.n_folds)} x {int(r.n_seeds)}", "folds": k,
                     "detectable_now": detectable_difference(r.sd_fold, r.sd_seed, k, int(r.n_seeds), alpha / m),
                     "seeds_needed": seeds_needed(target, r.sd_fold, r.sd_seed, k, alpha / m)})
    return pd.DataFrame(rows)
