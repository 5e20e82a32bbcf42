"""ct-lung: segment the lungs, then segment lung lesions (nodules, ground-glass opacities) guided by the
predicted lung mask; the objective is the validation lesion Dice.

Modules: ``spec`` (the registered TaskSpec, task parameters and presets; light), ``data`` (read,
preprocess, cache, split; phantom writer and inspector) and ``pipeline`` (one trial: lung stage, lesion
stage, scoring). Networks, guidance on whole volumes, patch training, inference and the second stage are the
shared segmentation engine's (``bench.tasks.seg_engine``). The names below are importable from here too and
load their module on first use, so importing the package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from bench.tasks.ct_lung.spec import (
    DEFAULT_TASK_PARAMS,
    LESION_METRICS,
    SMOKE_PARAMS,
    SPEC,
    TASK,
    phantom_spec,
    task_param,
)

_ENGINE = "bench.tasks.seg_engine"
_HEAVY = {
    **{name: "data" for name in ("CtData", "prepare", "preprocess", "make_phantom", "inspect", "HU_WINDOW",
                                 "PREPROCESSING_VERSION")},
    **{name: f"{_ENGINE}.nets" for name in ("SliceNet", "build_seg_net", "family_of")},
    **{name: f"{_ENGINE}.guided" for name in ("make_guidance", "to_segmenter_grid", "to_image_grid")},
    **{name: f"{_ENGINE}.training" for name in ("Volumes", "make_volumes", "train_net", "infer")},
    **{name: "pipeline" for name in ("run", "lung_stage", "overlay")},
}


def __getattr__(name: str) -> Any:
    if name in _HEAVY:
        module = _HEAVY[name]
        return getattr(importlib.import_module(module if "." in module else f"{__name__}.{module}"), name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


__all__ = ["DEFAULT_TASK_PARAMS", "LESION_METRICS", "SMOKE_PARAMS", "SPEC", "TASK", "phantom_spec", "task_param"]
