"""NIH ChestX-ray14: the Data_Entry table + PNG images; official split = train_val_list.txt / test_list.txt.

Layout (as downloaded; either of the two ways the archive is found)::

    Data_Entry_2017_v2020.csv  Image Index, Finding Labels (pipe-separated), Follow-up #, Patient ID, ...,
      or Data_Entry_2017.csv   OriginalImage[Width, Height], OriginalImagePixelSpacing[x, y]
                               (the 2020 revision from the NIH box; the older name from Kaggle and mirrors)
    images/00000001_000.png    the twelve images_0NN.tar.gz of the NIH box extract into one flat images/,
      or images_0NN/images/... the Kaggle copy keeps one folder per tarball; any depth is read
                               8-bit grey (a few RGBA), 1024 x 1024
    train_val_list.txt, test_list.txt   one image name per line (optional; official split if present)

With both tables present the 2020 revision is read.

Labels: the scheme is ``CARDIOMEGALY_CLASSES`` ("no_cardiomegaly", "cardiomegaly"; bench.data.labels):
an image is "cardiomegaly" when "Cardiomegaly" is among its findings, else "no_cardiomegaly". Classes
given to ``read``/``scan`` that lack one of these (e.g. the phantom's normal/VSD/ASD/TOF) are refused
with one clear error.

Rows whose PNG is absent (the archive ships in 12 tarballs) are named once: an error by default, or
one warning and left out with ``missing="skip"``. PNGs are decoded one at a time by ``CaseRef.load``.

Reference: Wang et al. 2017, "ChestX-ray8: Hospital-scale Chest X-ray Database..." (CVPR).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from bench.data.case import Case, CaseRef
from bench.data.formats import FORMATS
from bench.data.formats._common import check_labels, load_all, read_image, read_table, report_missing
from bench.errors import DataError

ENTRY_FILES = ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv")  # the 2020 revision first
ENTRY_FILE = ENTRY_FILES[-1]  # the name older code and docs use
LABEL_HINT = ("ChestX-ray14 gives cardiomegaly/no_cardiomegaly labels (see datasets/chestxray14/README.md); "
              "use a task whose classes are these.")


def cardiomegaly_label(findings: str) -> str:
    return "cardiomegaly" if "Cardiomegaly" in findings.split("|") else "no_cardiomegaly"


def entry_table(root: Path) -> Path | None:
    """The folder's Data_Entry table (the 2020 revision when both are there), or None."""
    return next((root / name for name in ENTRY_FILES if (root / name).is_file()), None)


def read_entries(root: Path, classes: Sequence[str] | None) -> dict[str, dict]:
    """Image name -> {patient_id, label, spacing factor...} from the Data_Entry table, labels checked."""
    table = entry_table(root)
    if table is None:
        raise DataError(f"{root}: a ChestX-ray14 folder must contain {' or '.join(ENTRY_FILES)}, but has neither. "
                        "Download it from the NIH box beside the images.")
    rows = read_table(table, [("Image Index",), ("Finding Labels",), ("Patient ID",)])
    out = {}
    for line, row in enumerate(rows, start=2):
        name = row["Image Index"]
        if name in out:
            raise DataError(f"{table}:{line}: each image must be listed once, but '{name}' repeats.")
        out[name] = {
            "line": line,
            "patient_id": row["Patient ID"],
            "label": cardiomegaly_label(row["Finding Labels"]),
            "orig_width": _float(row.get("OriginalImage[Width")),
            "orig_spacing": _float(row.get("OriginalImagePixelSpacing[x")),
        }
    check_labels(table, ((e["line"], e["label"]) for e in out.values()), classes, LABEL_HINT)
    return out


def official_parts(root: Path) -> dict[str, str]:
    """Image name -> "trainval" / "test" from the official lists; empty if they are absent."""
    parts = {}
    for file, part in (("train_val_list.txt", "trainval"), ("test_list.txt", "test")):
        if (root / file).is_file():
            parts.update({n.strip(): part for n in (root / file).read_text().split() if n.strip()})
    return parts


def index_images(root: Path) -> dict[str, Path]:
    return {p.name: p for p in root.rglob("*.png") if p.is_file()}


@FORMATS.register("chestxray14", why_not=(
    "ChestX-ray14 alone has image labels but no heart masks, which a task's segmenter trains on. Put the "
    "CheXmask table (ChestX-Ray8.csv) in the folder and use --format chexmask (datasets/chexmask/README.md)"))
class ChestXray14:
    """NIH ChestX-ray14 PNGs with Cardiomegaly labels from Data_Entry_2017.csv and the official split."""

    def __init__(self, missing: str = "error"):
        self.missing = missing

    def scan(self, path: str | Path, classes: Sequence[str] | None = None) -> list[CaseRef]:
        """Every listed image as a ref (no PNG decoded); missing files reported once by ``missing``."""
        root = Path(path)
        entries, parts, files = read_entries(root, classes), official_parts(root), index_images(root)
        table = entry_table(root)
        unlabelled = sorted(set(files) - set(entries))
        if unlabelled:
            raise DataError(f"{files[unlabelled[0]]}: every image must have a row in {table.name}, but this one "
                            f"(and {len(unlabelled) - 1} more) has none.")
        report_missing(table, [n for n in entries if n not in files], len(entries), self.missing)
        return [entry_ref(name, files[name], entry, parts) for name, entry in entries.items() if name in files]

    def read(self, path: str | Path, classes: Sequence[str] | None = None) -> list[Case]:
        return load_all(self.scan(path, classes))


def entry_ref(name: str, file: Path, entry: dict, parts: dict[str, str]) -> CaseRef:
    meta = {"split_part": parts[name]} if name in parts else {}
    return CaseRef(Path(name).stem, entry["patient_id"], partial(make_case, name, file, entry, parts),
                   "NIHCC", {"class": entry["label"]}, meta)


def make_case(name: str, file: Path, entry: dict, parts: dict[str, str]) -> Case:
    image = read_image(file).astype(np.float32)
    image /= 65535.0 if image.max() > 255 else 255.0
    spacing = None  # a row without the original size and pitch says nothing about mm
    if entry["orig_width"] and entry["orig_spacing"]:
        # the PNGs were resized from the original detector image, so the pixel pitch grows with it
        spacing = (entry["orig_spacing"] * entry["orig_width"] / image.shape[1],) * 2
    return Case(
        id=Path(name).stem,
        patient_id=entry["patient_id"],
        site="NIHCC",
        image=image,
        spacing=spacing,
        labels={"class": entry["label"]},
        meta={"split_part": parts[name]} if name in parts else {},
    )


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
