"""Shared fixtures: tiny data sets written in the exact on-disk formats of the real sources."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data.phantoms.xray import XrayPhantomSpec, generate

torch.set_num_threads(min(2, os.cpu_count() or 1))

TINY = XrayPhantomSpec(n_patients=6, n_shifted_patients=3, size=64, seed=3)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own cache root, so no test sees another's (or the user's) cached arrays."""
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def tiny_cases():
    return generate(TINY)


@pytest.fixture
def dicom_folder(tmp_path, tiny_cases) -> Path:
    from bench.data.phantoms.xray import export

    return export(tiny_cases, tmp_path / "dicom", "dicom")


def write_jsrt_img(path: Path, raw: np.ndarray) -> None:
    """JSRT .IMG: headerless big-endian uint16, row-major."""
    path.parent.mkdir(parents=True, exist_ok=True)
    raw.astype(">u2").tofile(path)


def write_gif(path: Path, mask: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((mask > 0).astype(np.uint8) * 255).convert("P").save(path, format="GIF")


@pytest.fixture
def jsrt_folder(tmp_path) -> Path:
    """Two JSRT images (64 px instead of 2048) with SCR masks at half size in the fold1/fold2 layout."""
    root = tmp_path / "JSRT"
    rng = np.random.default_rng(0)
    for k, name in enumerate(("JPCLN001", "JPCNN002")):
        write_jsrt_img(root / "All247images" / f"{name}.IMG", rng.integers(0, 4096, (64, 64)))
        fold = "fold1" if k == 0 else "fold2"
        heart = np.zeros((32, 32), np.uint8)
        heart[16:26, 12:22] = 1
        write_gif(root / "scr" / fold / "masks" / "heart" / f"{name}.gif", heart)
        write_gif(root / "scr" / fold / "masks" / ("left lung" if k == 0 else "left_lung") / f"{name}.gif",
                  np.pad(np.ones((20, 8)), ((6, 6), (20, 4))))
        write_gif(root / "scr" / fold / "masks" / "right lung" / f"{name}.gif",
                  np.pad(np.ones((20, 8)), ((6, 6), (4, 20))))
    return root


CXR14_COLUMNS = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                 "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]


@pytest.fixture
def cxr14_folder(tmp_path) -> Path:
    """ChestX-ray14 layout: Data_Entry_2017.csv, images_001/images/*.png, official lists."""
    root = tmp_path / "cxr14"
    images = root / "images_001" / "images"
    images.mkdir(parents=True)
    rows = [
        ("00000001_000.png", "Cardiomegaly", 0, "00000001"),
        ("00000001_001.png", "Cardiomegaly|Emphysema", 1, "00000001"),
        ("00000002_000.png", "No Finding", 0, "00000002"),
        ("00000003_000.png", "Effusion", 0, "00000003"),
    ]
    rng = np.random.default_rng(1)
    with (root / "Data_Entry_2017.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(CXR14_COLUMNS)
        for name, findings, follow, pid in rows:
            Image.fromarray(rng.integers(0, 256, (32, 32), dtype=np.uint8)).save(images / name)
            w.writerow([name, findings, follow, pid, 50, "M", "PA", 2048, 2048, 0.143, 0.143])
    (root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n00000003_000.png\n")
    (root / "test_list.txt").write_text("00000002_000.png\n")
    return root


@pytest.fixture
def chexmask_folder(cxr14_folder) -> Path:
    """CheXmask table (OriginalResolution, RLE) beside the ChestX-ray14 layout; one row fails quality."""
    from bench.data.formats.chexmask import encode_rle

    heart = np.zeros((32, 32), np.uint8)
    heart[18:28, 10:22] = 1
    lung_l, lung_r = np.zeros_like(heart), np.zeros_like(heart)
    lung_l[4:28, 18:30], lung_r[4:28, 2:14] = 1, 1
    with (cxr14_folder / "ChestX-Ray8.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Image Index", "Dice RCA (Max)", "Dice RCA (Mean)", "Landmarks", "Left Lung", "Right Lung",
                    "Heart", "Height", "Width"])
        for name, quality in (("00000001_000.png", 0.9), ("00000002_000.png", 0.8), ("00000003_000.png", 0.5)):
            w.writerow([name, quality + 0.05, quality, "[]", encode_rle(lung_l), encode_rle(lung_r),
                        encode_rle(heart), 32, 32])
    return cxr14_folder


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder: MLflow store, Optuna journal and data cache all land inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / ".bench" / "cache"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return tmp_path
