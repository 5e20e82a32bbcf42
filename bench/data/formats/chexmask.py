"""CheXmask heart/lung masks (RLE in a CSV) joined to the images of their source set: ChestX-ray14 or CheXpert.

Layout (one folder)::

    <any>.csv                  the CheXmask table for the source, OriginalResolution (e.g. ChestX-Ray8.csv,
                               CheXpert.csv; gunzip the released .csv.gz first): an image id column
                               ("Image Index" for ChestX-ray14, "Path" for CheXpert, or "Image ID"/"dicom_id"),
                               "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung",
                               "Right Lung", "Heart", "Height", "Width"
    and either the ChestX-ray14 layout  Data_Entry_2017_v2020.csv (or Data_Entry_2017.csv), images/ (flat, as
                                        the NIH box extracts) or images_0NN/images/, train_val_list.txt, test_list.txt
    or the CheXpert layout              train.csv, valid.csv, train/patientNNNNN/...jpg
                               (labels, patient ids and the official split come from these; see their readers)

RLE: space-separated "start length" pairs, starts 1-indexed, over the Height x Width image flattened
row-major (the CheXmask repository's get_mask_from_RLE). Masks are decoded at that resolution and
resized (nearest) to the image on disk, so the downsampled CheXpert-small works; a different aspect
ratio is refused. Rows whose "Dice RCA (Mean)" is below ``min_dice`` (0.7, the quality threshold the
CheXmask authors suggest) are dropped, and so are images without a mask row. Table rows for images
that the image set does not have (not downloaded, lateral, uncertain label left out) are skipped; a
table that matches none of the images is refused. The table is read row by row and each row's RLE is
decoded only when its case is loaded, so a multi-GB table never sits in memory.

Reference: Gaggion et al. 2024, "CheXmask: a large-scale dataset of anatomical segmentation masks for
multi-center chest x-ray images", Scientific Data 11:511.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from bench.data.case import Case, CaseRef
from bench.data.formats import FORMATS
from bench.data.formats._common import load_all, resize_mask
from bench.data.formats.chestxray14 import ENTRY_FILES, ChestXray14, entry_table
from bench.data.formats.chexpert import Chexpert, chexpert_key
from bench.errors import DataError

ID_COLUMNS = ("Image Index", "Path", "Image ID", "dicom_id")
MASK_COLUMNS = {"Heart": "heart", "Left Lung": "lung_left", "Right Lung": "lung_right"}
QUALITY_COLUMN = "Dice RCA (Mean)"


def decode_rle(rle: str, height: int, width: int) -> np.ndarray:
    """CheXmask RLE ("start length ...", 1-indexed, row-major) -> uint8 mask of shape (height, width)."""
    runs = np.asarray(rle.split(), dtype=np.int64)
    if len(runs) % 2:
        raise ValueError(f"RLE must hold start/length pairs, but got {len(runs)} numbers")
    flat = np.zeros(height * width, np.uint8)
    for start, length in zip(runs[0::2] - 1, runs[1::2]):
        if start < 0 or start + length > flat.size:
            raise ValueError(f"run {start + 1}+{length} falls outside a {height}x{width} image")
        flat[start : start + length] = 1
    return flat.reshape(height, width)


def encode_rle(mask: np.ndarray) -> str:
    """Inverse of decode_rle (used to write test files in the exact CheXmask encoding)."""
    pixels = np.concatenate([[0], (np.asarray(mask).reshape(-1) > 0).astype(np.int8), [0]])
    runs = np.flatnonzero(pixels[1:] != pixels[:-1]) + 1
    runs[1::2] -= runs[::2]
    return " ".join(map(str, runs))


@FORMATS.register("chexmask")
class Chexmask:
    """CheXmask RLE heart/lung masks (quality-filtered) on ChestX-ray14 or CheXpert images and labels."""

    LOOKS_LIKE = "chexmask: a CheXmask CSV beside the ChestX-ray14 or CheXpert table"

    def __init__(self, min_dice: float = 0.7, uncertain: str = "ignore", missing: str = "error"):
        self.min_dice, self.uncertain, self.missing = float(min_dice), uncertain, missing

    @staticmethod
    def recognise(root: Path) -> bool:
        has_images = entry_table(root) is not None or (root / "train.csv").is_file() or (root / "valid.csv").is_file()
        try:
            return has_images and _find_table(root) is not None
        except DataError:
            return False

    def scan(self, path: str | Path, classes: Sequence[str] | None = None) -> list[CaseRef]:
        root = Path(path)
        table = _find_table(root)
        base = self._image_set(root).scan(root, classes)
        by_key = {ref.id: ref for ref in base}
        refs, joined, matched = [], set(), 0
        with table.open("rb") as fh:
            header = next(csv.reader([fh.readline().decode("utf-8-sig")]))
            col = {name: i for i, name in enumerate(header)}
            id_col = next(c for c in ID_COLUMNS if c in col)
            lacking = [c for c in (*MASK_COLUMNS, "Height", "Width") if c not in col]
            if lacking:
                raise DataError(f"{table}: a CheXmask table must have columns {[*MASK_COLUMNS, 'Height', 'Width']}, "
                                f"but lacks {lacking}.")
            for line, (offset, row) in enumerate(_rows(fh, len(header), table), start=2):
                where = f"{table}:{line}"
                try:
                    quality = float(row[col[QUALITY_COLUMN]])
                    size = (int(float(row[col["Height"]])), int(float(row[col["Width"]])))
                except (KeyError, ValueError) as exc:
                    raise DataError(f"{where}: a CheXmask row must hold a quality score, Height and Width, but "
                                    f"got {exc}.") from exc
                key = chexpert_key(row[col[id_col]])
                matched += key in by_key
                if quality < self.min_dice or key not in by_key:
                    continue
                if key in joined:
                    raise DataError(f"{where}: each image must have one CheXmask row, but '{key}' repeats.")
                joined.add(key)
                ref = by_key[key]
                load = partial(_load, ref.load, table, offset, line, {c: col[c] for c in MASK_COLUMNS}, size)
                refs.append(CaseRef(ref.id, ref.patient_id, load, ref.site, ref.labels, ref.meta))
        if base and not matched:
            raise DataError(f"{table}: the CheXmask table must name images of this data set, but none of its "
                            f"ids matches one. Use the CheXmask table that belongs to this data set.")
        return refs

    def read(self, path: str | Path, classes: Sequence[str] | None = None) -> list[Case]:
        return load_all(self.scan(path, classes))

    def _image_set(self, root: Path):
        if entry_table(root) is not None:
            return ChestXray14(missing=self.missing)
        if (root / "train.csv").is_file() or (root / "valid.csv").is_file():
            return Chexpert(uncertain=self.uncertain, missing=self.missing)
        raise DataError(f"{root}: a chexmask folder must also hold its images' table ({' or '.join(ENTRY_FILES)} for "
                        "ChestX-ray14, or train.csv/valid.csv for CheXpert), but has neither.")


def _rows(fh, n_columns: int, table: Path):
    """(byte offset, fields) per data row; a row must sit on one line so it can be found again by offset."""
    while True:
        offset = fh.tell()
        raw = fh.readline()
        if not raw:
            return
        if not raw.strip():
            continue
        fields = next(csv.reader([raw.decode("utf-8")]))
        if len(fields) != n_columns:
            raise DataError(f"{table}: every CheXmask row must hold {n_columns} fields on one line, but the row at "
                            f"byte {offset} has {len(fields)}. Use the table as released (unzipped, not edited).")
        yield offset, fields


def _load(load_image, table: Path, offset: int, line: int, mask_cols: dict[str, int],
          size: tuple[int, int]) -> Case:
    case = load_image()
    with table.open("rb") as fh:
        fh.seek(offset)
        row = next(csv.reader([fh.readline().decode("utf-8")]))
    where = f"{table}:{line}"
    try:
        masks = {MASK_COLUMNS[c]: decode_rle(row[i], *size) for c, i in mask_cols.items()}
    except (IndexError, ValueError) as exc:
        raise DataError(f"{where}: a CheXmask row must hold valid RLE masks, but got {exc}.") from exc
    case.masks = {name: resize_mask(m, case.image.shape, where) for name, m in masks.items()}
    return case


def _find_table(root: Path) -> Path:
    for table in sorted(root.glob("*.csv")):
        with table.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        if QUALITY_COLUMN in header and any(c in header for c in ID_COLUMNS):
            return table
    zipped = sorted(root.glob("*.csv.gz"))
    hint = f" Unzip {zipped[0].name} first (gunzip -k)." if zipped else ""
    raise DataError(f"{root}: a chexmask folder must contain the CheXmask CSV (with '{QUALITY_COLUMN}' and an "
                    f"image id column {list(ID_COLUMNS)}), but no CSV there has them.{hint}")
