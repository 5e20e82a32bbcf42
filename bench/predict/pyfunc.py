"""What a registered bench model runs when MLflow loads it (``mlflow.pyfunc.load_model``, ``mlflow models
serve``): the trial's fold models from the model's artifact folder and the task's predictor, over a DataFrame
with a column ``image`` of file paths, one output row per image.

Rows: xray-heart ``id``, a ``prob_<class>`` per class, ``predicted``, ``ctr``, ``heart_mask``; segmentation and
ct-lung ``id``, ``mask`` (the written mask's path) and per label ``<label>_voxels`` / ``<label>_ml``. Masks go
to ``params["out"]`` (or the model config's ``out``), else to a new temporary folder. An image that cannot be
predicted gives a row with its ``error`` and no values.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.errors import BenchError, DataError
from bench.predict.model import TrialModel
from bench.predict.run import predictor_for

LOADER = "bench.predict.pyfunc:PyfuncModel"  # what the logged model's code builds when it loads


class PyfuncModel:
    """A saved :class:`TrialModel` folder and its task's predictor, for MLflow."""

    def __init__(self, model_dir: str | Path, config: dict[str, Any] | None = None):
        self.model = TrialModel.load(model_dir)
        self.predictor = predictor_for(self.model)
        self.out = (config or {}).get("out")

    def predict(self, frame, params: dict[str, Any] | None = None):
        import pandas as pd

        if not isinstance(frame, pd.DataFrame) or "image" not in frame.columns:
            raise BenchError(f"a bench model predicts a DataFrame with a column 'image' of file paths, but got "
                             f"{type(frame).__name__}{' with columns ' + str(list(frame.columns)) if hasattr(frame, 'columns') else ''}.")
        out = Path((params or {}).get("out") or self.out or tempfile.mkdtemp(prefix="bench-predict-"))
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for value in frame["image"]:
            path = Path(str(value))
            try:
                item = self.predictor.item(path)
                row = {**self.predictor.write(item, self.predictor.predict(item), out), "error": ""}
            except (DataError, OSError) as exc:
                row = {"id": path.name, "error": str(exc)}
            rows.append(row)
        return pd.DataFrame(rows)
