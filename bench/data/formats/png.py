"""Folder of PNG images + masks + labels.csv (the layout `bench datasets make-phantom --format png` writes).

Layout::

    images/<case_id>.png          16-bit grey, intensities in [0, 1] scaled to 0..65535 (8-bit: 0..255)
    masks/<mask_name>/<case_id>.png   8-bit, 0 or 255
    labels.csv                    case_id, patient_id, site, class, image, split_part, mask_<name>...,
                                  other labels (split_part: optional official part, e.g. test_shifted)

Pixel spacing is unknown (``Case.spacing`` None): PNGs carry none. The classes are whatever the ``class`` column holds (bench.data.labels orders them), unless the caller
gives a class list; then every label outside it is refused in one error naming labels.csv.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data.case import Case, CaseRef
from bench.data.formats import FORMATS
from bench.data.formats._common import (
    CsvRow,
    atomic_folder,
    check_labels,
    load_all,
    save_masks,
    write_labels_csv,
)
from bench.errors import DataError

REQUIRED_COLUMNS = ("case_id", "class", "image")


@FORMATS.register("png")
class PngFolder:
    """PNG images (+ optional masks) with a labels.csv; patient_id column optional (else one per image)."""

    LOOKS_LIKE = "png: images/*.png with labels.csv"

    @staticmethod
    def recognise(root: Path) -> bool:
        return (root / "labels.csv").is_file() and any((root / "images").glob("*.png"))

    def scan(self, path: str | Path, classes: Sequence[str] | None = None) -> list[CaseRef]:
        """One ref per labels.csv row (no PNG decoded); labels checked against ``classes`` if given."""
        root = Path(path)
        table = root / "labels.csv"
        if not table.is_file():
            raise DataError(f"{table}: a png data folder must contain labels.csv, but it is missing.")
        with table.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows:
            raise DataError(f"{table}: labels.csv must list at least one image, but it is empty.")
        missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
        if missing:
            raise DataError(f"{table}: labels.csv must have columns {list(REQUIRED_COLUMNS)}, but lacks {missing}.")
        check_labels(table, ((line, row["class"]) for line, row in enumerate(rows, start=2)), classes)
        refs, seen = [], set()
        for line, row in enumerate(rows, start=2):
            if row["case_id"] in seen:
                raise DataError(f"{table}:{line}: case ids must be unique, but '{row['case_id']}' repeats.")
            seen.add(row["case_id"])
            meta = {"split_part": row["split_part"]} if row.get("split_part") else {}
            refs.append(CaseRef(row["case_id"], row.get("patient_id") or row["case_id"],
                                partial(_case, root, row), row.get("site", ""), {"class": row["class"]}, meta))
        return refs

    def read(self, path: str | Path, classes: Sequence[str] | None = None) -> list[Case]:
        return load_all(self.scan(path, classes))

    def write(self, cases: Iterable[Case], out: str | Path) -> Path:
        """Each case's image and masks as it comes (one case in memory), then labels.csv, whose columns are
        the masks and labels of all the cases."""
        out = Path(out)
        rows: list[CsvRow] = []
        with atomic_folder(out) as tmp:
            (tmp / "images").mkdir()
            for c in cases:
                image_rel = f"images/{c.id}.png"
                Image.fromarray(np.round(np.clip(c.image, 0, 1) * 65535).astype(np.uint16)).save(tmp / image_rel)
                save_masks(c, tmp)
                rows.append(CsvRow.of(c, [c.id, c.patient_id, c.site, c.labels["class"], image_rel,
                                          c.meta.get("split_part", "")]))
            write_labels_csv(tmp / "labels.csv", ["case_id", "patient_id", "site", "class", "image", "split_part"],
                             rows)
        return out


def _case(root: Path, row: dict[str, str]) -> Case:
    pixels = _read_png(root / row["image"])
    if pixels.ndim == 3:  # an RGB(A) export of a grey image: the channels are equal
        pixels = pixels[..., 0]
    # 16-bit is what the writer stores; an 8-bit hospital export is scaled by its own range
    image = pixels.astype(np.float32) / (255.0 if pixels.dtype == np.uint8 else 65535.0)
    masks = {}
    for column, value in row.items():
        if column.startswith("mask_") and value:
            mask = _read_png(root / value) > 127
            if mask.shape != image.shape:
                raise DataError(
                    f"{root / value}: a mask must match its image's shape {image.shape}, but got {mask.shape}."
                )
            masks[column[len("mask_") :]] = mask.astype(np.uint8)
    extra = {k: _number(v) for k, v in row.items()
             if k not in {"case_id", "patient_id", "site", "image", "split_part"} and not k.startswith("mask_")}
    return Case(
        id=row["case_id"],
        patient_id=row.get("patient_id") or row["case_id"],
        site=row.get("site", ""),
        image=image,
        spacing=None,  # a PNG folder says nothing about mm per pixel
        masks=masks,
        labels=extra,
        meta={"split_part": row["split_part"]} if row.get("split_part") else {},
    )


def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: must be a readable PNG image, but reading failed: {exc}.") from exc


def _number(value: str):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
