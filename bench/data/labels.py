"""Label schemes: which classes a source has, in which order, resolved from the data.

A scheme is an ordered tuple of class names; the order is the label index a classifier is trained on,
so it is stored with the split and the trial config (by the task) and must not depend on row order.

- the x-ray phantom: ``CHD_CLASSES`` (normal, VSD, ASD, TOF: bench.data.phantoms.xray.CLASSES);
- ChestX-ray14, CheXpert and CheXmask-joined sets: ``CARDIOMEGALY_CLASSES`` = ("no_cardiomegaly",
  "cardiomegaly"): binary, the positive class last (index 1), as ``positive_class`` says;
- a DICOM or PNG folder (or any other reader): the labels in its table, ordered by ``order_classes``:
  a known scheme when the labels are exactly one, else negative-sounding names first ("normal",
  "no_finding", ...), then the rest sorted;
- ``classes=[...]`` given explicitly fixes the order, and any label in the data outside it is refused
  with one DataError naming the labels file and every unknown label.

Example:
    >>> order_classes(["cardiomegaly", "no_finding", "cardiomegaly"])
    ('no_finding', 'cardiomegaly')
    >>> resolve_classes("phantom", "dicom")
    ('normal', 'VSD', 'ASD', 'TOF')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from bench.errors import DataError

CHD_CLASSES = ("normal", "VSD", "ASD", "TOF")  # = bench.data.phantoms.xray.CLASSES (checked by a test)
CARDIOMEGALY_CLASSES = ("no_cardiomegaly", "cardiomegaly")
KNOWN_SCHEMES = (CHD_CLASSES, CARDIOMEGALY_CLASSES)
# Formats whose labels are derived by the reader from a fixed finding, so the scheme is known up front.
FORMAT_SCHEMES = {"chestxray14": CARDIOMEGALY_CLASSES, "chexpert": CARDIOMEGALY_CLASSES,
                  "chexmask": CARDIOMEGALY_CLASSES}
# Put first (index 0) so that in a binary scheme the finding is the positive class.
NEGATIVE_NAMES = ("normal", "no_finding", "no finding", "no_cardiomegaly", "negative", "healthy", "control",
                  "none", "0")


def order_classes(labels: Iterable[str]) -> tuple[str, ...]:
    """A stable order for the labels found in a data set (independent of row order)."""
    found = {str(label) for label in labels}
    for scheme in KNOWN_SCHEMES:
        if found == set(scheme):
            return scheme
    negatives = sorted((n for n in found if n.lower() in NEGATIVE_NAMES), key=lambda n: NEGATIVE_NAMES.index(n.lower()))
    return tuple(negatives) + tuple(sorted(found - set(negatives), key=lambda n: (n.lower(), n)))


def positive_class(classes: Sequence[str]) -> str | None:
    """The class whose AUROC a binary task reports (the last one); None for multi-class schemes."""
    return classes[1] if len(classes) == 2 else None


def check_explicit(classes: Sequence[str]) -> tuple[str, ...]:
    """An explicit class list (``--classes a,b,c``): at least two distinct, non-empty names."""
    names = tuple(str(c).strip() for c in classes)
    if len(names) < 2 or "" in names or len(set(names)) != len(names):
        raise DataError(f"classes must be at least two distinct non-empty names, but got {list(classes)}. "
                        "Give them as --classes a,b,c.")
    return names


def resolve_classes(
    data: str,
    data_format: str,
    classes: Sequence[str] | None = None,
    phantom_classes: Sequence[str] = CHD_CLASSES,
    **reader_options: Any,
) -> tuple[str, ...]:
    """The class list of a source, in the order its label indices use.

    Args:
        data: a folder, or "phantom".
        data_format: the reader's name (bench.data.formats.FORMATS).
        classes: an explicit list that fixes the order; labels in the data outside it are refused.
        phantom_classes: the scheme of the task's phantom (the x-ray phantom's four CHD classes by default).
        **reader_options: passed to the reader as in ``bench.data.stream.scan_cases``.

    Raises:
        DataError: the explicit list is malformed, or the data has labels outside it (naming the labels
            file and all unknown labels).
    """
    from bench.data.stream import PHANTOM, scan_cases

    explicit = check_explicit(classes) if classes else None
    if data == PHANTOM:
        return _within(explicit, tuple(phantom_classes), "the phantom") if explicit else tuple(phantom_classes)
    fixed = FORMAT_SCHEMES.get(data_format)
    if fixed and (not explicit or set(fixed) <= set(explicit)):
        return explicit or fixed
    refs = scan_cases(data, data_format, None, **reader_options)
    found = [str(r.labels.get("class", "")) for r in refs]
    if explicit:
        return _within(explicit, found, str(_labels_file(data, data_format)))
    return order_classes(found)


def _within(explicit: tuple[str, ...], found: Iterable[str], where: str) -> tuple[str, ...]:
    counts: dict[str, int] = {}
    for label in found:
        if label not in explicit:
            counts[label] = counts.get(label, 0) + 1
    if counts:
        listed = ", ".join(f"'{k}' ({v} rows)" for k, v in sorted(counts.items()))
        raise DataError(f"{where}: every label must be one of the given classes {list(explicit)}, but the data "
                        f"also has {listed}. Add them to --classes, or leave --classes out to take the data's.")
    return explicit


def _labels_file(data: str, data_format: str) -> Path:
    """The table a format's labels come from (for error messages)."""
    root = Path(data)
    name = {"chestxray14": "Data_Entry_2017.csv", "chexmask": "Data_Entry_2017.csv",
            "chexpert": "train.csv"}.get(data_format, "labels.csv")
    return root / name if (root / name).exists() else root
