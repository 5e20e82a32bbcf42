"""xray-heart: segment the heart on a chest radiograph, then classify congenital heart disease with the
classifier guided by the predicted heart mask (seed project 1).

Modules: ``spec`` (the registered TaskSpec and presets; light), ``data`` (read, preprocess, cache, split)
and ``pipeline`` (one trial: models, training, scoring). The names of ``data`` and ``pipeline`` are
importable from here too and load their module on first use, so importing the package stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from bench.tasks.xray_heart.spec import PHANTOM_SPEC, SPEC, TASK

_HEAVY = {
    **{name: "data" for name in ("XrayData", "prepare", "preprocess", "PREPROCESSING_VERSION")},
    **{name: "pipeline" for name in ("run", "evaluate", "build_models", "checkpoint_models")},
}


def __getattr__(name: str) -> Any:
    if name == "_preprocess":  # the former private name (bench.perf.data times exactly this step)
        name = "preprocess"
    if name in _HEAVY:
        return getattr(importlib.import_module(f"{__name__}.{_HEAVY[name]}"), name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")


__all__ = ["PHANTOM_SPEC", "SPEC", "TASK"]
