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

from bench.data.case import Case, CaseRef
from bench.data.sources import PHANTOM, kept_split_path, source_descriptor, source_name, standard_split_path
from bench.data.splits import check_split, load_split, make_split
from bench.errors import BenchError, DataError


def inspect(path: str | Path, task: str, fmt: str | None = None, classes: Sequence[str] | None = None,
            sample: int | None = None, formats: Sequence[str] = (), **reader_options: Any) -> dict[str, Any]:
    """Summarise the data at ``path`` as the task would read it; ``path="phantom"`` for the built-in one.

    Args:
        path: data folder, or "phantom".
        task: task name (which split applies).
        fmt: data format name (FORMATS registry); None for "phantom", or to take the one format of the task
            that recognises the folder (``bench.data.formats.detect_format``; none or several: a problem
            naming the formats to choose from).
        classes: an explicit class list labels are checked against; None takes the data's own labels
            (bench.data.labels: the phantom's four classes, cardiomegaly for the public sets).
        sample: decode only this many images, evenly spread over the cases, for sizes, spacing and masks
            (None: every image). Ids, patients, labels, sites and the split come from the reader's scan,
            which decodes nothing, and images are decoded one at a time, so an archive never has to fit in
            memory.
        formats: the task's formats (``TaskSpec.formats``), those ``fmt=None`` chooses from.
        reader_options: the format's reader parameters (chexmask ``min_dice``, chexpert ``uncertain``, ...).

    Returns:
        JSON-able dict: format, cases, patients, classes, sites, image sizes, spacing (``spacing_mm``: min/max
        in mm over the images that have one, ``unknown``: how many have none; "unknown" when none has one,
        e.g. CheXpert, never 1 mm), masks, labels,
        split (parts with case/patient counts, or null), and ``problems`` (list of messages; empty = clean).
        A reader error stops the read and becomes the only problem, with zero counts.

    Example:
        >>> report = inspect("phantom", "xray-heart")
        >>> report["problems"], report["classes"]["normal"] > 0
        ([], True)
    """
    report: dict[str, Any] = {"path": str(path), "task": task,
                              "format": fmt or (PHANTOM if str(path) == PHANTOM else None), "problems": []}
    try:
        fmt, cases = _scan(path, task, classes, fmt, reader_options, formats)
        report["format"] = fmt or PHANTOM
        if classes is None:
            from bench.data.labels import order_classes

            classes = order_classes(c.labels.get("class") for c in cases if c.labels.get("class") is not None)
        report.update(summarise(cases, classes, sample))
    except BenchError as exc:
        report.update(cases=0, patients=0, problems=[str(exc)])
        return report
    report["split"] = _split_report(task, path, fmt, cases, report["problems"], reader_options)
    return report


def _scan(path, task, classes, fmt, reader_options, formats: Sequence[str] = ()) -> tuple[str | None, list[CaseRef]]:
    """(the format read, the refs); a folder without ``fmt`` is read as the format that recognises it."""
    from bench.data.stream import scan_cases

    if str(path) == PHANTOM:
        from bench.data.phantoms.xray import generate

        return None, scan_cases(PHANTOM, PHANTOM, make_phantom=generate)
    root = Path(path)
    if not root.exists():
        raise DataError(f"{root}: the data path must exist, but it does not.")
    if root.is_dir() and not any(root.iterdir()):
        raise DataError(f"{root}: the data folder must contain files, but it is empty.")
    if not fmt:
        from bench.data.formats import detect_format

        fmt = detect_format(task, formats, root)
    return fmt, scan_cases(str(root), fmt, classes, **reader_options)


