"""Plain folder of NIfTI volumes + label maps + an optional labels.csv (like the png format, in 3D).

Layout::

    images/<case_id>.nii.gz            CT volumes in HU
    masks/<mask_name>/<case_id>.nii.gz  label maps on the same grid (e.g. masks/lung, masks/lesion)
    labels.csv                          optional: case_id, patient_id, site, class

Without labels.csv each volume is its own patient and its class is "nodule" if it has lesion voxels.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bench.data.case import Case
from bench.data.ct_io import check_label_matches, read_nifti, write_nifti
from bench.data.formats import FORMATS
from bench.data.formats._common import atomic_folder
from bench.errors import DataError

SUFFIXES = (".nii.gz", ".nii")


def _stem(p: Path) -> str:
    for s in SUFFIXES:
        if p.name.endswith(s):
            return p.name[: -len(s)]
    return p.stem


@FORMATS.register("nifti")
class NiftiFolder:
    """images/*.nii.gz + masks/<name>/*.nii.gz + optional labels.csv (case_id, patient_id, site, class)."""

    LOOKS_LIKE = "nifti: images/*.nii.gz with masks/<name>/"

    @staticmethod
    def recognise(root: Path) -> bool:
        return any(p.name.endswith(SUFFIXES) for p in (root / "images").glob("*.nii*")) and not (
            root / "dataset.json").is_file()

    def read(self, path: str | Path, classes: Sequence[str] = ()) -> list[Case]:
        return list(self.iter_cases(path, classes))

    def iter_cases(self, path: str | Path, classes: Sequence[str] = ()) -> Iterator[Case]:
        """The cases one at a time (one volume and its masks in memory)."""
        root = Path(path)
        if not (root / "images").is_dir() and (root / "dataset.json").is_file():
            from bench.data.formats.msd import Msd  # `make-phantom --format nifti` writes the MSD layout

            yield from Msd().iter_cases(root, classes)
            return
        images = sorted(p for p in (root / "images").glob("*.nii*") if not p.name.startswith("._"))
        if not images:
            raise DataError(f"{root / 'images'}: a nifti folder must hold images/*.nii.gz, but none were found.")
        rows = {}
        table = root / "labels.csv"
        if table.is_file():
            with table.open(newline="") as fh:
                rows = {r["case_id"]: r for r in csv.DictReader(fh)}
        mask_dirs = sorted(d for d in (root / "masks").glob("*") if d.is_dir()) if (root / "masks").is_dir() else []
        for image_path in images:
            yield _case(image_path, mask_dirs, rows, table, classes)

    def write(self, cases: Sequence[Case], out: str | Path) -> Path:
        with atomic_folder(out) as tmp:
            (tmp / "images").mkdir()
            for case in cases:
                write_nifti(tmp / "images" / f"{case.id}.nii.gz", case.image.astype(np.int16), case.spacing)
                for name, mask in case.masks.items():
                    (tmp / "masks" / name).mkdir(parents=True, exist_ok=True)
                    write_nifti(tmp / "masks" / name / f"{case.id}.nii.gz", mask.astype(np.uint8), case.spacing)
            with (tmp / "labels.csv").open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["case_id", "patient_id", "site", "class"])
                for c in cases:
                    writer.writerow([c.id, c.patient_id, c.site, c.labels.get("class", "")])
        return Path(out)


def _case(image_path: Path, mask_dirs: list[Path], rows: dict, table: Path, classes: Sequence[str]) -> Case:
    case_id = _stem(image_path)
    image, spacing = read_nifti(image_path)
    masks = {}
    for d in mask_dirs:
        found = [d / f"{case_id}{s}" for s in SUFFIXES if (d / f"{case_id}{s}").is_file()]
        if not found:
            raise DataError(f"{d / (case_id + '.nii.gz')}: every image needs its '{d.name}' mask, but it is "
                            f"missing (image {image_path.name}).")
        mask, mspacing = read_nifti(found[0])
        check_label_matches(image_path, found[0], image.shape, spacing, mask.shape, mspacing)
        masks[d.name] = mask.astype(np.uint8)
    row = rows.get(case_id, {})
    label = row.get("class") or ("nodule" if masks.get("lesion") is not None and masks["lesion"].any()
                                 else "normal")
    if classes and label not in classes:
        raise DataError(f"{table}: class must be one of {list(classes)}, but got '{label}' for {case_id}.")
    return Case(id=case_id, patient_id=row.get("patient_id") or case_id, site=row.get("site", ""),
                image=np.round(image).astype(np.int16), spacing=spacing, masks=masks,
                labels={"class": label},
                meta={"modality": "CT", "units": "HU", "axes": "zyx", "slices": int(image.shape[0]),
                      "problems": []})
