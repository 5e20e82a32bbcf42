"""Task registry: what a benchmark task trains, measures and optimises, and its budget presets.

Each task is a package (``xray_heart/``, ``ct_lung/``, ``segmentation/``) whose ``spec`` module registers its ``TaskSpec``
without importing torch, MONAI or smp; its data, training and pipeline modules load when a trial (or
``prepare``, ``evaluate``, ...) first calls them.
"""

from __future__ import annotations

from bench.tasks.base import SEARCH_SPACES_DIR, TASKS, Preset, TaskSpec, lazy, register_task
from bench.tasks.ct_lung import spec as _ct_lung_spec  # noqa: F401  (registers the task)
from bench.tasks.segmentation import spec as _segmentation_spec  # noqa: F401  (registers the task)
from bench.tasks.xray_heart import spec as _xray_heart_spec  # noqa: F401  (registers the task)

__all__ = ["SEARCH_SPACES_DIR", "TASKS", "Preset", "TaskSpec", "lazy", "register_task"]
