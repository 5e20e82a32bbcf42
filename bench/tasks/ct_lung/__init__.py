"""ct-lung: segment the lungs, then segment lung lesions (nodules, ground-glass opacities) guided by the
predicted lung mask; the objective is the validation lesion Dice.

Modules: ``spec`` (the registered TaskSpec, task parameters and presets; light), ``data`` (read,
preprocess, cache, split; phantom writer and inspector), ``nets`` (3D or slice-by-slice 2D networks),
``lung_guidance`` (a ``LESION_GUIDANCE`` strategy applied to whole volumes), ``training`` (patch training
and sliding-window inference) and ``pipeline`` (one trial: lung stage, lesion stage, scoring). Their names
are importable from here too and load their module on first use, so importing the package stays light.
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

_HEAVY = {
    **{name: "data" for name in ("CtData", "prepare", "preprocess", "make_phantom", "inspect", "HU_WINDOW",
                                 "PREPROCESSING_VERSION")},
    **{name: "nets" for name in ("SliceNet", "build_seg_net", "family_of")},
    **{name: "lung_guidance" for name in ("make_guidance", "to_segmenter_grid", "to_image_grid")},
    **{name: "training" for name in ("Volumes", "make_volumes", "train_net", "infer")},
    **{name: "pipeline" for name in ("run", "lung_stage", "overlay")},
}


def __getattr__(name: str) -> Any:
    if name in _HEAVY:
        return getattr(importlib.import_module(f"{__name__}.{_HEAVY[name]}"), name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


__all__ = ["DEFAULT_TASK_PARAMS", "LESION_METRICS", "SMOKE_PARAMS", "SPEC", "TASK", "phantom_spec", "task_param"]
