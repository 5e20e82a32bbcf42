"""Segmentation folders of the kinds people hold, written by hand (nibabel, PIL) in nnU-Net v2's raw layout,
not through bench's writers: one foreground label (MSD Spleen/Heart), exophytic tumours on their organ's
surface (KiTS), two adjacent labels of like size (Hippocampus), 2D PNG. Small enough for a smoke search.

Arrays are (z, y, x); files hold them in NIfTI's (x, y, z) voxel order (``tests.seg_files.nifti``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from tests.seg_files import nifti

SHAPE = (16, 32, 32)
SPACING = (2.0, 0.9, 0.9)


def _ball(shape, centre, radii) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0


def _image(label: np.ndarray, rng, means: dict[int, float]) -> np.ndarray:
    """CT-like intensities: each label its own mean, noise everywhere."""
    image = rng.normal(-100.0, 20.0, label.shape)
    for value, mean in means.items():
        image[label == value] = rng.normal(mean, 20.0, int((label == value).sum()))
    return image.astype(np.float32)


def _dataset_json(root: Path, labels: dict, n: int, channels=("CT",), ending=".nii.gz") -> None:
    meta = {"channel_names": {str(i): c for i, c in enumerate(channels)}, "labels": labels, "numTraining": n,
            "file_ending": ending, "name": root.name}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))


def write_case(root: Path, part: str, case: str, image: np.ndarray, label: np.ndarray | None) -> None:
    images = image if image.ndim == 4 else image[None]
    for c, channel in enumerate(images):
        nifti(root / f"images{part}" / f"{case}_{c:04d}.nii.gz", channel, SPACING)
    if label is not None:
        nifti(root / f"labels{part}" / f"{case}.nii.gz", label.astype(np.uint8), SPACING)


def one_label(root: Path, n: int = 8, test_images: int = 0, test_labelled: int = 0, seed: int = 0) -> Path:
    """MSD Task09_Spleen as nnU-Net v2 holds it: one CT channel, labels {background, spleen}; ``test_images``
    imagesTs cases, the first ``test_labelled`` of them with labelsTs."""
    rng = np.random.default_rng(seed)
    for k in range(n + test_images):
        centre = (8 + rng.integers(-2, 3), 16 + rng.integers(-4, 5), 16 + rng.integers(-4, 5))
        label = _ball(SHAPE, centre, (4, 8 + rng.integers(0, 3), 6)).astype(np.uint8)
        part = "Tr" if k < n else "Ts"
        keep = part == "Tr" or k - n < test_labelled
        write_case(root, part, f"spleen_{k:03d}", _image(label, rng, {1: 120.0}), label if keep else None)
    _dataset_json(root, {"background": 0, "spleen": 1}, n)
    return root


def exophytic(root: Path, n: int = 8, seed: int = 0, inside: float = 0.5) -> Path:
    """KiTS-like: a kidney (1) and a tumour (2) sitting on its surface, ``inside`` of its radius inside the
    kidney (0.5: centred on the surface), the rest bulging into the background."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        kidney = _ball(SHAPE, (8, 16, 14), (6, 10, 7))
        r = 4
        tumour = _ball(SHAPE, (8, 16 + rng.integers(-2, 3), 14 + 7 + r * (1 - 2 * inside)), (r, r, r))
        label = kidney.astype(np.uint8)
        label[tumour] = 2
        write_case(root, "Tr", f"case_{k:05d}", _image(label, rng, {1: 150.0, 2: 60.0}), label)
    _dataset_json(root, {"background": 0, "kidney": 1, "tumor": 2}, n)
    return root


def adjacent(root: Path, n: int = 8, seed: int = 0) -> Path:
    """Hippocampus-like: one elongated structure, its front half labelled 1 (anterior), its back half 2
    (posterior); neither encloses the other. Two MR channels."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        body = _ball(SHAPE, (8, 16 + rng.integers(-2, 3), 16), (4, 12, 5))
        label = np.zeros(SHAPE, np.uint8)
        y = np.arange(SHAPE[1])[None, :, None]
        label[body & (y < 16)] = 1
        label[body & (y >= 16)] = 2
        t1 = _image(label, rng, {1: 80.0, 2: 140.0})
        t2 = _image(label, rng, {1: 150.0, 2: 40.0})
        write_case(root, "Tr", f"hippocampus_{k:03d}", np.stack([t1, t2]), label)
    _dataset_json(root, {"background": 0, "Anterior": 1, "Posterior": 2}, n, channels=("T1", "T2"))
    return root


def png_one_label(root: Path, n: int = 8, shape=(64, 64), seed: int = 0) -> Path:
    """nnU-Net's 2D layout: one grayscale PNG per case and channel, a label PNG of 0/1."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        label = _ball(shape, (32 + rng.integers(-8, 9), 32 + rng.integers(-8, 9)), (10, 14)).astype(np.uint8)
        image = np.clip(rng.normal(60, 15, shape) + 120 * label, 0, 255).astype(np.uint8)
        for folder, array, name in (("imagesTr", image, f"cell_{k:03d}_0000.png"), ("labelsTr", label,
                                                                                   f"cell_{k:03d}.png")):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(root / folder / name)
    _dataset_json(root, {"background": 0, "cell": 1}, n, channels=("microscopy",), ending=".png")
    return root


BRATS_LABELS = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3], "enhancing tumor": 3}


def regions(root: Path, n: int = 8, seed: int = 0) -> Path:
    """BraTS as nnU-Net v2 documents it (Dataset137_BraTS2021): four MRI channels, label values 1 edema,
    2 non-enhancing core, 3 enhancing, and region-based ``labels`` with ``regions_class_order``."""
    rng = np.random.default_rng(seed)
    for k in range(n):
        centre = (8, 16 + rng.integers(-3, 4), 16 + rng.integers(-3, 4))
        label = np.zeros(SHAPE, np.uint8)
        label[_ball(SHAPE, centre, (5, 9, 9))] = 1
        label[_ball(SHAPE, centre, (3, 6, 6))] = 3
        label[_ball(SHAPE, centre, (2, 3, 3))] = 2
        means = ({1: 160.0, 2: 90.0, 3: 120.0}, {1: 90.0, 2: 70.0, 3: 80.0}, {1: 100.0, 2: 60.0, 3: 200.0},
                 {1: 180.0, 2: 150.0, 3: 130.0})
        write_case(root, "Tr", f"BraTS2021_{k:05d}", np.stack([_image(label, rng, m) for m in means]), label)
    meta = {"channel_names": {"0": "FLAIR", "1": "T1", "2": "T1CE", "3": "T2"}, "labels": BRATS_LABELS,
            "regions_class_order": [1, 2, 3], "numTraining": n, "file_ending": ".nii.gz"}
    (root / "dataset.json").write_text(json.dumps(meta, indent=1))
    return root
