"""Tiny data sets in the real public layouts (ChestX-ray14 + CheXmask, CheXpert, a DICOM folder with
cardiomegaly labels), with the ground truth each was written from, so tests compare what readers return."""

from __future__ import annotations

import csv
import gc
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.data.formats.chexmask import encode_rle
from bench.data.stream import CaseRef

CXR14_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                 "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
CHEXMASK_COLUMNS = ["Image Index", "Dice RCA (Max)", "Dice RCA (Mean)", "Landmarks", "Left Lung", "Right Lung",
                    "Heart", "Height", "Width"]
LANDMARKS = "381,223,345,227,309,248"  # a quoted x,y list in the released tables: commas inside one field
CHEXPERT_COLUMNS = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum",
                    "Cardiomegaly", "Lung Opacity"]


@dataclass
class Written:
    """A folder and what was written into it: per case id the patient, label, official part and masks."""

    root: Path
    patient: dict[str, str] = field(default_factory=dict)
    label: dict[str, str] = field(default_factory=dict)
    part: dict[str, str] = field(default_factory=dict)
    masks: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    image: dict[str, np.ndarray] = field(default_factory=dict)


def heart_and_lungs(shape: tuple[int, int], k: int) -> dict[str, np.ndarray]:
    """Distinct masks per case k (the heart box moves with k), so a mix-up between rows is caught."""
    h, w = shape
    heart, left, right = (np.zeros(shape, np.uint8) for _ in range(3))
    heart[h // 2 : h // 2 + h // 4, w // 3 + k % 4 : w // 3 + k % 4 + w // 3] = 1
    left[h // 8 : h - h // 8, w // 2 + 2 : w - 2] = 1
    right[h // 8 : h - h // 8, 2 : w // 2 - 2] = 1
    return {"heart": heart, "lung_left": left, "lung_right": right}


def write_cxr14(root: Path, n_patients: int = 12, size: int = 32, quality=lambda k: 0.9, nih_box: bool = False
                ) -> Written:
    """ChestX-ray14 layout (two images for every other patient; every third patient with Cardiomegaly) and a
    CheXmask ChestX-Ray8.csv (OriginalResolution, real RLE) beside it; the last quarter of patients is the
    official test list. ``nih_box``: as the NIH box downloads today (one flat images/ folder, the table
    named Data_Entry_2017_v2020.csv) instead of the Kaggle copy (images_0NN/images/, Data_Entry_2017.csv)."""
    images = root / "images" if nih_box else root / "images_002" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    out = Written(root)
    lists = {"trainval": [], "test": []}
    entry_file = "Data_Entry_2017_v2020.csv" if nih_box else "Data_Entry_2017.csv"
    with (root / entry_file).open("w", newline="") as fe, (root / "ChestX-Ray8.csv").open("w", newline="") as fm:
        entries, masks = csv.writer(fe), csv.writer(fm)
        entries.writerow(CXR14_COLUMNS)
        masks.writerow(CHEXMASK_COLUMNS)
        k = 0
        for p in range(1, n_patients + 1):
            for follow in range(2 if p % 2 else 1):
                name = f"{p:08d}_{follow:03d}.png"
                case_id = name[:-4]
                findings = "Cardiomegaly|Effusion" if p % 3 == 0 else ("No Finding" if p % 2 else "Effusion")
                pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
                Image.fromarray(pixels).save(images / name)
                entries.writerow([name, findings, follow, f"{p:08d}", 40, "F", "PA", 2048, 2048, 0.143, 0.143])
                m = heart_and_lungs((size, size), k)
                masks.writerow([name, quality(k) + 0.05, quality(k), LANDMARKS, encode_rle(m["lung_left"]),
                                encode_rle(m["lung_right"]), encode_rle(m["heart"]), size, size])
                part = "test" if p > n_patients * 3 // 4 else "trainval"
                lists[part].append(name)
                out.patient[case_id], out.part[case_id], out.masks[case_id] = f"{p:08d}", part, m
                out.label[case_id] = "cardiomegaly" if p % 3 == 0 else "no_cardiomegaly"
                out.image[case_id] = pixels.astype(np.float32) / 255
                k += 1
    (root / "train_val_list.txt").write_text("".join(n + "\n" for n in lists["trainval"]))
    (root / "test_list.txt").write_text("".join(n + "\n" for n in lists["test"]))
    return out


@pytest.fixture
def cxr14_chexmask(tmp_path) -> Written:
    return write_cxr14(tmp_path / "cxr14", quality=lambda k: 0.5 if k == 1 else 0.9)


def write_chexpert(root: Path, mask_scale: int = 2) -> Written:
    """CheXpert-v1.0-small layout: train.csv (frontal + one lateral, 1/0/blank/-1 labels), valid.csv, JPEGs
    of 24x32 (rows x cols); plus a CheXmask CheXpert.csv whose masks are ``mask_scale`` times larger, as the
    OriginalResolution table is for the downsampled release."""
    out = Written(root)
    rng = np.random.default_rng(1)
    shape = (24, 32)
    train = [  # patient, study, view, frontal?, Cardiomegaly value
        (1, 1, 1, True, "1.0"), (1, 2, 1, True, "0.0"), (1, 2, 2, False, "1.0"), (2, 1, 1, True, ""),
        (3, 1, 1, True, "-1.0"), (4, 1, 1, True, "1.0"), (5, 1, 1, True, "0.0"), (6, 1, 1, True, "1.0"),
    ]
    valid = [(64541, 1, 1, True, "1.0"), (64542, 1, 1, True, "0.0")]
    root.mkdir(parents=True)
    with (root / "CheXpert.csv").open("w", newline="") as fm:
        masks = csv.writer(fm)
        masks.writerow(["Path"] + CHEXMASK_COLUMNS[1:])
        for table, part, rows in (("train.csv", "trainval", train), ("valid.csv", "test", valid)):
            with (root / table).open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(CHEXPERT_COLUMNS)
                for k, (p, study, view, frontal, value) in enumerate(rows):
                    kind = "frontal" if frontal else "lateral"
                    rel = f"{table[:-4]}/patient{p:05d}/study{study}/view{view}_{kind}.jpg"
                    (root / rel).parent.mkdir(parents=True, exist_ok=True)
                    pixels = rng.integers(40, 200, shape, dtype=np.uint8)
                    Image.fromarray(pixels).save(root / rel, quality=95)
                    w.writerow([f"CheXpert-v1.0-small/{rel}", "Female", 60, "Frontal" if frontal else "Lateral",
                                "PA" if frontal else "", "", "", value, "1.0"])
                    big = heart_and_lungs((shape[0] * mask_scale, shape[1] * mask_scale), k)
                    masks.writerow([rel, 0.9, 0.85, LANDMARKS, encode_rle(big["lung_left"]),
                                    encode_rle(big["lung_right"]), encode_rle(big["heart"]), shape[0] * mask_scale,
                                    shape[1] * mask_scale])
                    case_id = rel[:-4]
                    out.patient[case_id], out.part[case_id] = f"patient{p:05d}", part
                    out.label[case_id] = {"1.0": "cardiomegaly", "0.0": "no_cardiomegaly", "": "no_cardiomegaly",
                                          "-1.0": "uncertain"}[value]
                    # nearest neighbour by pixel centres: image pixel i <- mask pixel i*scale + scale//2
                    out.masks[case_id] = {n: m[mask_scale // 2 :: mask_scale, mask_scale // 2 :: mask_scale]
                                          for n, m in big.items()}
                    out.image[case_id] = pixels.astype(np.float32) / 255
    return out


@pytest.fixture
def chexpert_folder(tmp_path) -> Written:
    return write_chexpert(tmp_path / "CheXpert-v1.0-small")


@pytest.fixture
def cardiomegaly_dicom(tmp_path, tiny_cases) -> Written:
    """The tiny phantom exported as DICOM with hospital labels no_finding / cardiomegaly instead of CHD classes."""
    from dataclasses import replace

    from bench.data.phantoms.xray import export

    cases = [replace(c, labels={**c.labels, "class": "no_finding" if c.labels["class"] == "normal" else "cardiomegaly"})
             for c in tiny_cases]
    root = export(cases, tmp_path / "hospital", "dicom")
    return Written(root, {c.id: c.patient_id for c in cases}, {c.id: c.labels["class"] for c in cases})


class LiveCases:
    """Wraps case refs so each ``load()`` first records how many earlier loaded cases are still alive
    (``seen``): all zeros means one decoded case at a time."""

    def __init__(self):
        self.loaded: list[weakref.ref] = []
        self.seen: list[int] = []

    def wrap(self, ref: CaseRef) -> CaseRef:
        def load():
            gc.collect()
            self.seen.append(sum(r() is not None for r in self.loaded))
            case = ref.load()
            self.loaded.append(weakref.ref(case))
            return case
        return CaseRef(ref.id, ref.patient_id, load, ref.site, ref.labels, ref.meta)
