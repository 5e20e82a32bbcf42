"""Look at a data set before searching on it: counts, sizes, spacing, masks and problems, as plain JSON.

Nothing returned here names a patient: patients are counted, never listed, and problems name files and
rules only (file names are the user's own paths).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.case import Case
from bench.data.sources import PHANTOM, kept_split_path, source_descriptor, source_name, standard_split_path
from bench.data.splits import check_split, load_split
from bench.errors import BenchError, DataError


def inspect(path: str | Path, task: str, fmt: str | None = None, classes: Sequence[str] | None = None,
            **reader_options: Any) -> dict[str, Any]:
    """Summarise the data at ``path`` as the task would read it; ``path="phantom"`` for the built-in one.

    Args:
        path: data folder, or "phantom".
        task: task name (which split applies).
        fmt: data format name (FORMATS registry); required unless ``path`` is "phantom".
        classes: an explicit class list labels are checked against; None takes the data's own labels
            (bench.data.labels: the phantom's four classes, cardiomegaly for the public sets).
        reader_options: the format's reader parameters (chexmask ``min_dice``, chexpert ``uncertain``, ...).

    Returns:
        JSON-able dict: format, cases, patients, classes, sites, image sizes, spacing, masks, labels,
        split (parts with case/patient counts, or null), and ``problems`` (list of messages; empty = clean).
        A reader error stops the read and becomes the only problem, with zero counts.

    Example:
        >>> report = inspect("phantom", "xray-heart")
        >>> report["problems"], report["classes"]["normal"] > 0
        ([], True)
    """
    report: dict[str, Any] = {"path": str(path), "task": task, "format": fmt or PHANTOM, "problems": []}
    try:
        cases = _read(path, classes, fmt, reader_options)
    except BenchError as exc:
        report.update(cases=0, patients=0, problems=[str(exc)])
        return report
    if classes is None:
        from bench.data.labels import order_classes

        classes = order_classes(c.labels.get("class") for c in cases if c.labels.get("class") is not None)
    report.update(summarise(cases, classes))
    report["split"] = _split_report(task, path, fmt, cases, report["problems"], reader_options)
    return report


def _read(path, classes, fmt, reader_options) -> list[Case]:
    if str(path) == PHANTOM:
        from bench.data.phantoms.xray import generate

        return generate()
    if not fmt:
        from bench.data.formats import FORMATS

        raise DataError(f"{path}: a data format must be given for a folder, but got none. Use one of {FORMATS.names()}.")
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: the data path must exist, but it does not.")
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(f"{root}: the data folder must contain files, but it is empty.")
    from bench.data.formats import FORMATS

    cases = FORMATS.create(fmt, **reader_options).read(root, classes)
    if not cases:
        raise DataError(f"{root}: a data set must hold at least one case, but the {fmt} reader found none.")
    return cases


def summarise(cases: Sequence[Case], classes: Sequence[str] = ()) -> dict[str, Any]:
    """Counts and ranges over cases, plus problems that do not stop a read (duplicates, shape mismatches)."""
    problems = []
    ids = Counter(c.id for c in cases)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        problems.append(f"case ids must be unique, but {len(dup)} repeat (e.g. '{dup[0]}').")
    patients_per_site: dict[str, set] = {}
    for c in cases:
        patients_per_site.setdefault(c.site, set()).add(c.patient_id)
    shared = sum(1 for p in {c.patient_id for c in cases} if sum(p in s for s in patients_per_site.values()) > 1)
    if shared:
        problems.append(f"a patient should come from one site, but {shared} patient(s) appear at several sites.")
    for c in cases:
        for name, m in c.masks.items():
            if np.shape(m) != np.shape(c.image):
                problems.append(f"case {c.id}: mask '{name}' must match the image shape {np.shape(c.image)}, "
                                f"but got {np.shape(m)}.")
    unknown = sorted({str(c.labels.get("class")) for c in cases} - set(classes)) if classes else []
    if unknown:
        problems.append(f"labels must be among the task's classes {list(classes)}, but got {unknown}.")
    sizes = Counter("x".join(map(str, np.shape(c.image))) for c in cases)
    spacing = np.array([c.spacing[:2] for c in cases], float)
    images_per_patient = Counter(Counter(c.patient_id for c in cases).values())
    return {
        "cases": len(cases),
        "patients": len({c.patient_id for c in cases}),
        "images_per_patient": {str(k): v for k, v in sorted(images_per_patient.items())},
        "classes": dict(sorted(Counter(str(c.labels.get("class")) for c in cases).items())),
        "sites": {s or "(none)": {"cases": sum(c.site == s for c in cases), "patients": len(p),
                                   "classes": dict(sorted(Counter(str(c.labels.get("class")) for c in cases
                                                                  if c.site == s).items()))}
                  for s, p in sorted(patients_per_site.items())},
        "image_sizes": dict(sizes.most_common()),
        "spacing_mm": {"min": spacing.min(0).round(4).tolist(), "max": spacing.max(0).round(4).tolist()},
        "masks": dict(sorted(Counter(m for c in cases for m in c.masks).items())),
        "labels": sorted({k for c in cases for k in c.labels}),
        "problems": problems,
    }


def _split_report(task: str, path, fmt, cases: Sequence[Case], problems: list[str],
                  reader_options: dict) -> dict | None:
    """Parts of the standard split (if one exists for this source) with counts; leakage becomes a problem."""
    if str(path) == PHANTOM:
        candidates = [standard_split_path(task, PHANTOM)]
    else:
        source = source_name(str(path), source_descriptor(str(path), fmt or "", "", reader_options))
        candidates = [standard_split_path(task, source), kept_split_path(task, source)]
    candidates = [c for c in candidates if c.is_file()]
    if not candidates:
        return None
    patient_of = {c.id: c.patient_id for c in cases}
    try:
        split = load_split(candidates[0])
        check_split(split, patient_of, origin=str(candidates[0]))
    except BenchError as exc:
        problems.append(str(exc))
        return {"file": str(candidates[0]), "valid": False}
    return {
        "file": str(candidates[0]),
        "valid": True,
        "sha256": split.sha256,
        "folds": len(split.folds),
        "parts": {name: {"cases": len(split.part(name)), "patients": len({patient_of[i] for i in split.part(name)})}
                  for name in split.part_names},
    }
