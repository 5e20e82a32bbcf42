"""CheXpert (Stanford): train.csv / valid.csv + JPEGs; cardiomegaly from the ``Cardiomegaly`` column.

Layout (as downloaded, e.g. CheXpert-v1.0-small/)::

    train.csv, valid.csv    Path, Sex, Age, Frontal/Lateral, AP/PA, No Finding, ..., Cardiomegaly, ...
                            Path = "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
                            (relative to the folder *above* this one; the first component is dropped)
    train/patientNNNNN/studyK/viewJ_frontal.jpg    8-bit grey JPEGs, sizes vary

Labels (scheme ``CARDIOMEGALY_CLASSES``): 1 -> "cardiomegaly"; 0 or blank (not mentioned in the report)
-> "no_cardiomegaly"; -1 (uncertain) by the ``uncertain`` policy: "ignore" (default) leaves the image
out, "ones" counts it positive, "zeros" negative (Irvin et al. 2019, U-Ignore / U-Ones / U-Zeros).
Pixel spacing: unknown (the JPEGs carry none; ``Case.spacing`` is None). Only frontal views by default (``views="all"`` keeps laterals). Patient id: ``patientNNNNN`` in the
path. Official split: valid.csv is the test part (234 radiologist-labelled images), train.csv the
train/val pool; without valid.csv bench draws a patient-grouped test part. Rows whose JPEG is missing
are named once (``missing="error"`` by default, ``"skip"``: one warning, rows left out).

Reference: Irvin et al. 2019, "CheXpert: A Large Chest Radiograph Dataset with Uncertainty Labels and
Expert Comparison" (AAAI).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np

from bench.data.case import Case, CaseRef
from bench.data.formats import FORMATS
from bench.data.formats._common import check_labels, load_all, read_image, read_table, report_missing
from bench.errors import DataError

TABLES = (("train.csv", "trainval"), ("valid.csv", "test"))
UNCERTAIN_POLICIES = ("ignore", "ones", "zeros")
VIEWS = ("frontal", "all")
_PATIENT = re.compile(r"(?:^|/)(patient\d+)(?:/|$)")
_VALUES = {"1": "cardiomegaly", "0": "no_cardiomegaly", "": "no_cardiomegaly"}


def chexpert_key(path: str) -> str:
    """Case id of a CheXpert path: without the release folder and the suffix, e.g. train/patient00001/study1/view1_frontal."""
    parts = PurePosixPath(path.strip().replace("\\", "/")).parts
    if parts and parts[0].lower().startswith("chexpert"):
        parts = parts[1:]
    return str(PurePosixPath(*parts).with_suffix("")) if parts else ""


@FORMATS.register("chexpert", why_not=(
    "CheXpert alone has image labels but no heart masks, which a task's segmenter trains on. Put the CheXmask "
    "table (CheXpert.csv) in the folder and use --format chexmask (datasets/chexmask/README.md)"))
class Chexpert:
    """CheXpert JPEGs, Cardiomegaly labels (uncertain policy ignore|ones|zeros), frontal views, valid.csv as test."""

    def __init__(self, uncertain: str = "ignore", views: str = "frontal", missing: str = "error"):
        if uncertain not in UNCERTAIN_POLICIES:
            raise DataError(f"uncertain must be one of {list(UNCERTAIN_POLICIES)}, but got '{uncertain}'.")
        if views not in VIEWS:
            raise DataError(f"views must be one of {list(VIEWS)}, but got '{views}'.")
        self.uncertain, self.views, self.missing = uncertain, views, missing

    def scan(self, path: str | Path, classes: Sequence[str] | None = None) -> list[CaseRef]:
        root = Path(path)
        if not (root / "train.csv").is_file() and not (root / "valid.csv").is_file():
            raise DataError(f"{root}: a chexpert folder must contain train.csv and/or valid.csv, but has neither.")
        official = (root / "valid.csv").is_file()
        refs: list[CaseRef] = []
        seen: set[str] = set()
        missing: list[str] = []
        total = 0
        for name, part in TABLES:
            table = root / name
            if not table.is_file():
                continue
            kept = []
            for line, row in enumerate(read_table(table, [("Path",), ("Cardiomegaly",)]), start=2):
                label = self._label(row["Cardiomegaly"], f"{table}:{line}")
                if label is None or (self.views == "frontal" and row.get("Frontal/Lateral", "Frontal") != "Frontal"):
                    continue
                kept.append((line, row, label))
            check_labels(table, ((line, label) for line, _, label in kept), classes)
            for line, row, label in kept:
                case_id = chexpert_key(row["Path"])
                patient = _PATIENT.search(case_id)
                if patient is None:
                    raise DataError(f"{table}:{line}: a Path must contain the patient folder 'patientNNNNN', but "
                                    f"got '{row['Path']}'.")
                if case_id in seen:
                    raise DataError(f"{table}:{line}: each image must be listed once, but '{row['Path']}' repeats.")
                seen.add(case_id)
                total += 1
                file = root / (case_id + PurePosixPath(row["Path"].strip()).suffix)
                if not file.is_file():
                    missing.append(f"{name}:{line} {case_id}")
                    continue
                meta = {"split_part": part} if official else {}
                refs.append(CaseRef(case_id, patient.group(1), partial(_case, file, case_id, patient.group(1),
                                                                         label, meta),
                                    "Stanford", {"class": label}, meta))
        report_missing(root, missing, total, self.missing)
        return refs

    def read(self, path: str | Path, classes: Sequence[str] | None = None) -> list[Case]:
        return load_all(self.scan(path, classes))

    def _label(self, value: str, where: str) -> str | None:
        value = value.strip()
        key = value.removesuffix(".0")
        if key == "-1":
            return None if self.uncertain == "ignore" else ("cardiomegaly" if self.uncertain == "ones"
                                                            else "no_cardiomegaly")
        if key not in _VALUES:
            raise DataError(f"{where}: Cardiomegaly must be 1, 0, -1 or blank, but got '{value}'.")
        return _VALUES[key]


def _case(file: Path, case_id: str, patient_id: str, label: str, meta: dict) -> Case:
    pixels = read_image(file)
    image = pixels.astype(np.float32) / (65535.0 if pixels.dtype == np.uint16 else 255.0)
    return Case(id=case_id, patient_id=patient_id, site="Stanford", image=image, spacing=None,  # JPEGs say none
                labels={"class": label}, meta=dict(meta))
