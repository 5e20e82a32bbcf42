"""ct-lung on new CT volumes (``bench predict``, the registered MLflow model): lung and lesion masks per case,
as NIfTI on the input's own grid.

Per case (one in memory at a time): HU → lung window → [0, 1] → the trial's spacing (``data.preprocess_volume``,
the trial's own preprocessing), then per fold model the lungs (the fixed lung network's sliding window,
logit > 0) and the lesions guided by them (``training.image_logits``, the trial's inference); the folds'
sigmoid probabilities are averaged, resampled back to the input grid and thresholded (lesions: the trial's
logit threshold). Outputs ``<case>_lung.nii.gz`` and ``<case>_lesion.nii.gz`` (0/1, the input's affine and
header) and ``volumes.csv``. Inputs: NIfTI volumes (``.nii.gz``/``.nii``) in the folder (an MSD task folder:
its ``imagesTs/``, else ``imagesTr/``). Everything the plan needs is in the config (spacing, windows), so
runs logged before model.json predict alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.data.atomic import atomic_file
from bench.data.case import Case
from bench.errors import BenchError, DataError
from bench.guidance import LESION_GUIDANCE
from bench.model_file import FoldModel
from bench.tasks.ct_lung.data import preprocess_volume
from bench.tasks.ct_lung.spec import task_param
from bench.tasks.seg_engine.guided import make_guidance
from bench.tasks.seg_engine.nets import build_seg_net, family_of
from bench.tasks.seg_engine.training import make_volumes

NIFTI = (".nii.gz", ".nii")
MASKS = ("lung", "lesion")


@dataclass(frozen=True)
class Item:
    id: str
    path: Path


@dataclass
class Prediction:
    masks: dict[str, np.ndarray]  # "lung" / "lesion": 0/1 on the input grid (z, y, x)
    probs: dict[str, np.ndarray]  # mean fold probability on the input grid
    reference: Any  # the input's nibabel image
    voxel_ml: float


class _Fold:
    def __init__(self, fold: FoldModel):
        config = fold.config
        width = int(task_param(config, "width"))
        family = family_of(config.seg_arch, task_param(config, "family") or None)
        patch3d = tuple(int(p) for p in task_param(config, "patch"))
        p2d = int(task_param(config, "patch_2d"))
        self.roi3d = tuple(int(p) for p in task_param(config, "infer_roi"))
        self.roi = self.roi3d if family == "3d" else (1, p2d, p2d)
        self.guide = make_guidance(config.guidance, config.guidance_params)
        self.spacing = tuple(float(s) for s in task_param(config, "spacing"))
        self.threshold = float(task_param(config, "threshold"))
        self.lung_net = fold.load_into("lung_segmenter", build_seg_net("monai_unet", 1, "3d", width=width,
                                                                      patch=patch3d))
        self.lesion_net = fold.load_into("lesion_segmenter",
                                  build_seg_net(config.seg_arch, 1 + self.guide.extra_channels, family,
                                                config.seg_encoder, width,
                                                patch=patch3d if family == "3d" else (1, p2d, p2d)))

    @torch.no_grad()
    def probabilities(self, case: dict) -> dict[str, np.ndarray]:
        from bench.tasks.seg_engine.training import image_logits

        ((lung_logit,),) = image_logits(self.lung_net, make_volumes([case], "lung", LESION_GUIDANCE.create("none"),
                                                                 None), self.roi3d)
        lung = (lung_logit > 0).cpu().numpy().astype(np.uint8)  # as the lung stage predicts it
        ((lesion_logit,),) = image_logits(self.lesion_net, make_volumes([case], "lesion", self.guide, [lung]), self.roi)
        return {"lung": torch.sigmoid(lung_logit.double()).cpu().numpy(),
                "lesion": torch.sigmoid(lesion_logit.double()).cpu().numpy()}


class Predictor:
    """The fold models of one ct-lung trial over new CT volumes."""

    def __init__(self, folds: Sequence[FoldModel]):
        if not folds:
            raise BenchError("a ct-lung model needs at least one fold model, but got none.")
        self.folds = [_Fold(f) for f in folds]
        first = self.folds[0]
        self.spacing, self.lesion_cut = first.spacing, 1.0 / (1.0 + np.exp(-first.threshold))

    def inputs(self, data: Path) -> list[Item]:
        data = Path(data)
        if not data.is_dir():
            raise DataError(f"{data}: --data must be a folder of NIfTI volumes, but it is not a folder.")
        # a folder of volumes, or a layout ct-lung reads: MSD (imagesTs, else imagesTr) or nifti (images/)
        data = next((data / p for p in ("imagesTs", "imagesTr", "images")
                     if (data / p).is_dir() and any((data / p).glob("*.nii*"))), data)
        files = sorted(p for p in data.iterdir() if p.is_file() and p.name.endswith(NIFTI)
                       and not p.name.startswith("."))
        return [self.item(p) for p in files]

    def item(self, path: Path) -> Item:
        path = Path(path)
        name = path.name
        return Item(next((name[: -len(e)] for e in NIFTI if name.endswith(e)), path.stem), path)

    def path_of(self, item: Item) -> Path:
        return item.path

    @torch.no_grad()
    def predict(self, item: Item) -> Prediction:
        from bench.data.ct_io import load_nifti, read_nifti

        hu, spacing = read_nifti(item.path)
        reference, _ = load_nifti(item.path)
        shape = hu.shape
        volume = preprocess_volume(Case(id=item.id, patient_id=item.id, image=hu, spacing=spacing), self.spacing)
        del hu
        empty = np.zeros(volume["image"].shape[1:], np.uint8)
        case = {"image": volume["image"][0].numpy(), "lung": empty, "lesion": empty}
        probs: dict[str, np.ndarray] = {}
        for fold in self.folds:
            for key, p in fold.probabilities(case).items():
                probs[key] = probs.get(key, 0.0) + p / len(self.folds)
        del case, volume
        if tuple(probs["lung"].shape) != tuple(shape):  # back onto the input grid
            from torch.nn.functional import interpolate

            probs = {k: interpolate(torch.from_numpy(p)[None, None], size=tuple(shape), mode="trilinear",
                                    align_corners=False)[0, 0].numpy() for k, p in probs.items()}
        masks = {"lung": (probs["lung"] > 0.5).astype(np.uint8),
                 "lesion": (probs["lesion"] > self.lesion_cut).astype(np.uint8)}
        return Prediction(masks, probs, reference, float(np.prod(spacing)) / 1000.0)

    def write(self, item: Item, prediction: Prediction, out: Path) -> dict[str, Any]:
        import nibabel as nib

        ref = prediction.reference
        row: dict[str, Any] = {"id": item.id}
        for name in MASKS:
            header = ref.header.copy()
            header.set_data_dtype(np.uint8)
            header.set_slope_inter(1.0, 0.0)
            image = nib.Nifti1Image(prediction.masks[name].transpose(2, 1, 0), ref.affine, header)
            image.set_qform(ref.get_qform(), int(ref.header["qform_code"]))
            image.set_sform(ref.get_sform(), int(ref.header["sform_code"]))
            path = out / f"{item.id}_{name}.nii.gz"
            with atomic_file(path) as tmp:
                nib.save(image, str(tmp))
            count = int(prediction.masks[name].sum())
            row.update({f"{name}_mask": str(path), f"{name}_voxels": count, f"{name}_ml": count * prediction.voxel_ml})
        return row

    def finish(self, rows: list[dict[str, Any]], out: Path) -> list[Path]:
        """``volumes.csv``: per case the written masks and each mask's voxels and ml."""
        import csv
        import io

        from bench.config import atomic_write_text

        if not rows:
            return []
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return [atomic_write_text(out / "volumes.csv", buffer.getvalue())]
