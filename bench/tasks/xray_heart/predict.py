"""xray-heart on new radiographs (``bench predict``, the registered MLflow model): heart mask and class
probabilities per image, by the trial's own preprocessing and models (``pipeline.build_models``,
``radiograph.preprocess_radiograph``, ``pipeline`` batch prediction), averaged over its fold models.

Inputs: a folder in one of the task's formats (its readers list the images; lung masks there give the CTR),
or any folder of images (``.png .jpg .jpeg .bmp .tif .tiff``, DICOM ``.dcm``), each one case named by its
path below the folder. Outputs: ``masks/<id>.png`` (the predicted heart at the image's own size, 0/255) per
image and ``predictions.csv`` (id, a probability per class, the predicted class, CTR when the lungs are known).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bench import runtime
from bench.config import atomic_write_text
from bench.data.atomic import atomic_file
from bench.data.case import Case, CaseRef
from bench.data.radiograph import _outer_width, preprocess_radiograph
from bench.errors import BenchError, DataError
from bench.model_file import FoldModel
from bench.tasks.xray_heart.data import config_classes
from bench.tasks.xray_heart.pipeline import build_models
from bench.tasks.xray_heart.spec import SPEC
from bench.train import predict_batch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")
TABLE = "predictions.csv"
MASKS = "masks"


@dataclass(frozen=True)
class Item:
    """One image to predict: its id (path below the folder, without suffix) and how to read it."""

    id: str
    path: Path | None = None  # a plain image file
    ref: CaseRef | None = None  # a case of a folder in one of the task's formats
    root: Path | None = None  # that folder

    def load(self) -> Case:
        if self.ref is not None:
            return self.ref.load()
        return Case(id=self.id, patient_id=self.id, image=read_image(self.path), spacing=None)


@dataclass
class Prediction:
    probs: np.ndarray  # (classes,) mean of the fold models' softmax
    heart: np.ndarray  # (H, W) uint8 0/1 at the image's own size
    heart_prob: np.ndarray  # (S, S) mean of the fold models' heart probability on the model's grid
    ctr: float  # cardiothoracic ratio (NaN without lung masks)


def read_image(path: Path) -> np.ndarray:
    """A radiograph as float32 in [0, 1], read as the task's readers read them (PNG: /255 or /65535; DICOM:
    modality and VOI LUT)."""
    if path.suffix.lower() in (".dcm", ".dicom"):
        from bench.data.formats.dicom import _dcmread, to_unit_range

        return to_unit_range(_dcmread(path), path)
    from PIL import Image

    try:
        with Image.open(path) as im:
            pixels = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: must be a readable image, but reading failed: {exc}.") from exc
    if pixels.ndim == 3:  # an RGB(A) export of a grey image: the channels are equal
        pixels = pixels[..., 0]
    if pixels.ndim != 2 or min(pixels.shape) < 2:
        raise DataError(f"{path}: a radiograph must be a 2D grey image, but got shape {pixels.shape}.")
    return pixels.astype(np.float32) / (255.0 if pixels.dtype == np.uint8 else 65535.0)


class Predictor:
    """The fold models of one xray-heart trial over new images."""

    def __init__(self, folds: Sequence[FoldModel]):
        if not folds:
            raise BenchError("an xray-heart model needs at least one fold model, but got none.")
        config = folds[0].config
        self.classes = tuple(folds[0].manifest.get("classes") or config.classes or config_classes(config))
        self.size = int(SPEC.param(config, "image_size"))
        self.models = []
        for f in folds:
            seg, cls, guidance = build_models(f.config, len(self.classes))
            for name, model in (("segmenter", seg), ("classifier", cls)):
                try:
                    model.load_state_dict(f.weights[name], strict=True)
                except (KeyError, RuntimeError) as exc:
                    raise BenchError(f"run {f.run_id}: checkpoint model '{name}' must match the trial's config, "
                                     f"but loading failed: {str(exc)[:300]}.") from exc
                runtime.prepare_model(model).eval()
            self.models.append((seg, cls, guidance))

    # --- inputs ---------------------------------------------------------------------------------------
    def inputs(self, data: Path) -> list[Item]:
        """The images of ``data``: a folder the task's readers recognise (labels.csv ...) case by case, else
        every image file below it."""
        data = Path(data)
        if not data.is_dir():
            raise DataError(f"{data}: --data must be a folder of images, but it is not a folder.")
        try:
            fmt = SPEC.resolve_format(None, str(data))
        except BenchError:
            fmt = None
        if fmt is not None:
            from bench.data.stream import scan_cases

            return [Item(ref.id, ref=ref, root=data) for ref in scan_cases(str(data), fmt)]
        files = sorted(p for p in data.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                       and not p.name.startswith("."))
        return [Item(p.relative_to(data).with_suffix("").as_posix(), path=p) for p in files]

    def item(self, path: Path) -> Item:
        """One image file as an input (the registered model's rows name files)."""
        return Item(Path(path).stem, path=Path(path))

    def path_of(self, item: Item) -> Path | None:
        """The file of an input (None: a case of a reader without one file)."""
        if item.path is not None or item.root is None:
            return item.path
        from glob import escape

        found = sorted(p for p in item.root.rglob(f"{escape(item.id)}.*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and "masks" not in p.relative_to(item.root).parts)
        return found[0] if found else None

    # --- one image ------------------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, item: Item) -> Prediction:
        case = item.load()
        shape = np.asarray(case.image).shape
        if "heart" not in case.masks:  # preprocessing wants one; predicting never reads it
            case.masks = {**case.masks, "heart": np.zeros(shape, np.uint8)}
        row = preprocess_radiograph(case, self.size)
        del case
        image = torch.from_numpy(row["image"])[None]
        probs, hearts = [], []
        for seg, cls, guidance in self.models:
            logits = predict_batch(seg, image)
            mask = (logits > 0).to(torch.float32)  # each fold's classifier is guided by its own mask
            hearts.append(torch.sigmoid(logits.double())[0, 0].cpu().numpy())
            dev = logits.device
            x = guidance.inputs(image.to(dev), mask.to(dev))
            probs.append(torch.softmax(predict_batch(cls, x), dim=1)[0].double().cpu().numpy())
        heart_prob = np.mean(hearts, axis=0)
        small = torch.from_numpy((heart_prob > 0.5).astype(np.float32))[None, None]
        heart = (F.interpolate(small, size=shape, mode="nearest")[0, 0] > 0.5).numpy().astype(np.uint8)
        width = float(row["thorax_width"])
        heart_width = _outer_width(heart_prob > 0.5)
        ctr = heart_width / width if np.isfinite(width) and width > 0 else float("nan")
        return Prediction(np.mean(probs, axis=0), heart, heart_prob, ctr)

    def write(self, item: Item, prediction: Prediction, out: Path) -> dict[str, Any]:
        """``masks/<id>.png`` (written to a temporary name, then renamed); returns the case's table row."""
        from PIL import Image

        path = out / MASKS / f"{item.id}.png"
        with atomic_file(path) as tmp:
            Image.fromarray(prediction.heart * 255).save(tmp, format="PNG")
        return self.row(item.id, prediction, mask=str(path))

    def row(self, case_id: str, prediction: Prediction, mask: str = "") -> dict[str, Any]:
        row: dict[str, Any] = {"id": case_id}
        row.update({f"prob_{c}": float(p) for c, p in zip(self.classes, prediction.probs)})
        row["predicted"] = self.classes[int(np.argmax(prediction.probs))]
        row["ctr"] = prediction.ctr
        row["heart_mask"] = mask
        return row

    def finish(self, rows: list[dict[str, Any]], out: Path) -> list[Path]:
        """``predictions.csv``: one row per predicted image, in input order."""
        columns = ["id", *[f"prob_{c}" for c in self.classes], "predicted", "ctr", "heart_mask"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if isinstance(v, float) and not np.isfinite(v) else v) for k, v in row.items()})
        return [atomic_write_text(out / TABLE, buffer.getvalue())]

