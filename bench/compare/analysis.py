"""The statistics of a comparison: one :func:`bench.compare_stats.compare_arms` table per metric.

Where each metric's values come from decides its test (see :mod:`bench.compare_stats`):

* per-case metrics in ``val_cases.json`` (heart Dice, lesion Dice): unit = case, pooled over folds (a case
  is validated by its fold's model) and averaged over seeds; Wilcoxon signed-rank on per-case differences;
* set-level metrics recomputed from the cases (AUROC, balanced accuracy from the logged probabilities):
  unit = case; the arm's value is the metric of the pooled out-of-fold predictions (averaged over seeds),
  compared by a paired case bootstrap (DeLong for a two-class AUROC);
* ``<metric>@fold`` for such a metric computed within each fold x seed on that fold's own validation
  cases and averaged, weighted by the folds' case counts (``val_auroc@fold``: the primary guidance metric
  of xray-heart; unlike the pooled AUROC it does not score whether K fold models are calibrated alike):
  unit = fold; the paired case bootstrap resamples cases within each fold (stratified bootstrap: CI, and
  the p-value as twice the smaller tail beyond zero), stratified DeLong for a two-class AUROC;
* everything else a run logs (HD95, shift gap, attention in heart, test-part scores), and
  ``<metric>@run`` for the runs' own values of a pooled metric (``val_auroc@run``: the folds' AUROCs,
  which unlike the pooled AUROC do not mix the calibrations of K models): unit = run; the
  arms are paired on the same fold x seed and compared by Wilcoxon over the K x S runs (with 5 runs or
  fewer no difference can reach alpha = 0.05: the table says so by its p-values).

P-values are Holm-adjusted over the arms within each metric; the verdicts of the primary metric are the
comparison's answer, the other metrics describe it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from bench.compare.collect import CaseData, run_frame
from bench.compare.plan import MetricPlan
from bench.compare_stats import compare_arms
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
            trial_hours: Mapping[str, float], alpha: float = ALPHA, resamples: int = 2000) -> Analysis:
    """Compare every arm with ``baseline`` on each metric of ``metrics``; verdict lines from the primary one.

    Args:
        cases: per-case values of the usable runs (:func:`bench.compare.collect.case_data`).
        runs: the usable runs with their logged metrics (:func:`bench.compare.collect.usable_runs`).
        metrics: primary and other metrics; others nobody logged are skipped with a note.
        baseline: the baseline arm's label.
        trial_hours: arm -> hours of all its runs (the compute column).

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
            table = _one_metric(metric, source, cases, runs, baseline, trial_hours, alpha, resamples)
        except BenchError as exc:
            if metric == metrics.primary:
                raise
            notes.append(f"{metric}: left out ({exc})")
            continue
        table["unit"] = {"run": "run", "fold": "fold"}.get(source, "case")
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    primary = table[table["metric"] == metrics.primary]
    verdicts = [f"{r.arm}: {r.verdict} (alpha = {alpha:g})" for r in primary.itertuples() if r.verdict != "baseline"]
    return Analysis(table, verdicts, notes)


def _one_metric(metric: str, source: str, cases: CaseData, runs: pd.DataFrame, baseline: str,
                trial_hours: Mapping[str, float], alpha: float, resamples: int) -> pd.DataFrame:
    common = {"alpha": alpha, "resamples": resamples, "trial_hours": trial_hours}
    if source == "case":
        frame = cases.frame[["arm", "fold", "seed", "case", metric]]
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
    if metric.endswith(PER_RUN):
        logged = metric[: -len(PER_RUN)]
        frame = run_frame(runs, logged).rename(columns={logged: metric})
        return compare_arms(frame, metric, baseline, higher_is_better=metric_direction(logged), **common)
    return compare_arms(run_frame(runs, metric), metric, baseline, **common)


def trial_hours(table: pd.DataFrame, arms: Sequence[str]) -> dict[str, float]:
    """Hours of every run of each arm (finished, failed and killed ones too: compute spent is spent)."""
    seconds = table.groupby("arm")["seconds"].sum(min_count=1) if not table.empty else pd.Series(dtype=float)
    return {arm: float(seconds.get(arm, 0.0)) / 3600.0 for arm in arms}
