"""``bench compare``: controlled, cross-validated, paired comparisons of the arms of one dimension.

Every arm (a value of ``guidance``, ``seg_loss``, ``seg_arch``, ...) is trained at one fixed (or equally
tuned) configuration on all K folds x S seeds of the standard patient-grouped split, each run made by the
one tracked-trial lifecycle; per-case validation values are then compared with the baseline's on the same
cases (:mod:`bench.compare_stats`), and the results table, plots and report are logged on the comparison's
parent MLflow run.

Example:
    >>> from bench.compare import compare
    >>> result = compare("xray-heart", "guidance", arms=["none", "soft_mask"], folds=2,
    ...                  preset="smoke")  # doctest: +SKIP
    >>> print("\\n".join(result.verdicts))  # doctest: +SKIP
    soft_mask: no detectable difference from none (alpha = 0.05)
"""

from bench.compare.driver import ComparisonResult, Progress, compare, resolve_base
from bench.compare.export import summarize, write_outputs
from bench.compare.plan import METRIC_TABLE, Dimension, Job, MetricPlan, load_reference, metric_plan

__all__ = ["METRIC_TABLE", "ComparisonResult", "Dimension", "Job", "MetricPlan", "Progress", "compare",
           "load_reference", "metric_plan", "resolve_base", "summarize", "write_outputs"]
