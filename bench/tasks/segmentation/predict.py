"""segmentation on new images (``bench predict``, the registered MLflow model): one label map per case, on the
input's own grid, with dataset.json's label values.

Per case (one in memory at a time): read the channels as training read them (``bench.data.seg_dataset``'s
readers), normalise them by the trial's plan (``data._normalise`` with the data set's CT statistics),
resample to the plan's spacing (``data._resample``'s interpolation), then per fold model the guide organ
(its sliding window, logit > 0) and the target guided by it (``seg_engine.training.image_logits``: the trial's
own inference); the folds' sigmoid probabilities are averaged (nnU-Net's ensembling), resampled back to the
input grid, thresholded (target: the trial's logit threshold) and written as ``<case>.nii.gz`` with the input's
affine and header (``.png`` for 2D data sets): background 0, the guide organ's value, the target's value.

Inputs: a data set folder (its ``imagesTs/``, else ``imagesTr/``) or any folder of nnU-Net-named images
``<case>_XXXX<ending>``; a file without the channel suffix is one case (a 4D NIfTI: channels on its last axis).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.atomic import atomic_file
from bench.errors import BenchError, DataError
from bench.guidance import LESION_GUIDANCE
from bench.model_file import FoldModel
from bench.tasks.seg_engine.guided import make_guidance
from bench.tasks.seg_engine.nets import build_seg_net, family_of
from bench.tasks.seg_engine.training import decode, image_logits
from bench.tasks.segmentation.data import _normalise, _resampled_size
from bench.tasks.segmentation.pipeline import SegVolumes, model_info
from bench.tasks.segmentation.spec import task_param

NIFTI = (".nii.gz", ".nii")
IMAGE_2D = (".png", ".bmp")
CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


@dataclass(frozen=True)
class Item:
    id: str
    files: tuple[Path, ...]  # one per channel, or one 4D file holding them all


@dataclass
class Prediction:
    labels: np.ndarray  # the label map on the input grid (axes as read: z, y, x)
    probs: dict[str, np.ndarray]  # "target" / "guide": mean fold probability on the input grid
    reference: Any  # the input's nibabel image (3D) or None (2D)
    voxel_ml: float | None  # one voxel's volume in ml (None: spacing unknown)


def _stem(path: Path) -> str:
    name = path.name
    for ending in (*NIFTI, *IMAGE_2D):
        if name.endswith(ending):
            return name[: -len(ending)]
    return path.stem


class _Fold:
    """One fold's networks and what running them needs."""

    def __init__(self, fold: FoldModel, info: dict):
        config = fold.config
        models = info["models"]
        target = models["target_segmenter"]
        self.guide_strategy = make_guidance(config.guidance, config.guidance_params)
        self.target_net = _built(fold, "target_segmenter", target)
        self.target_window = tuple(int(v) for v in target["window"])
        self.guide_net = self.guide_window = None
        if "guide_segmenter" in models:
            self.guide_net = _built(fold, "guide_segmenter", models["guide_segmenter"])
            self.guide_window = tuple(int(v) for v in models["guide_segmenter"]["window"])
        self.threshold = float(info.get("threshold", 0.0))

    @torch.no_grad()
    def probabilities(self, case: dict) -> dict[str, np.ndarray]:
        """Target (and guide) probabilities on the plan's grid for one preprocessed case."""
        out = {}
        organ = None
        if self.guide_net is not None:
            vols = SegVolumes(LESION_GUIDANCE.create("none"), [case], "guide", None)
            ((logit,),) = image_logits(self.guide_net, vols, self.guide_window)  # one output: the organ
            organ = (logit > 0).cpu().numpy().astype(np.uint8)  # as the guide stage predicts it
            out["guide"] = torch.sigmoid(logit.double()).cpu().numpy()
        vols = SegVolumes(self.guide_strategy, [case], "target", None if organ is None else [organ])
        (logit,) = image_logits(self.target_net, vols, self.target_window)  # (K, D, H, W): one per target
        out["target"] = torch.sigmoid(logit.double()).cpu().numpy()
        return out


def _built(fold: FoldModel, name: str, entry: dict) -> torch.nn.Module:
    args = entry["args"]
    net = build_seg_net(entry["name"], int(args["in_channels"]), args["family"], args.get("encoder", "resnet18"),
                        int(args["width"]), patch=tuple(int(p) for p in args["patch"]),
                        out_channels=int(args.get("out_channels", 1)))
    return fold.load_into(name, net)


