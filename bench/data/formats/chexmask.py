"""CheXmask heart/lung masks (RLE in a CSV) joined to the images of their source data set (ChestX-ray14).

Layout::

    <any>.csv                  the CheXmask table for the source (e.g. ChestX-Ray8.csv, OriginalResolution):
                               an image id column ("Image Index", "Image ID" or "dicom_id"),
                               "Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung",
                               "Right Lung", "Heart", "Height", "Width"
    Data_Entry_2017.csv, images*/..., train_val_list.txt, test_list.txt   the ChestX-ray14 layout
                               (labels, patient ids and official split come from there)

RLE: space-separated "start length" pairs, starts 1-indexed, over the Height x Width image flattened
row-major (the CheXmask repository's get_mask_from_RLE). Rows whose "Dice RCA (Mean)" is below
``min_dice`` (0.7, the quality threshold the CheXmask authors suggest) are dropped, and so are images
without a mask row. Labels follow the chestxray14 reader (cardiomegaly / no_cardiomegaly).

Reference: Gaggion et al. 2024, "CheXmask: a large-scale dataset of anatomical segmentation masks for
multi-center chest x-ray images", Scientific Data 11:511.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.data.case import Case
from bench.data.formats import FORMATS
from bench.data.formats.chestxray14 import ENTRY_FILE, index_images, make_case, official_parts, read_entries
from bench.errors import DataError

ID_COLUMNS = ("Image Index", "Image ID", "dicom_id")
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


@FORMATS.register("chexmask", tasks=())
class Chexmask:
    """CheXmask RLE heart/lung masks (quality-filtered) on ChestX-ray14 images and labels."""

    def __init__(self, min_dice: float = 0.7):
        self.min_dice = min_dice

    def read(self, path: str | Path, classes: Sequence[str]) -> list[Case]:
        root = Path(path)
        table = _find_table(root)
        entries, parts, files = read_entries(root, classes), official_parts(root), index_images(root)
        with table.open(newline="") as fh:
            reader = csv.DictReader(fh)
            id_col = next((c for c in ID_COLUMNS if c in (reader.fieldnames or [])), None)
            cases = []
            for line, row in enumerate(reader, start=2):
                where = f"{table}:{line}"
                try:
                    if float(row[QUALITY_COLUMN]) < self.min_dice:
                        continue
                    h, w = int(float(row["Height"])), int(float(row["Width"]))
                    masks = {name: decode_rle(row[col], h, w) for col, name in MASK_COLUMNS.items()}
                except (KeyError, ValueError) as exc:
                    raise DataError(f"{where}: a CheXmask row must hold a quality score, Height, Width and "
                                    f"valid RLE masks, but got {exc}.") from exc
                name = row[id_col]
                if name not in entries:
                    raise DataError(f"{where}: every masked image must have a row in {ENTRY_FILE}, but '{name}' "
                                    "has none. Use the CheXmask table that belongs to this data set.")
                if name not in files:
                    raise DataError(f"{root / name}: the image of a CheXmask row must exist, but it is missing.")
                case = make_case(name, files[name], entries[name], parts)
                for mask in masks.values():
                    if mask.shape != case.image.shape:
                        raise DataError(f"{where}: a mask must have its image's shape {case.image.shape}, but "
                                        f"got {mask.shape}. Use the OriginalResolution CheXmask table.")
                case.masks = masks
                cases.append(case)
        return cases


def _find_table(root: Path) -> Path:
    for table in sorted(root.glob("*.csv")):
        with table.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        if QUALITY_COLUMN in header and any(c in header for c in ID_COLUMNS):
            return table
    raise DataError(f"{root}: a chexmask folder must contain the CheXmask CSV (with '{QUALITY_COLUMN}' and an "
                    f"image id column {list(ID_COLUMNS)}), but no CSV there has them.")
