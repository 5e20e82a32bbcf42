"""``bench register``: a trial's model as an MLflow pyfunc model, registered as a new version of a name.

The model's artifacts are the trial's fold weights and ``model.json`` files (:meth:`TrialModel.save`); its
code is the small script ``Tracker.log_pyfunc_model`` writes, which builds :class:`bench.predict.pyfunc
.PyfuncModel` when loaded. The model is logged on the trial's own run (artifact ``model/``), and the version
carries the trial's objective and headline metrics, split and config hashes, folds and, from a replay, its
verdict as tags.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.errors import BenchError
from bench.predict.model import TrialModel, from_store
from bench.predict.pyfunc import LOADER, PyfuncModel
from bench.tasks import TASKS
from bench.tracking import Tracker


@dataclass(frozen=True)
class Registration:
    name: str
    version: str
    run_id: str
    source: str

    def __str__(self) -> str:
        return f"{self.name} version {self.version}"


def register(task: str, name: str, run_id: str | None = None, study: str | None = None,
             folds: list[int] | None = None, example: str | Path | None = None,
             extra_tags: dict[str, str] | None = None, model: TrialModel | None = None) -> Registration:
    """Log the trial's model as an MLflow pyfunc model on its run and register it as a version of ``name``.

    Args:
        task: registered task name.
        name: registered model name (made when missing).
        run_id: the trial (default: the best COMPLETE trial of ``study`` or of the latest search).
        study: pick the best trial of this study.
        folds: of a cross-validated trial, these folds' models only.
        example: an image for the input example and the output signature (default: the first image of the
            trial's data folder, when it names one).
        extra_tags: more version tags (a replay's verdict).
        model: an already loaded model.

    Raises:
        BenchError: an empty name, or what loading the model raises.
    """
    if not name or not name.strip():
        raise BenchError(f"--name must name a model, but got '{name}'. Pass e.g. --name {task}-best.")
    model = model or from_store(task, run_id, study, folds)
    tracker = Tracker(task)
    import pandas as pd

    with tempfile.TemporaryDirectory(prefix="bench-register-") as tmp:
        folder = model.save(Path(tmp) / "bench_model")
        loaded = PyfuncModel(folder)
        example = example or _first_image(loaded, model)
        signature_input = pd.DataFrame({"image": ["image.png"]})
        input_example = output_example = None
        if example is not None:
            input_example = pd.DataFrame({"image": [str(Path(example).resolve())]})
            output_example = loaded.predict(input_example, {"out": str(Path(tmp) / "example")})
        source = tracker.log_pyfunc_model(model.run_id, folder, LOADER, signature_input, input_example,
                                          output_example)
    version = tracker.register_model(name, model.run_id, source, {**version_tags(model), **(extra_tags or {})},
                                     description=f"bench {task} model of run {model.run_id} "
                                                 f"({model.describe()}); predict with "
                                                 f"`bench predict --task {task} --run-id {model.run_id}`.")
    return Registration(name, version, model.run_id, source)


def version_tags(model: TrialModel) -> dict[str, str]:
    """The trial's objective and headline metrics, hashes and folds, as model version tags."""
    spec = TASKS.get(model.task)
    tags = {k: v for k, v in model.tags.items() if k in ("split_hash", "config_hash", "study")}
    for key in (spec.objective, *spec.headline):
        value = model.metrics.get(key)
        if value is not None and math.isfinite(value):
            tags[f"metric.{key}"] = f"{value:.6g}"
    tags["folds"] = ",".join(str(f.fold) for f in model.folds)
    tags["trial_run_id"] = model.run_id
    return tags


def _first_image(loaded: PyfuncModel, model: TrialModel) -> Path | None:
    """The first image the predictor finds in the trial's data folder (None: built-in data, or gone)."""
    data = Path(model.config.data)
    if not data.is_dir():
        return None
    try:
        items = loaded.predictor.inputs(data)
    except BenchError:
        return None
    return next((p for p in (loaded.predictor.path_of(i) for i in items[:1]) if p is not None), None)
