"""`bench datasets inspect` for CT sources: what a folder holds, as a JSON-able dict without patient data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from bench.data.ct_io import hu_summary
from bench.data.formats import FORMAT_ALIASES, FORMATS, resolve_format

# Kept for callers of the old name; the one alias table is bench.data.formats.FORMAT_ALIASES.
CT_FORMAT_ALIASES = FORMAT_ALIASES["ct-lung"]


def inspect_ct(path: str | Path, data_format: str) -> dict:
    """Summarise a CT data folder read by ``data_format`` (a ct-lung format or alias, see ``resolve_format``).

    Returns counts (cases, patients, classes), per-axis spacing and shape ranges, the HU range, slice counts,
    which masks exist and every problem the reader noted, keyed by case id. Patient names and ids never
    appear: patients are only counted. Raises DataError (naming the file) on unreadable input.

    Example:
        >>> report = inspect_ct("phantom_ct_dicom", "ct_dicom")  # doctest: +SKIP
        >>> report["cases"], report["spacing_mm"]["z"]           # doctest: +SKIP
    """
    fmt = resolve_format("ct-lung", data_format)
    cases = FORMATS.create(fmt).read(path, ())
    spacing = np.array([c.spacing for c in cases], float)
    shapes = np.array([c.image.shape for c in cases], int)
    hu = np.concatenate([np.asarray(c.image).ravel()[:: max(1, c.image.size // 200_000)] for c in cases])
    problems = [{"case": c.id, "problem": p} for c in cases for p in c.meta.get("problems", [])]
    for c in cases:
        for name, mask in c.masks.items():
            if mask.shape != c.image.shape:
                problems.append({"case": c.id, "problem": f"mask '{name}' shape {mask.shape} != image {c.image.shape}"})
    axes = ("z", "y", "x")
    return {
        "format": fmt,
        "path": str(Path(path).name),
        "cases": len(cases),
        "patients": len({c.patient_id for c in cases}),
        "classes": dict(Counter(str(c.labels.get("class", "")) for c in cases)),
        "sites": dict(Counter(c.site for c in cases if c.site)),
        "spacing_mm": {a: {"min": float(spacing[:, i].min()), "max": float(spacing[:, i].max())}
                       for i, a in enumerate(axes)},
        "shape": {a: {"min": int(shapes[:, i].min()), "max": int(shapes[:, i].max())} for i, a in enumerate(axes)},
        "slices": {"min": int(shapes[:, 0].min()), "max": int(shapes[:, 0].max()), "total": int(shapes[:, 0].sum())},
        "hu": hu_summary(hu),
        "masks": dict(Counter(name for c in cases for name in c.masks)),
        "cases_with_lesions": int(sum(bool(c.masks.get("lesion") is not None and c.masks["lesion"].any())
                                      for c in cases)),
        "problems": problems,
    }
