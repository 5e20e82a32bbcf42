"""`bench datasets inspect` for CT sources: what a folder holds, as a JSON-able dict without patient data.

Volumes are read one at a time (each reader's ``iter_cases``) and folded into running counts, ranges and
an HU histogram, so peak memory is one volume whatever the number of cases.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench.data.case import Case
from bench.data.formats import FORMATS
from bench.errors import DataError

HU_RANGE = (-32768, 32767)  # the readers hand out int16 HU; the histogram has one bin per HU value
AXES = ("z", "y", "x")


def inspect_ct(path: str | Path, data_format: str, cases: Iterable[Case] | None = None) -> dict:
    """Summarise a CT data folder read by the registered format ``data_format`` (the task resolves what the
    user typed: ``TaskSpec.resolve_format``), or the given ``cases`` (the built-in phantom: ``data_format``
    is then only the report's name for them).

    Returns counts (cases, patients, classes), per-axis spacing and shape ranges, the HU range (exact
    percentiles over every voxel), slice counts, which masks exist and every problem the reader noted, keyed
    by case id. Patient names and ids never appear: patients are only counted. Raises DataError (naming the
    file) on unreadable input.

    Example:
        >>> report = inspect_ct("phantom_ct_dicom", "ct_dicom")  # doctest: +SKIP
        >>> report["cases"], report["spacing_mm"]["z"]           # doctest: +SKIP
    """
    fmt = data_format
    if cases is None:
        reader = FORMATS.create(fmt)
        cases = reader.iter_cases(path, ()) if hasattr(reader, "iter_cases") else iter(reader.read(path, ()))
    n, patients, classes, sites, masks, lesions = 0, set(), Counter(), Counter(), Counter(), 0
    spacing_lo = spacing_hi = shape_lo = shape_hi = None
    slices_total = 0
    hu_counts = np.zeros(HU_RANGE[1] - HU_RANGE[0] + 1, np.int64)
    problems: list[dict] = []
    for case in cases:  # one volume alive at a time: ``case`` is dropped before the next is read
        n += 1
        patients.add(case.patient_id)
        classes[str(case.labels.get("class", ""))] += 1
        if case.site:
            sites[case.site] += 1
        spacing, shape = np.asarray(case.spacing, float), np.asarray(case.image.shape, int)
        spacing_lo = spacing if spacing_lo is None else np.minimum(spacing_lo, spacing)
        spacing_hi = spacing if spacing_hi is None else np.maximum(spacing_hi, spacing)
        shape_lo = shape if shape_lo is None else np.minimum(shape_lo, shape)
        shape_hi = shape if shape_hi is None else np.maximum(shape_hi, shape)
        slices_total += int(shape[0])
        hu = np.clip(np.round(np.asarray(case.image)), *HU_RANGE).astype(np.int64).ravel()
        hu_counts += np.bincount(hu - HU_RANGE[0], minlength=hu_counts.size)
        del hu
        problems += [{"case": case.id, "problem": p} for p in case.meta.get("problems", [])]
        for name, mask in case.masks.items():
            masks[name] += 1
            if mask.shape != case.image.shape:
                problems.append({"case": case.id,
                                 "problem": f"mask '{name}' shape {mask.shape} != image {case.image.shape}"})
        lesions += bool(case.masks.get("lesion") is not None and case.masks["lesion"].any())
        del case
    if not n:
        raise DataError(f"{path}: a data set must hold at least one case, but the {fmt} reader found none.")
    return {
        "format": fmt,
        "path": str(Path(path).name),
        "cases": n,
        "patients": len(patients),
        "classes": dict(classes),
        "sites": dict(sites),
        "spacing_mm": {a: {"min": float(spacing_lo[i]), "max": float(spacing_hi[i])} for i, a in enumerate(AXES)},
        "shape": {a: {"min": int(shape_lo[i]), "max": int(shape_hi[i])} for i, a in enumerate(AXES)},
        "slices": {"min": int(shape_lo[0]), "max": int(shape_hi[0]), "total": slices_total},
        "hu": hu_summary_from_counts(hu_counts),
        "masks": dict(masks),
        "cases_with_lesions": lesions,
        "problems": problems,
    }


def hu_summary_from_counts(counts: np.ndarray) -> dict[str, float]:
    """:func:`bench.data.ct_io.hu_summary` of the voxels a per-HU histogram counts: the same min, max and
    1st/99th percentiles (linear interpolation, as ``np.percentile``), without holding the voxels."""
    cum = np.cumsum(counts)
    total = int(cum[-1])

    def value_at(k: int) -> float:  # the k-th smallest voxel (0-based)
        return float(np.searchsorted(cum, k, side="right") + HU_RANGE[0])

    def percentile(q: float) -> float:
        pos = q / 100 * (total - 1)
        lo, frac = int(np.floor(pos)), pos - np.floor(pos)
        return float(value_at(lo) + frac * (value_at(min(lo + 1, total - 1)) - value_at(lo)))

    return {"min": value_at(0), "p1": percentile(1), "p99": percentile(99), "max": value_at(total - 1)}
