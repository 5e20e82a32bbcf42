"""Tiny segmentation data sets written by hand (nibabel, PIL) in nnU-Net v2's and the Decathlon's layouts,
independent of bench's own writers, with the arrays they hold so tests compare what the reader returns.

Arrays are kept in bench's (z, y, x) order; files hold them in NIfTI's (x, y, z) voxel order, as real data does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

SHAPE = (4, 6, 8)  # (z, y, x): every axis a different length, so a swapped axis is caught
SPACING = (2.5, 0.8, 0.7)  # (z, y, x) mm
LABELS = {"background": 0, "kidney": 1, "tumour": 2}


@dataclass
class SegWritten:
    root: Path
    images: dict[str, np.ndarray] = field(default_factory=dict)  # case -> (C, *spatial)
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # case -> (*spatial)


def nifti(path: Path, zyx: np.ndarray, spacing=SPACING) -> None:
    """(z, y, x) array -> NIfTI (x, y, z); a 4D (C, z, y, x) array -> (x, y, z, C) as the Decathlon stores it."""
    array = np.asarray(zyx)
    data = array.transpose(2, 1, 0) if array.ndim == 3 else array.transpose(3, 2, 1, 0)
    img = nib.Nifti1Image(np.ascontiguousarray(data), np.diag([spacing[2], spacing[1], spacing[0], 1.0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def case_arrays(k: int, channels: int, shape=SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """Distinct per case and channel: a tumour (2) inside a kidney (1), moved by ``k``."""
    rng = np.random.default_rng(k)
    image = rng.normal(100.0 * np.arange(1, channels + 1)[(...,) + (None,) * len(shape)],
                       5.0, (channels, *shape)).astype(np.float32)
    label = np.zeros(shape, np.uint8)
    inner = tuple(slice(1, n - 1) for n in shape)
    label[inner] = 1
    core = tuple(slice(n // 2 - 1, n // 2) if i else slice(1 + k % 2, 2 + k % 2) for i, n in enumerate(shape))
    label[core] = 2
    return image, label


def write_nnunet_folder(root: Path, n: int = 3, channels: int = 2, labels=LABELS, mac_files: bool = True,
                        test: int = 0, unlabelled_test: int = 0) -> SegWritten:
    out = SegWritten(root)
    names = [f"kid_{k:03d}" for k in range(n + test + unlabelled_test)]
    for k, case in enumerate(names):
        image, label = case_arrays(k, channels)
        part = "Tr" if k < n else "Ts"
        for c in range(channels):
            nifti(root / f"images{part}" / f"{case}_{c:04d}.nii.gz", image[c])
        if k < n + test:
            nifti(root / f"labels{part}" / f"{case}.nii.gz", label)
            out.images[case], out.labels[case] = image, label
    if mac_files:  # what a copy from a macOS volume leaves beside every file
        (root / "imagesTr" / f"._{names[0]}_0000.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
        (root / "labelsTr" / f"._{names[0]}.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
    meta = {"channel_names": {str(c): ["CT", "PET", "MR"][c] for c in range(channels)}, "labels": labels,
            "numTraining": n, "file_ending": ".nii.gz", "name": root.name}
    (root / "dataset.json").write_text(json.dumps(meta))
    return out


def write_msd_folder(root: Path, n: int = 3, channels: int = 2, mac_files: bool = True) -> SegWritten:
    out = SegWritten(root)
    training = []
    for k in range(n):
        case = f"prostate_{k:02d}"
        image, label = case_arrays(k, channels)
        nifti(root / "imagesTr" / f"{case}.nii.gz", image if channels > 1 else image[0])
        nifti(root / "labelsTr" / f"{case}.nii.gz", label)
        out.images[case], out.labels[case] = image, label
        training.append({"image": f"./imagesTr/{case}.nii.gz", "label": f"./labelsTr/{case}.nii.gz"})
        if mac_files:
            (root / "imagesTr" / f"._{case}.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
            (root / "labelsTr" / f"._{case}.nii.gz").write_bytes(b"\x00\x05\x16\x07junk")
    if mac_files:  # Task05_Prostate's own list names none, but copies made on macOS sometimes do
        training.append({"image": "./imagesTr/._prostate_00.nii.gz", "label": "./labelsTr/._prostate_00.nii.gz"})
    meta = {"name": "Prostate", "tensorImageSize": "4D" if channels > 1 else "3D",
            "modality": {str(c): ["T2", "ADC", "DWI"][c] for c in range(channels)},
            "labels": {"0": "background", "1": "kidney", "2": "tumour"},
            "numTraining": len(training), "numTest": 0, "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta))
    return out


def write_png_folder(root: Path, n: int = 3, channels: int = 2, shape=(10, 12)) -> SegWritten:
    out = SegWritten(root)
    for k in range(n):
        case = f"road_{k:02d}"
        image, label = case_arrays(k, channels, shape)
        image = np.clip(np.round(image), 0, 255).astype(np.uint8)
        for c in range(channels):
            path = root / "imagesTr" / f"{case}_{c:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[c]).save(path)
        (root / "labelsTr").mkdir(exist_ok=True)
        Image.fromarray(label).save(root / "labelsTr" / f"{case}.png")
        out.images[case], out.labels[case] = image.astype(np.float32), label
    meta = {"channel_names": {str(c): f"c{c}" for c in range(channels)}, "labels": LABELS, "numTraining": n,
            "file_ending": ".png"}
    (root / "dataset.json").write_text(json.dumps(meta))
    return out
