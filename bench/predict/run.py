"""``bench predict``: a trial's model over a folder of new images, one case in memory at a time.

The task's predictor (``TaskSpec.predictor``, built from the trial's fold models) offers:

- ``inputs(data) -> items``: the cases of the folder, nothing decoded (each with an ``id``);
- ``predict(item) -> prediction``: read one case and predict it with the ensemble of the fold models (fold
  probabilities averaged); a bad or unreadable image raises ``DataError`` naming its file;
- ``write(item, prediction, out) -> row``: the case's outputs written under ``out`` (each to a temporary name,
  then renamed) and its row of the summary (id, probabilities or the written mask and volumes);
- ``finish(rows, out) -> paths``: the summary files (xray-heart: ``predictions.csv``).

A bad case is one line and is skipped; the others are predicted; the command then exits 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.errors import BenchError, DataError
from bench.predict.model import TrialModel, from_store
from bench.tasks import TASKS


@dataclass
class PredictSummary:
    model: TrialModel
    rows: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # one line per case that could not be predicted
    written: list[Path] = field(default_factory=list)  # summary files
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def predictor_for(model: TrialModel):
    """The task's predictor over ``model``'s fold models."""
    spec = TASKS.get(model.task)
    if spec.predictor is None:
        raise BenchError(f"bench predict needs the task to provide a predictor, but task '{model.task}' has none.")
    return spec.predictor(model.folds)


def predict(task: str, data: str | Path, out: str | Path, run_id: str | None = None, study: str | None = None,
            folds: list[int] | None = None, on_line: Callable[[str], None] | None = None,
            model: TrialModel | None = None) -> PredictSummary:
    """Predict every case of ``data`` with a trial's model and write the task's outputs under ``out``.

    Args:
        task: registered task name.
        data: a folder of images in the task's layout (or any folder of its image files).
        out: output folder (created); each file appears whole or not at all.
        run_id: the trial (default: the best COMPLETE trial of ``study``, else of the latest search).
        study: pick the best trial of this study.
        folds: of a cross-validated trial, predict with these folds' models only (default: all).
        on_line: called with one line per case (and per bad case).
        model: an already loaded model (skips the store).

    Returns:
        The rows and the problems; ``ok`` is False when a case could not be predicted.
    """
    say = on_line or (lambda text: None)
    started = time.perf_counter()
    model = model or from_store(task, run_id, study, folds)
    say(f"model: {model.describe()}")
    predictor = predictor_for(model)
    items = predictor.inputs(Path(data))
    if not items:
        raise DataError(f"{data}: --data must hold images the {task} task reads, but none were found.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = PredictSummary(model)
    for n, item in enumerate(items, start=1):
        try:
            prediction = predictor.predict(item)
            row = predictor.write(item, prediction, out)
        except DataError as exc:
            summary.problems.append(str(exc))
            say(f"[{n}/{len(items)}] {item.id}: skipped: {exc}")
            continue
        summary.rows.append(row)
        say(f"[{n}/{len(items)}] {item.id}: {_brief(row)}")
    summary.written = predictor.finish(summary.rows, out)
    summary.seconds = time.perf_counter() - started
    return summary


def _brief(row: dict[str, Any]) -> str:
    shown = [f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
             if k != "id" and not k.endswith("_mask") and k != "mask"]
    return ", ".join(shown[:6])


def progress_printer(stream=None) -> Callable[[str], None]:
    """Outside a terminal one line per case; in a terminal the case lines overwrite one another (a bar
    that names the case) and every other line stays."""
    stream = stream or sys.stderr
    tty = stream.isatty()
    pending = [False]  # a case line is showing without its newline

    def say(text: str) -> None:
        if tty and text.startswith("[") and ": skipped:" not in text:
            stream.write("\r\033[K" + text[:150])
            pending[0] = True
        else:
            stream.write(("\n" if pending[0] else "") + text + "\n")
            pending[0] = False
        stream.flush()

    return say
