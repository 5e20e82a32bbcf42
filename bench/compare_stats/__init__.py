"""Statistics of ``bench compare``: paired comparisons of arms (strategies) over K folds × S seeds.

The verdict's unit is the training run (:mod:`bench.compare_stats._runs`): one value per arm x fold x seed,
seeds averaged within a fold, every arm against the baseline as one family (:func:`many_to_one`: the arm x
fold term pooled over the arms, Dunnett's max-t; per-arm t and Holm where the arms' run spread differs),
"practically equivalent" within a region of practical equivalence (:func:`equivalent`), no verdict below
:data:`MIN_SEEDS` seeds (:func:`run_verdict`); :func:`run_level_test` / :func:`run_level_p` test one arm;
:func:`variance_components`, :func:`detectable_difference` and :func:`seeds_needed` say what a comparison could see. Everything below is "given these models" (the cases
resampled, the trained models fixed) and describes; :mod:`bench.compare_stats._validity` checks the
verdict by simulation with known truth.

Pure numpy/scipy/pandas (statsmodels for Holm, imported when used); no torch, MLflow or Optuna, so a
comparison's results can be recomputed from a tidy table anywhere. The driver hands per-case values in:

* one arm: :class:`ArmCases` (replicates × cases), or a tidy table through :func:`arm_cases`;
* per arm: :func:`arm_summary` (mean, case-bootstrap CI pooled over seeds as
  :func:`bench.cases.pooled_case_bootstrap`);
* versus the baseline: :func:`paired_per_case` (Dice, HD95, FP volume: mean per-case difference, bootstrap
  CI, Wilcoxon), :func:`paired_set_level` (AUROC, balanced accuracy: paired case bootstrap, DeLong for a
  two-class AUROC via :func:`delong_test`), :func:`holm` over the arms, :func:`verdict`;
* within folds: :class:`Stratified` (a set-level statistic computed per fold and averaged by cases, e.g.
  the AUROC of each fold model on its own cases) with the stratified bootstrap
  (:func:`stratified_case_draws`) and, for two classes, :func:`stratified_delong_test`;
* ranks: :func:`bootstrap_ranks` within a task, :func:`friedman_nemenyi` across tasks
  (:func:`critical_difference`, Demšar 2006);
* everything for one metric from a tidy table: :func:`compare_arms`, written by :func:`results_csv` and
  :func:`results_markdown` (text cells: :func:`results_display`).

Example:
    >>> import pandas as pd
    >>> frame = pd.DataFrame({"arm": ["a"] * 6 + ["b"] * 6, "fold": 0, "seed": 0, "case": list(range(6)) * 2,
    ...                       "dice": [.5, .6, .7, .6, .5, .7] + [.7, .8, .9, .8, .7, .9]})
    >>> compare_arms(frame, "dice", "a", higher_is_better=True)["verdict"].tolist()
    ['baseline', 'too few runs (1): descriptive only']
"""

from bench.compare_stats._delong import DeLongResult, delong_covariance, delong_test, stratified_delong_test
from bench.compare_stats._many_to_one import ManyToOne, equivalent, many_to_one, max_t_critical, max_t_p
from bench.compare_stats._paired import (
    PairedResult,
    bootstrap_p_value,
    holm,
    metric_direction,
    paired_per_case,
    paired_set_level,
    run_verdict,
    set_level_from_draws,
    verdict,
    wilcoxon_p,
)
from bench.compare_stats._ranks import (
    FriedmanResult,
    bootstrap_ranks,
    critical_difference,
    friedman_nemenyi,
    nemenyi_q,
    rank_table,
)
from bench.compare_stats._resample import (
    ArmCases,
    Summary,
    arm_summary,
    balanced_accuracy,
    case_draws,
    draws_for,
    percentile_ci,
    resolve_statistic,
)
from bench.compare_stats._runs import (
    MIN_SEEDS,
    RunTest,
    detectable_difference,
    run_level_p,
    run_level_test,
    seeds_needed,
    variance_components,
)
from bench.compare_stats._stratified import Stratified, stratified_case_draws
from bench.compare_stats._table import (
    arm_cases,
    compare_arms,
    per_case_means,
    results_csv,
    results_display,
    results_markdown,
    run_values,
)

__all__ = [
    "MIN_SEEDS",
    "ArmCases",
    "DeLongResult",
    "FriedmanResult",
    "ManyToOne",
    "PairedResult",
    "RunTest",
    "Stratified",
    "Summary",
    "arm_cases",
    "arm_summary",
    "balanced_accuracy",
    "bootstrap_p_value",
    "bootstrap_ranks",
    "case_draws",
    "compare_arms",
    "critical_difference",
    "delong_covariance",
    "delong_test",
    "detectable_difference",
    "draws_for",
    "equivalent",
    "friedman_nemenyi",
    "holm",
    "many_to_one",
    "max_t_critical",
    "max_t_p",
    "metric_direction",
    "nemenyi_q",
    "paired_per_case",
    "paired_set_level",
    "per_case_means",
    "percentile_ci",
    "rank_table",
    "resolve_statistic",
    "results_csv",
    "results_display",
    "results_markdown",
    "run_level_p",
    "run_level_test",
    "run_values",
    "run_verdict",
    "seeds_needed",
    "set_level_from_draws",
    "stratified_case_draws",
    "stratified_delong_test",
    "variance_components",
    "verdict",
    "wilcoxon_p",
]
