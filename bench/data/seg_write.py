"""Write segmentation cases as an nnU-Net v2 raw folder or an MSD task folder (read back by seg_dataset).

A case here is a ``bench.data.case.Case`` with ``image`` (C, *spatial) (a single-channel image may come
without the channel axis) and ``masks["label"]`` the integer label map (*spatial); ``spacing`` (z, y, x) mm
for volumes. Cases are written as they come, one at a time, so a generator never has to fit in memory;
the folder appears only when every file is written (``atomic_folder``: temp folder, then rename).

PNG (nnU-Net's 2D layout) holds non-negative integers: image values are rounded to uint8, or uint16 when
they exceed 255; images with negative values are refused rather than clipped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from bench.data.atomic import atomic_folder
from bench.data.case import Case
from bench.errors import DataError

LABEL_KEY = "label"  # Case.masks[LABEL_KEY]: the integer label map
NIFTI_ENDINGS = (".nii.gz", ".nii")
PNG = ".png"
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def write_nnunet(cases: Iterable[Case], out: str | Path, channels: Sequence[str], labels: Mapping[str, int],
                 file_ending: str = ".nii.gz", name: str = "", description: str = "",
                 splits: Sequence[Mapping[str, Sequence[str]]] | None = None) -> Path:
    """Write ``cases`` as nnU-Net v2's raw layout: imagesTr/<id>_<XXXX><ending>, labelsTr/<id><ending>,
    dataset.json (channel_names, labels name -> value, numTraining, file_ending). ``file_ending`` ".png"
    writes the 2D layout (one grayscale PNG per channel, the label PNG holding the label values).
    ``splits`` (nnU-Net's ``[{"train": [...], "val": [...]}, ...]``) is written beside dataset.json as
    splits_final.json, so the folder carries its folds (``bench.data.seg_splits``).

    Returns:
        ``out``.

    Raises:
        DataError: a case's channels, dimensions, label key or id do not fit; nothing is left behind.
    """
    if file_ending not in NIFTI_ENDINGS + (PNG,):
        raise DataError(f"file_ending must be one of {list(NIFTI_ENDINGS + (PNG,))}, but got {file_ending!r}.")
    dims = 2 if file_ending == PNG else 3
    labels = _check_labels(labels)
    out = Path(out)
    with atomic_folder(out) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        count = 0
        for case in cases:
            image, label = _arrays(case, out, len(channels), dims, labels)
            for k in range(len(channels)):
                path = tmp / "imagesTr" / f"{case.id}_{k:04d}{file_ending}"
                _write_png(path, image[k], case.id, out) if dims == 2 else _write_volume(path, image[k],
                                                                                         case.spacing)
            path = tmp / "labelsTr" / f"{case.id}{file_ending}"
            _write_png(path, label, case.id, out) if dims == 2 else _write_volume(path, label, case.spacing)
            count += 1
        meta = {
            "name": name or out.name, "description": description,
            "channel_names": {str(k): str(c) for k, c in enumerate(channels)},
            "labels": dict(labels), "numTraining": count, "file_ending": file_ending,
            "reference": "", "licence": "", "release": "",
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=4) + "\n")
        if splits is not None:
            from bench.data.seg_splits import write_splits_final

            write_splits_final(splits, tmp / "splits_final.json")
    return out


def merge_masks(case: Case, labels: Mapping[str, int]) -> Case:
    """``case`` with its binary masks named in ``labels`` merged into one label map (``masks["label"]``),
    a channel axis on its image and the meta the writers read; later labels overwrite earlier ones, so list
    an enclosing structure before what it encloses (``{"background": 0, "lung": 1, "lesion": 2}``)."""
    label = np.zeros(np.shape(case.image), np.uint8 if max(labels.values()) < 256 else np.int32)
    for name, value in labels.items():
        if value == 0:
            continue
        if name not in case.masks:
            raise DataError(f"case {case.id} must have a '{name}' mask to merge into a label map, but it has "
                            f"{sorted(case.masks)}.")
        label[np.asarray(case.masks[name]) > 0] = value
    image = np.asarray(case.image)
    return Case(id=case.id, patient_id=case.patient_id, image=image[None], site=case.site, spacing=case.spacing,
                masks={LABEL_KEY: label}, labels=dict(case.labels),
                meta={**case.meta, "label_values": dict(labels)})


def write_msd(cases: Iterable[Case], out: str | Path, channels: Sequence[str], labels: Mapping[str, int],
              name: str = "", description: str = "") -> Path:
    """Write ``cases`` as a Medical Segmentation Decathlon task folder: imagesTr/<id>.nii.gz (4D with the
    channels on the last axis when there are several), labelsTr/<id>.nii.gz, dataset.json (modality,
    labels value -> name, numTraining, training list). Volumes only (the Decathlon has no 2D layout).

    Returns:
        ``out``.
    """
    labels = _check_labels(labels)
    out = Path(out)
    with atomic_folder(out) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        (tmp / "imagesTs").mkdir()
        training = []
        for case in cases:
            image, label = _arrays(case, out, len(channels), 3, labels)
            file = f"{case.id}.nii.gz"
            if len(channels) == 1:
                _write_volume(tmp / "imagesTr" / file, image[0], case.spacing)
            else:
                write_nifti_channels(tmp / "imagesTr" / file, image, case.spacing)
            _write_volume(tmp / "labelsTr" / file, label, case.spacing)
            training.append({"image": f"./imagesTr/{file}", "label": f"./labelsTr/{file}"})
        meta = {
            "name": name or out.name, "description": description, "reference": "", "licence": "",
            "release": "", "tensorImageSize": "4D" if len(channels) > 1 else "3D",
            "modality": {str(k): str(c) for k, c in enumerate(channels)},
            "labels": {str(v): k for k, v in labels.items()},
            "numTraining": len(training), "numTest": 0, "training": training, "test": [],
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=4) + "\n")
    return out


def write_nifti_channels(path: Path, image: np.ndarray, spacing) -> None:
    """A (C, z, y, x) array as one 4D NIfTI (x, y, z, C), the Decathlon's multi-modal form."""
    import nibabel as nib

    affine = np.diag([float(spacing[2]), float(spacing[1]), float(spacing[0]), 1.0])
    img = nib.Nifti1Image(np.ascontiguousarray(np.asarray(image).transpose(3, 2, 1, 0)), affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))