def summarise(cases: Sequence[Case | CaseRef], classes: Sequence[str] = (), sample: int | None = None
              ) -> dict[str, Any]:
    """Counts and ranges over cases, plus problems that do not stop a read (duplicates, shape mismatches).

    ``cases`` may be refs (:class:`CaseRef`): ids, patients, sites and labels come from them; images are
    decoded one at a time (``sample``: only that many, evenly spread) for sizes, spacing and masks.
    """
    refs = [c if isinstance(c, CaseRef) else CaseRef.of(c) for c in cases]
    problems = []
    ids = Counter(c.id for c in refs)
    dup = [i for i, n in ids.items() if n > 1]
    if dup:
        problems.append(f"case ids must be unique, but {len(dup)} repeat (e.g. '{dup[0]}').")
    patients_per_site: dict[str, set] = {}
    for c in refs:
        patients_per_site.setdefault(c.site, set()).add(c.patient_id)
    shared = sum(1 for p in {c.patient_id for c in refs} if sum(p in s for s in patients_per_site.values()) > 1)
    if shared:
        problems.append(f"a patient should come from one site, but {shared} patient(s) appear at several sites.")
    unknown = sorted({str(c.labels.get("class")) for c in refs} - set(classes)) if classes else []
    if unknown:
        problems.append(f"labels must be among the task's classes {list(classes)}, but got {unknown}.")
    sizes, masks, spacing, unknown_spacing = Counter(), Counter(), [], 0
    picked = _spread(refs, sample)
    for ref in picked:  # one decoded case alive at a time
        case = ref.load()
        for name, m in case.masks.items():
            masks[name] += 1
            if np.shape(m) != np.shape(case.image):
                problems.append(f"case {case.id}: mask '{name}' must match the image shape "
                                f"{np.shape(case.image)}, but got {np.shape(m)}.")
        sizes["x".join(map(str, np.shape(case.image)))] += 1
        if case.spacing:
            spacing.append(case.spacing[:2])
        else:
            unknown_spacing += 1
        del case  # gone before the next one is decoded
    spacing_mm = np.array(spacing, float).reshape(-1, 2)
    images_per_patient = Counter(Counter(c.patient_id for c in refs).values())
    return {
        "cases": len(refs),
        "patients": len({c.patient_id for c in refs}),
        "images_per_patient": {str(k): v for k, v in sorted(images_per_patient.items())},
        "classes": dict(sorted(Counter(str(c.labels.get("class")) for c in refs).items())),
        "sites": {s or "(none)": {"cases": sum(c.site == s for c in refs), "patients": len(p),
                                   "classes": dict(sorted(Counter(str(c.labels.get("class")) for c in refs
                                                                  if c.site == s).items()))}
                  for s, p in sorted(patients_per_site.items())},
        "images_decoded": len(picked),
        "image_sizes": dict(sizes.most_common()),
        "spacing_mm": _spacing_report(spacing_mm, unknown_spacing),
        "masks": dict(sorted(masks.items())),
        "labels": sorted({k for c in refs for k in c.labels}),
        "problems": problems,
    }


def _spacing_report(spacing_mm: np.ndarray, unknown: int) -> dict | str | None:
    """Range of the known spacings, how many images have none, or "unknown" when no decoded image has one."""
    if not len(spacing_mm):
        return "unknown" if unknown else None
    report = {"min": spacing_mm.min(0).round(4).tolist(), "max": spacing_mm.max(0).round(4).tolist()}
    return {**report, "unknown": unknown} if unknown else report


def _spread(refs: Sequence[CaseRef], sample: int | None) -> Sequence[CaseRef]:
    """``sample`` refs evenly spread over ``refs`` (all of them when None or at least their number)."""
    if sample is None or sample >= len(refs):
        return refs
    if sample < 1:
        raise DataError(f"--sample must be at least 1 image, but got {sample}.")
    return [refs[i] for i in np.linspace(0, len(refs) - 1, sample).round().astype(int)]


def _split_report(task: str, path, fmt, cases: Sequence[CaseRef], problems: list[str],
                  reader_options: dict) -> dict | None:
    """Parts of the standard split (if one exists for this source) with counts; leakage becomes a problem."""
    source = PHANTOM
    if str(path) == PHANTOM:
        candidates = [standard_split_path(task, PHANTOM)]
    else:
        source = source_name(str(path), source_descriptor(str(path), fmt or "", "", reader_options))
        candidates = [standard_split_path(task, source), kept_split_path(task, source)]
    candidates = [c for c in candidates if c.is_file()]
    if not candidates:  # the first search makes one: what it would refuse is a problem now
        try:
            split = make_split(cases, task=task, source=source)
        except BenchError as exc:
            problems.append(f"a search splits the data first, but it cannot: {exc}")
            return None
        return {"file": "none yet (the first search makes one and keeps it)", "folds": len(split.folds),
                "parts": {name: {"cases": len(split.part(name))} for name in split.part_names}}
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
