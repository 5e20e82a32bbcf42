"""Small helpers the folder readers share: labels tables, mask images, class checks, missing files,
atomic folder writes, and the lazy ``read`` of readers that ``scan`` first."""

from __future__ import annotations

import csv
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.data.atomic import atomic_folder  # noqa: F401  (the readers import it from here)
from bench.errors import BenchWarning, DataError


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
    present = [next(o for o in options if o in columns) for options in required]
    for line, row in enumerate(rows, start=2):
        short = [c for c in present if row.get(c) is None]  # DictReader leaves cells past a row's end as None
        if short:
            raise DataError(f"{path}:{line}: each row must have a cell for {short}, but the row ends early "
                            f"(a truncated or hand-edited file?).")
    return rows


def check_class(label: str, classes: Sequence[str] | None, where: str, hint: str = "") -> str:
    """``label`` if it is one of ``classes``; with no classes given the scheme comes from the data: any label."""
    if classes and label not in classes:
        raise DataError(
            f"{where}: the label must be one of the task's classes ({', '.join(classes)}), but got '{label}'."
            + (f" {hint}" if hint else " Fix the labels file or pick the task that has this class.")
        )
    return label


def check_labels(table: Path, labels: Iterable[tuple[int, str]], classes: Sequence[str] | None,
                 hint: str = "") -> None:
    """One error for every (line, label) outside ``classes``: the first line, and all unknown labels at once.

    ``classes=None`` means the label scheme comes from the data (bench.data.labels), so nothing is refused.
    """
    if not classes:
        return
    unknown: dict[str, int] = {}
    rows = 0
    for line, label in labels:
        if label not in classes:
            unknown.setdefault(label, line)
            rows += 1
    if unknown:
        first = min(unknown, key=unknown.get)
        more = f" {rows} rows in all have labels outside them: {', '.join(sorted(unknown))}." if rows > 1 else ""
        raise DataError(
            f"{table}:{unknown[first]}: the label must be one of the task's classes ({', '.join(classes)}), but got "
            f"'{first}'.{more} " + (hint or "Fix the labels file, or give classes that include these labels.")
        )


MISSING_POLICIES = ("error", "skip")


def report_missing(table: Path, missing: Sequence[str], total: int, policy: str) -> None:
    """Rows of ``table`` whose image file is absent, said once: an error, or one warning when skipping them.

    Real archives often arrive partly (ChestX-ray14 ships in 12 tarballs, CheXpert in train/valid parts).
    """
    if not missing:
        return
    if policy not in MISSING_POLICIES:
        raise DataError(f"missing must be one of {list(MISSING_POLICIES)}, but got '{policy}'.")
    shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    message = f"{table}: {len(missing)} of {total} rows name an image file that is missing ({shown})"
    if policy == "error" or len(missing) == total:
        raise DataError(f"{message}; every listed image must exist. Download the missing parts, or read "
                        "with missing='skip' to leave those rows out.")
    warnings.warn(f"{message}; those rows are left out (missing='skip').", category=BenchWarning, stacklevel=3)


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


def resize_mask(mask: np.ndarray, shape: tuple[int, int], where: str) -> np.ndarray:
    """A binary mask brought to an image's shape (nearest neighbour), refusing a different aspect ratio.

    CheXmask decodes at the resolution of the image the masks were made on; a downsampled copy of the
    same image (CheXpert-small) has the same aspect ratio up to rounding.
    """
    if mask.shape == tuple(shape):
        return mask
    ratio = (mask.shape[0] / mask.shape[1]) / (shape[0] / shape[1])
    if abs(ratio - 1) > 0.02:
        raise DataError(f"{where}: a mask must have its image's shape {tuple(shape)} or the same aspect ratio, "
                        f"but got {mask.shape}. Use the mask table that belongs to these images.")
    # pixel centres mapped onto the source grid (what PIL's NEAREST does)
    rows = ((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int).clip(0, mask.shape[0] - 1)
    cols = ((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int).clip(0, mask.shape[1] - 1)
    return np.ascontiguousarray(mask[np.ix_(rows, cols)])


# Suffixes that are never DICOM, so recognising a folder does not open every PNG of an archive.
NOT_DICOM = {".png", ".jpg", ".jpeg", ".gif", ".csv", ".json", ".nii", ".gz", ".mhd", ".raw", ".txt", ".img", ".md"}


def holds_dicom(root: Path) -> bool:
    """Whether any file under ``root`` is DICOM Part 10 ("DICM" after the 128-byte preamble); stops at the first."""
    for folder, _, names in os.walk(root):
        for name in sorted(names):
            if name.startswith("._") or Path(name).suffix.lower() in NOT_DICOM:
                continue
            try:
                with open(Path(folder) / name, "rb") as fh:
                    fh.seek(128)
                    if fh.read(4) == b"DICM":
                        return True
            except OSError:
                continue
    return False


def load_all(refs: Sequence) -> list:
    """Every case of a scan, images decoded (what ``read`` returns; streaming code iterates ``scan``)."""
    return [ref.load() for ref in refs]


def number(value: str):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@dataclass
class CsvRow:
    """One written case's labels.csv fields, kept (text, no pixels) until every case's masks and labels, the
    table's columns, are known: writers take cases one at a time."""

    fields: list[Any]
    case_id: str
    masks: tuple[str, ...] = ()
    labels: dict[str, Any] = field(default_factory=dict)  # all but "class"

    @classmethod
    def of(cls, case, fields: Sequence[Any]) -> CsvRow:
        return cls(list(fields), case.id, tuple(case.masks), {k: v for k, v in case.labels.items() if k != "class"})


def save_masks(case, folder: Path) -> None:
    """Each of the case's masks as ``masks/<name>/<case id>.png`` (0/255) under ``folder``."""
    for name, mask in case.masks.items():
        (folder / "masks" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.asarray(mask) > 0).astype(np.uint8) * 255).save(folder / "masks" / name / f"{case.id}.png")


def write_labels_csv(path: Path, columns: Sequence[str], rows: Sequence[CsvRow]) -> None:
    """labels.csv: ``columns``, then a ``mask_<name>`` column per mask and one per label any case has."""
    mask_names = sorted({m for r in rows for m in r.masks})
    label_names = sorted({k for r in rows for k in r.labels})
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([*columns, *(f"mask_{m}" for m in mask_names), *label_names])
        for r in rows:
            writer.writerow(r.fields + [f"masks/{m}/{r.case_id}.png" if m in r.masks else "" for m in mask_names]
                            + [r.labels.get(k, "") for k in label_names])
