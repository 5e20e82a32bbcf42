"""Small helpers the folder readers share: labels tables, mask images, class checks, atomic folder writes."""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from bench.errors import DataError


def read_table(path: Path, required: Sequence[Sequence[str]]) -> list[dict[str, str]]:
    """Rows of a CSV file; each entry of ``required`` lists alternative column names, one must exist."""
    if not path.is_file():
        raise DataError(f"{path}: the data folder must contain this labels file, but it is missing.")
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: must be a readable UTF-8 CSV file, but reading failed: {exc}.") from exc
    if not rows:
        raise DataError(f"{path}: the labels file must list at least one image, but it has no rows.")
    for options in required:
        if not any(o in columns for o in options):
            raise DataError(
                f"{path}: the labels file must have a column {' or '.join(repr(o) for o in options)}, "
                f"but its columns are {columns}."
            )
    return rows


def check_class(label: str, classes: Sequence[str], where: str, hint: str = "") -> str:
    if label not in classes:
        raise DataError(
            f"{where}: the label must be one of the task's classes {list(classes)}, but got '{label}'."
            + (f" {hint}" if hint else " Fix the labels file or pick the task that has this class.")
        )
    return label


def read_image(path: Path, what: str = "image") -> np.ndarray:
    """A PNG/GIF/JPEG as a 2D array (palette GIFs keep their indices: masks are 'non-zero = inside')."""
    if not path.is_file():
        raise DataError(f"{path}: the {what} file must exist, but it is missing. Fix the path in the labels file.")
    try:
        with Image.open(path) as im:
            array = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: the {what} must be a readable image file, but reading failed: {exc}.") from exc
    if array.ndim == 3:  # RGB(A) masks exported by viewers: any channel set means inside
        array = array[..., :3].max(-1)
    return array


def read_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    mask = read_image(path, "mask")
    if mask.shape != tuple(shape):
        raise DataError(
            f"{path}: a mask must have its image's shape {tuple(shape)}, but got {mask.shape}. "
            "Export the mask at the image's resolution."
        )
    return (mask > 0).astype(np.uint8)


def number(value: str):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@contextmanager
def atomic_folder(out: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``out`` only if the block finishes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
