"""segmentation: any nnU-Net v2 raw folder or MSD task folder as a benchmark task.

Modules: ``spec`` (the registered TaskSpec, task parameters, presets and the guide stage; light), ``data``
(survey, preprocess, cache, split, label and organ choice, planned patch; phantom writer and inspector) and
``pipeline`` (one trial: guide stage, target stage, scoring per label; training and inference are the shared
engine's, ``bench.tasks.seg_engine``). Importing the package stays light.
"""

from __future__ import annotations

from bench.tasks.segmentation.spec import (
    DEFAULT_TASK_PARAMS,
    GUIDE_STAGE,
    SPEC,
    TARGET_METRICS,
    TASK,
    task_param,
)

__all__ = ["DEFAULT_TASK_PARAMS", "GUIDE_STAGE", "SPEC", "TARGET_METRICS", "TASK", "task_param"]
