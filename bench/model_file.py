"""``model.json``: what predicting with a trial's ``checkpoint.pt`` needs besides its weights.

A finished trial logs it beside ``config.yaml`` and ``checkpoint.pt`` (``Tracker.log_trial_artifacts``), so
``bench predict`` and the registered MLflow model need neither the search space nor the training data:

- ``format``: :data:`FORMAT`; ``bench_version``; ``task``; ``weights``: the file holding the state dicts;
- ``models``: model name (a key of ``checkpoint.pt``) -> its architecture and constructor arguments, as the
  task builds it (informative: the task rebuilds its models from ``config``);
- ``classes`` (classifiers) or ``labels`` (segmenters: label name -> value in the written masks);
- ``preprocessing``: the task's plan (image size, spacing, intensity statistics, patch and window sizes);
- ``config``: the trial's config as a mapping (``TrialConfig.to_dict``).

Runs logged before this file existed have ``checkpoint.pt`` and ``config.yaml`` only; :func:`from_legacy`
gives them a manifest with the config alone (the task then derives its plan from the config and, where the
plan came from the data, from the training data named in the config).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bench.config import TrialConfig
from bench.errors import BenchError

MODEL_FILE = "model.json"
WEIGHTS_FILE = "checkpoint.pt"
FORMAT = "bench-model/1"


def bench_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("bench")
    except metadata.PackageNotFoundError:  # a checkout that was never installed
        from bench import __version__

        return __version__


def manifest(config: TrialConfig, info: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``model.json`` content of a trial: ``info`` (the task's ``TrialResult.model``: models, classes or
    labels, preprocessing) with the format, versions and config added."""
    info = dict(info or {})
    return {"format": FORMAT, "bench_version": bench_version(), "task": config.task, "weights": WEIGHTS_FILE,
            "models": info.pop("models", {}), "preprocessing": info.pop("preprocessing", {}), **info,
            "config": config.to_dict()}


def dumps(content: Mapping[str, Any]) -> str:
    return json.dumps(content, indent=1, sort_keys=False, default=_plain)


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"model.json values must be JSON data, but got {type(value).__name__}")


def loads(text: str | bytes, source: str) -> dict[str, Any]:
    """A ``model.json`` read back and checked; one BenchError naming ``source`` when it is not one."""
    try:
        content = json.loads(text)
    except ValueError as exc:
        raise BenchError(f"{source}: must be a JSON model file, but reading failed: {exc}.") from exc
    if not isinstance(content, dict) or content.get("format") != FORMAT or "config" not in content:
        raise BenchError(f"{source}: must be a bench model file of format {FORMAT}, but got "
                         f"format {content.get('format') if isinstance(content, dict) else None!r}. "
                         "Re-run the trial with this version of bench.")
    return content


def from_legacy(config: TrialConfig) -> dict[str, Any]:
    """The manifest of a run logged before ``model.json``: its config, nothing the task recorded."""
    return {"format": FORMAT, "bench_version": "unknown", "task": config.task, "weights": WEIGHTS_FILE,
            "models": {}, "preprocessing": {}, "config": config.to_dict(), "legacy": True}


def config_of(content: Mapping[str, Any], source: str) -> TrialConfig:
    return TrialConfig.from_dict(content["config"]) if isinstance(content["config"], Mapping) else \
        TrialConfig.from_yaml(str(content["config"]), source=source)


@dataclass(frozen=True)
class FoldModel:
    """One trained model set of a trial (the trial itself, or one fold of a cross-validated trial): its
    weights ({model name: state dict}), its manifest and the run it was read from. A task's predictor
    (``TaskSpec.predictor``) receives a list of them and ensembles their outputs."""

    fold: int
    weights: dict[str, Any]
    manifest: dict[str, Any]
    run_id: str = ""

    @property
    def config(self) -> TrialConfig:
        return config_of(self.manifest, f"run {self.run_id} model")

    def load_into(self, name: str, net: Any) -> Any:
        """``net`` (a torch module) with checkpoint model ``name``'s weights, in eval mode; one line naming
        the run when they do not fit."""
        try:
            net.load_state_dict(self.weights[name], strict=True)
        except (KeyError, RuntimeError) as exc:
            raise BenchError(f"run {self.run_id}: checkpoint model '{name}' must match the trial's model.json, "
                             f"but loading failed: {str(exc)[:300]}.") from exc
        return net.eval()

    @property
    def legacy(self) -> bool:
        return bool(self.manifest.get("legacy"))
