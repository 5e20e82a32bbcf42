"""segmentation: any nnU-Net v2 raw folder or MSD task folder as a benchmark task.

Modules: ``spec`` (the registered TaskSpec, task parameters, presets and the guide stage; light), ``data``
(survey, preprocess, cache, split; phantom writer and inspector) and ``pipeline`` (one trial: guide stage,
target stage, scoring; training and inference are ct-lung's). Importing the package stays light.
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