def legacy_info(fold: FoldModel) -> dict:
    """model.json's task part for a run logged before it: rebuilt from the config and its training data."""
    from bench.tasks.segmentation.data import prepare

    config = fold.config
    data = prepare(config)
    family = "2d" if data.dims == 2 else family_of(config.seg_arch, task_param(config, "family") or None)
    guide = make_guidance(config.guidance, config.guidance_params)
    return model_info(config, data, family, len(data.channels) + guide.extra_channels)


class Predictor:
    """The fold models of one segmentation trial over new images."""

    def __init__(self, folds: Sequence[FoldModel]):
        if not folds:
            raise BenchError("a segmentation model needs at least one fold model, but got none.")
        infos = [legacy_info(f) if f.legacy else f.manifest for f in folds]
        info = infos[0]
        self.plan = info["preprocessing"]
        self.labels = {str(k): int(v) for k, v in info["labels"].items()}
        self.target, self.guide = info["target"], info.get("guide")
        self.targets = list(info.get("targets") or [self.target])
        self.class_order = tuple(int(v) for v in info.get("class_order") or ())
        self.dims = int(self.plan["dims"])
        self.channels = list(self.plan["channels"])
        ct = [i for i, n in enumerate(self.channels) if n.lower() in self.plan.get("ct_channels", ["ct"])]
        stats = self.plan.get("ct_stats")
        if ct and stats is None:
            raise BenchError("the trial's model.json must hold the data set's CT statistics to normalise CT "
                             "channels, but it has none (its data cache predates them). Retrain the trial.")
        self.ct_stats = {int(row[0]): tuple(float(v) for v in row[1:]) for row in (stats or [])}
        self.spacing = tuple(float(s) for s in self.plan["spacing"])
        self.folds = [_Fold(f, i) for f, i in zip(folds, infos)]
        self.threshold = 1.0 / (1.0 + np.exp(-self.folds[0].threshold))  # the logit threshold as a probability

    # --- inputs ---------------------------------------------------------------------------------------
    def inputs(self, data: Path) -> list[Item]:
        data = Path(data)
        if not data.is_dir():
            raise DataError(f"{data}: --data must be a folder of images, but it is not a folder.")
        if (data / "dataset.json").is_file():
            data = next((data / p for p in ("imagesTs", "imagesTr") if any((data / p).glob("*"))), data)
        endings = NIFTI if self.dims == 3 else IMAGE_2D
        files = sorted(p for p in data.iterdir() if p.is_file() and not p.name.startswith(".")
                       and p.name.endswith(endings))
        cases: dict[str, dict[int, Path]] = {}
        for path in files:
            m = CHANNEL.match(_stem(path))
            case, channel = (m["case"], int(m["channel"])) if m else (_stem(path), -1)
            cases.setdefault(case, {})[channel] = path
        items = []
        for case, found in sorted(cases.items()):
            if -1 in found:
                items.append(Item(case, (found[-1],)))
            else:
                items.append(Item(case, tuple(found[k] for k in sorted(found))))
        return items

    def item(self, path: Path) -> Item:
        """The case one file belongs to (the registered model's rows name files): ``<case>_0000<ending>``
        brings the case's other channel files beside it; any other file is a case of its own."""
        path = Path(path)
        m = CHANNEL.match(_stem(path))
        if not m:
            return Item(_stem(path), (path,))
        ending = path.name[len(_stem(path)):]
        found = sorted(path.parent.glob(f"{glob_escape(m['case'])}_[0-9][0-9][0-9][0-9]{ending}"))
        return Item(m["case"], tuple(found) or (path,))

    def path_of(self, item: Item) -> Path | None:
        return item.files[0] if item.files else None

    # --- one case -------------------------------------------------------------------------------------
    def read(self, item: Item) -> tuple[np.ndarray, tuple[float, ...], Any]:
        """(C, D, H, W) float32 image (a 2D image: depth 1), its (z, y, x) spacing, its nibabel image."""
        from bench.data.seg_dataset import read_image_2d, read_nifti_channels

        if self.dims == 2:
            planes = [read_image_2d(p, "image") for p in item.files]
            if len({p.shape for p in planes}) != 1:
                raise DataError(f"{item.files[0]}: every channel of case {item.id} must have one shape, but got "
                                f"{[p.shape for p in planes]}.")
            return np.stack(planes).astype(np.float32)[:, None], (1.0, 1.0, 1.0), None
        from bench.data.ct_io import load_nifti

        volumes, spacing = [], None
        for path in item.files:
            image, sp = read_nifti_channels(path)  # (C, z, y, x): a 3D file is one channel
            if volumes and image.shape[1:] != volumes[0].shape[1:]:
                raise DataError(f"{path}: every channel must have the shape of channel 0 {volumes[0].shape[1:]}, "
                                f"but got {image.shape[1:]}.")
            volumes.append(image)
            spacing = spacing or sp
        image = np.concatenate(volumes)
        reference, _ = load_nifti(item.files[0])
        return image, tuple(float(v) for v in spacing), reference

    @torch.no_grad()
    def predict(self, item: Item) -> Prediction:
        image, spacing, reference = self.read(item)
        if image.shape[0] != len(self.channels):
            raise DataError(f"{item.files[0]}: case {item.id} must have the trial's {len(self.channels)} channels "
                            f"{self.channels}, but has {image.shape[0]}.")
        shape = image.shape[1:]
        size = _resampled_size(shape, spacing, self.spacing)
        image = _normalise(image, self.ct_stats)
        if tuple(size) != tuple(shape):
            image = _interpolate(image, size, "trilinear")
        empty = np.zeros(image.shape[1:], np.uint8)
        case = {"image": image, "target": empty, "guide": empty}
        probs: dict[str, np.ndarray] = {}
        for fold in self.folds:
            for key, p in fold.probabilities(case).items():
                probs[key] = probs.get(key, 0.0) + p / len(self.folds)
        del case, image
        if tuple(size) != tuple(shape):  # back onto the input grid
            probs = {k: _interpolate(p if p.ndim == 4 else p[None], shape, "trilinear") for k, p in probs.items()}
            probs["guide"] = probs["guide"][0] if "guide" in probs else None
            if probs["guide"] is None:
                del probs["guide"]
        labels = np.zeros(shape, np.uint8 if max(self.labels.values()) < 256 else np.int32)
        if "guide" in probs and self.guide:
            labels[probs["guide"] > 0.5] = self.labels[self.guide]
        decoded = decode(torch.from_numpy(np.ascontiguousarray(probs["target"])), self.threshold, self.class_order)
        if self.class_order:  # regions: decode wrote each region's value
            labels[decoded > 0] = decoded[decoded > 0]
        else:  # output k (value k + 1) is targets[k]
            for k, name in enumerate(self.targets):
                labels[decoded == k + 1] = self.labels[name]
        known = self.dims == 3 and reference is not None
        voxel = float(np.prod(spacing)) / 1000.0 if known else None
        if self.dims == 2:
            labels = labels[0]
        return Prediction(labels, probs, reference, voxel)

    def write(self, item: Item, prediction: Prediction, out: Path) -> dict[str, Any]:
        if self.dims == 2:
            from PIL import Image

            path = out / f"{item.id}.png"
            with atomic_file(path) as tmp:
                Image.fromarray(prediction.labels.astype(np.uint8)).save(tmp, format="PNG")
        else:
            import nibabel as nib

            path = out / f"{item.id}.nii.gz"
            ref = prediction.reference
            header = ref.header.copy()
            header.set_data_dtype(prediction.labels.dtype)
            header.set_slope_inter(1.0, 0.0)
            data = prediction.labels.transpose(2, 1, 0)  # back to the file's axis order
            if len(ref.shape) == 4:
                header.set_data_shape(data.shape)
            image = nib.Nifti1Image(data, ref.affine, header)
            image.set_qform(ref.get_qform(), int(ref.header["qform_code"]))
            image.set_sform(ref.get_sform(), int(ref.header["sform_code"]))
            with atomic_file(path) as tmp:
                nib.save(image, str(tmp))
        return self.row(item.id, prediction, str(path))

    def row(self, case_id: str, prediction: Prediction, mask: str = "") -> dict[str, Any]:
        row: dict[str, Any] = {"id": case_id, "mask": mask}
        for name, value in self.labels.items():
            if value == 0:
                continue
            count = int((prediction.labels == value).sum())
            row[f"{name}_voxels"] = count
            if prediction.voxel_ml is not None:
                row[f"{name}_ml"] = count * prediction.voxel_ml
        return row

    def finish(self, rows: list[dict[str, Any]], out: Path) -> list[Path]:
        """``volumes.csv``: per case the written mask and each label's voxels (and ml when spacing is known)."""
        import csv
        import io

        from bench.config import atomic_write_text

        if not rows:
            return []
        columns = list(dict.fromkeys(k for r in rows for k in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return [atomic_write_text(out / "volumes.csv", buffer.getvalue())]


def _interpolate(array: np.ndarray, size: Sequence[int], mode: str) -> np.ndarray:
    """(C, D, H, W) resampled to ``size`` as the preprocessing resamples images (``data._resample``)."""
    from torch.nn.functional import interpolate

    tensor = torch.from_numpy(np.ascontiguousarray(array))[None]
    return interpolate(tensor, size=tuple(int(s) for s in size), mode=mode, align_corners=False)[0].numpy()
