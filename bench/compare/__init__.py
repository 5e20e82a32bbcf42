"""``bench compare``: controlled, cross-validated, paired comparisons of the arms of one dimension.

Every arm (a value of ``guidance``, ``seg_loss``, ``seg_arch``, ...) is trained at one fixed (or equally
tuned) configuration on all K folds x S seeds of the standard patient-grouped split, each run made by the
one tracked-trial lifecycle; per-case validation values are then compared with the baseline's on the same
cases (:mod:`bench.compare_stats`), and the results table, plots and report are logged on the comparison's
parent MLflow run.

The public names load on first use, so ``bench.compare.command`` (the CLI's parser) imports no MLflow or
pandas.

Example:
    >>> from bench.compare import compare
    >>> result = compare("xray-heart", "guidance", arms=["none", "soft_mask"], folds=2,
    ...                  preset="smoke")  # doctest: +SKIP
    >>> print("\\n".join(result.verdicts))  # doctest: +SKIP
    soft_mask: no detectable difference from none (alpha = 0.05)
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ComparisonResult": "result", "Progress": "driver", "compare": "driver", "resolve_base": "driver",
    "summarize": "export", "write_outputs": "export",
    "Dimension": "plan", "Job": "plan", "MetricPlan": "plan", "load_reference": "plan",
    "metric_plan": "plan",
}
__all__ = ["ComparisonResult", "Dimension", "Job", "MetricPlan", "Progress", "compare",
           "load_reference", "metric_plan", "resolve_base", "summarize", "write_outputs"]


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'bench.compare' has no attribute '{name}'")
    return getattr(importlib.import_module(f"bench.compare.{_PUBLIC[name]}"), name)
