"""JSRT chest radiographs (.IMG) with SCR heart/lung masks; official split = SCR's two folds (odd/even).

Layout (as downloaded; any nesting)::

    **/JPCLN001.IMG ... JPCNN093.IMG   headerless, big-endian uint16, size x size (2048), 12-bit,
                                       0.175 mm pixels; larger values are darker, so grey = 1 - v/4096
    **/heart/JPCLN001.gif              SCR masks, one folder per organ; "left lung" or "left_lung" both
    **/left lung/JPCLN001.gif          work; SCR masks are 1024 px, i.e. the image downsampled by 2
    **/right lung/JPCLN001.gif
    labels.csv (optional)              case_id,label to give classes; without it every image is
                                       ``default_label`` ("normal"): JSRT grades lung nodules, not the heart

References: Shiraishi et al. 2000 (JSRT, AJR 174:71-74); van Ginneken et al. 2006 (SCR, Med Image Anal
10:19-40), whose evaluation splits the 247 images into two folds by odd/even image number.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.data.case import Case
from bench.data.formats import FORMATS
from bench.data.formats._common import check_class, read_mask, read_table
from bench.errors import DataError

SCR_ORGANS = {"heart": "heart", "left_lung": "lung_left", "right_lung": "lung_right"}
JSRT_PIXEL_MM = 0.175


@FORMATS.register("jsrt")
class JsrtFolder:
    """JSRT .IMG radiographs + SCR GIF masks; splits by the official odd/even SCR folds."""

    LOOKS_LIKE = "jsrt: JPC*.IMG files"

    @staticmethod
    def recognise(root: Path) -> bool:
        return any(p.suffix.upper() == ".IMG" for p in root.rglob("JPC*"))

    def __init__(self, size: int = 2048, downsample: int = 2, default_label: str = "normal"):
        self.size, self.downsample, self.default_label = size, downsample, default_label

    def read(self, path: str | Path, classes: Sequence[str]) -> list[Case]:
        root = Path(path)
        images = sorted(p for p in root.rglob("*") if p.suffix.upper() == ".IMG" and p.is_file())
        if not images:
            raise DataError(f"{root}: a JSRT folder must contain .IMG files, but it has none.")
        masks = _scr_masks(root)
        labels = {}
        if (root / "labels.csv").is_file():
            rows = read_table(root / "labels.csv", [("case_id",), ("label", "class")])
            labels = {r["case_id"]: r.get("label") or r.get("class", "") for r in rows}
        cases = []
        for file in images:
            case_id = file.stem.upper()
            image = read_img(file, self.size)
            if self.downsample > 1:
                f = self.downsample
                image = image.reshape(image.shape[0] // f, f, image.shape[1] // f, f).mean((1, 3))
            label = check_class(labels.get(case_id, self.default_label), classes,
                                f"{file}", "JSRT has no cardiac grading; give classes in labels.csv.")
            number = int(re.sub(r"\D", "", case_id) or 0)
            cases.append(Case(
                id=case_id,
                patient_id=case_id,  # one image per patient in JSRT
                site="JSRT",
                image=image.astype(np.float32),
                spacing=(JSRT_PIXEL_MM * self.downsample,) * 2,
                masks={name: read_mask(m, image.shape) for name, m in masks.get(case_id, {}).items()},
                labels={"class": label, "nodule": float(case_id.startswith("JPCLN"))},
                # SCR folds: odd image numbers in fold 0's validation part, even in fold 1's
                meta={"split_part": "trainval", "split_fold": 0 if number % 2 else 1},
            ))
        return cases


def read_img(file: Path, size: int = 2048) -> np.ndarray:
    """A JSRT .IMG as grey levels in [0, 1], bone bright (the file stores larger = darker)."""
    expected = size * size * 2
    actual = file.stat().st_size
    if actual != expected:
        raise DataError(
            f"{file}: a JSRT .IMG must hold {size}x{size} big-endian uint16 ({expected} bytes), but got "
            f"{actual} bytes. Re-download the file or pass the right size to the jsrt reader."
        )
    raw = np.fromfile(file, dtype=">u2").reshape(size, size)
    return 1.0 - np.minimum(raw, 4095).astype(np.float32) / 4096.0


def _scr_masks(root: Path) -> dict[str, dict[str, Path]]:
    found: dict[str, dict[str, Path]] = {}
    for gif in root.rglob("*"):
        if gif.suffix.lower() != ".gif":
            continue
        organ = re.sub(r"[\s_]+", "_", gif.parent.name.strip().lower())
        if organ in SCR_ORGANS:
            found.setdefault(gif.stem.upper(), {})[SCR_ORGANS[organ]] = gif
    return found