def _check_labels(labels: Mapping[str, int]) -> dict[str, int]:
    values = [int(v) for v in labels.values()]
    if 0 not in values or len(set(values)) != len(values):
        raise DataError(f"labels must map names to distinct values including background 0, but got "
                        f"{dict(labels)}.")
    return {str(k): int(v) for k, v in sorted(labels.items(), key=lambda kv: kv[1])}


def _arrays(case: Case, out: Path, n_channels: int, dims: int, labels: dict[str, int]):
    if not SAFE_ID.match(str(case.id)):
        raise DataError(f"{out}: a case id must be a plain file name (letters, digits, _ . + -), but got "
                        f"'{case.id}'.")
    if LABEL_KEY not in case.masks:
        raise DataError(f"{out}: every case written needs its label map in masks['{LABEL_KEY}'], but case "
                        f"{case.id} has only {sorted(case.masks)}.")
    image = np.asarray(case.image)
    if image.ndim == dims:
        image = image[None]
    label = np.asarray(case.masks[LABEL_KEY])
    if image.ndim != dims + 1 or image.shape[0] != n_channels:
        raise DataError(f"{out}: case {case.id} must have {n_channels} channel(s) of {dims}D (shape "
                        f"(C, {', '.join('zyx'[-dims:])})), but its image has shape {image.shape}.")
    if label.shape != image.shape[1:]:
        raise DataError(f"{out}: case {case.id}'s label map must have its image's shape {image.shape[1:]}, but "
                        f"got {label.shape}.")
    stray = sorted(set(np.unique(label).astype(int).tolist()) - set(labels.values()))
    if stray:
        raise DataError(f"{out}: case {case.id}'s label values must be among the labels {labels}, but got {stray}.")
    if dims == 3 and (case.spacing is None or len(case.spacing) != 3):
        raise DataError(f"{out}: a volume needs its (z, y, x) spacing in mm to be written, but case {case.id} "
                        f"has {case.spacing!r}.")
    return image, label


def _write_volume(path: Path, volume: np.ndarray, spacing) -> None:
    from bench.data.ct_io import write_nifti

    volume = np.asarray(volume)
    if not np.issubdtype(volume.dtype, np.integer):
        volume = volume.astype(np.float32)
    write_nifti(path, volume, spacing)


def _write_png(path: Path, plane: np.ndarray, case_id: str, out: Path) -> None:
    from PIL import Image

    values = np.round(np.asarray(plane, np.float64))
    if values.min() < 0:
        raise DataError(f"{out}: PNG holds non-negative integers, but case {case_id} has values down to "
                        f"{float(values.min())}. Shift or rescale the image first.")
    dtype = np.uint8 if values.max() <= 255 else np.uint16
    if values.max() > 65535:
        raise DataError(f"{out}: PNG holds values up to 65535, but case {case_id} reaches {float(values.max())}.")
    Image.fromarray(values.astype(dtype)).save(path)
