"""A trial's model as ``bench predict`` and the registered MLflow model use it: its fold models (weights and
``model.json``), read from the run store or from a folder the MLflow model carries.

A cross-validated trial (tag ``folds``) has no weights of its own: its fold runs (tag ``bench.fold_of``) hold
them, and the trial's model is the ensemble of those fold models.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench import model_file
from bench.config import TrialConfig
from bench.errors import BenchError
from bench.model_file import FoldModel
from bench.tracking import FOLDS_TAG, Tracker, latest_search_run

BUNDLE_FILE = "bundle.json"  # in a saved model folder: which fold files it holds


@dataclass
class TrialModel:
    """The fold models of one trial (one for a single-split trial), in fold order."""

    task: str
    run_id: str
    folds: list[FoldModel]
    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def config(self) -> TrialConfig:
        return self.folds[0].config

    def describe(self) -> str:
        which = ", ".join(str(f.fold) for f in self.folds)
        return (f"run {self.run_id[:8]} ({self.config.seg_arch}, {len(self.folds)} fold model"
                f"{'s' if len(self.folds) != 1 else ''}: fold {which})")

    # --- a folder (the MLflow model's artifacts) ------------------------------------------------------
    def save(self, folder: Path) -> Path:
        """Write every fold's ``checkpoint.pt`` and ``model.json`` under ``folder/fold<k>/`` and
        ``bundle.json`` naming them; returns ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for f in self.folds:
            sub = folder / f"fold{f.fold}"
            sub.mkdir(exist_ok=True)
            torch.save(f.weights, sub / model_file.WEIGHTS_FILE)
            (sub / model_file.MODEL_FILE).write_text(model_file.dumps(f.manifest))
            names.append(sub.name)
        (folder / BUNDLE_FILE).write_text(json.dumps({"task": self.task, "run_id": self.run_id, "folds": names,
                                                      "metrics": self.metrics, "tags": self.tags}, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> TrialModel:
        """A model folder written by :meth:`save` (weights loaded with ``weights_only=True``)."""
        folder = Path(folder)
        try:
            bundle = json.loads((folder / BUNDLE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise BenchError(f"{folder}: a bench model folder must hold {BUNDLE_FILE}, but reading it failed: "
                             f"{exc}.") from exc
        folds = []
        for name in bundle["folds"]:
            sub = folder / name
            manifest = model_file.loads((sub / model_file.MODEL_FILE).read_text(), str(sub / model_file.MODEL_FILE))
            weights = _weights((sub / model_file.WEIGHTS_FILE).read_bytes(), str(sub / model_file.WEIGHTS_FILE))
            folds.append(FoldModel(int(name.removeprefix("fold")), weights, manifest, bundle["run_id"]))
        return cls(bundle["task"], bundle["run_id"], folds, bundle.get("metrics", {}), bundle.get("tags", {}))


def _weights(data: bytes, source: str) -> dict[str, dict[str, torch.Tensor]]:
    """``checkpoint.pt`` as {model name: state dict}; ``weights_only`` refuses pickled code."""
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError ... for a bad file
        raise BenchError(f"{source}: must be a torch checkpoint of state dicts, but loading failed: "
                         f"{str(exc)[:200]}.") from exc
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise BenchError(f"{source}: must map model names to state dicts, but got {type(loaded).__name__}. "
                         "Re-run the trial with this version of bench.")
    return loaded


def best_trial(task: str, study: str | None = None) -> str:
    """The best COMPLETE trial of ``study`` (default: the latest search's study in this store)."""
    from bench.leaderboard import leaderboard
    from bench.tracking import client, task_experiment

    if study is None:
        reader = client()
        experiment = task_experiment(task, reader)
        latest = latest_search_run(reader, experiment.experiment_id) if experiment else None
        study = latest.data.tags.get("study") if latest else None
    table = leaderboard(task, study=study)
    complete = table[table["state"] == "COMPLETE"]
    if complete.empty:
        scope = f" of study '{study}'" if study else ""
        raise BenchError(f"predict needs a COMPLETE trial{scope} of task {task}, but found none. Run "
                         f"`bench search --task {task}` first, or pass --run-id.")
    return str(complete.iloc[0]["run_id"])


def from_store(task: str, run_id: str | None = None, study: str | None = None,
               folds: list[int] | None = None) -> TrialModel:
    """The trial ``run_id`` (default :func:`best_trial`) as a :class:`TrialModel`; a cross-validated trial
    brings its fold runs' models (``folds``: only those folds).

    Raises:
        BenchError: an unknown run, one of another task, one without weights (pruned or failed), a fold the
            trial does not have.
    """
    tracker = Tracker(task)
    run_id = run_id or best_trial(task, study)
    run = tracker.run(run_id)
    if run.data.tags.get("bench.kind") == "fold":
        raise BenchError(f"--run-id must name a trial, but run {run_id} is one fold of trial "
                         f"{run.data.tags.get('bench.fold_of')}. Pass that trial (and --folds to pick folds).")
    count = int(run.data.tags.get(FOLDS_TAG, 1))
    members = tracker.fold_runs(run_id) if count > 1 else [run]
    by_fold = {int(r.data.tags.get("fold", 0)) if count > 1 else _config_fold(tracker, r): r for r in members}
    if folds:
        unknown = sorted(set(folds) - set(by_fold))
        if unknown:
            raise BenchError(f"--folds must be among the trial's folds {sorted(by_fold)}, but got {unknown}.")
        by_fold = {k: v for k, v in by_fold.items() if k in folds}
    models = [_fold_model(tracker, task, k, r) for k, r in sorted(by_fold.items())]
    return TrialModel(task, run_id, models, dict(run.data.metrics),
                      {k: v for k, v in run.data.tags.items() if k in ("split_hash", "config_hash", "study")})


def _config_fold(tracker: Tracker, run) -> int:
    return int(run.data.params.get("fold", 0))


def _fold_model(tracker: Tracker, task: str, fold: int, run) -> FoldModel:
    run_id = run.info.run_id
    names = tracker.artifact_names(run_id)
    if model_file.WEIGHTS_FILE not in names:
        state = run.data.tags.get("bench.state", run.info.status)
        raise BenchError(f"run {run_id} must have logged {model_file.WEIGHTS_FILE} (only COMPLETE trials do), but "
                         f"it has none (state {state}). Pick a COMPLETE trial.")
    if model_file.MODEL_FILE in names:
        manifest = model_file.loads(tracker.read_artifact(run_id, model_file.MODEL_FILE),
                                    f"run {run_id} {model_file.MODEL_FILE}")
    else:  # logged before model.json: the config alone
        manifest = model_file.from_legacy(tracker.load_config(run_id))
    if manifest["task"] != task:
        raise BenchError(f"--run-id must name a {task} trial, but run {run_id} is a {manifest['task']} trial. "
                         f"Pass --task {manifest['task']}.")
    weights = _weights(tracker.read_artifact(run_id, model_file.WEIGHTS_FILE), f"run {run_id} checkpoint.pt")
    return FoldModel(fold, weights, manifest, run_id)


def manifest_summary(model: TrialModel) -> dict[str, Any]:
    """What the registered model's description and tags say of it."""
    first = model.folds[0].manifest
    return {"task": model.task, "folds": [f.fold for f in model.folds], "bench_version": first.get("bench_version"),
            "classes": first.get("classes"), "labels": first.get("labels")}
