"""Radiograph cases to the cached arrays a 2D heart task trains on, one case at a time.

``radiograph_rows`` is the streaming form of the x-ray task's preprocessing: each case is loaded from
disk (``CaseRef.load``), resized to ``size``² (area for the image, nearest for the heart mask),
standardised per image, and handed to ``bench.data.cache.cached_arrays`` as one row; the full-size
image is dropped before the next one is read. Arrays: image (N,1,S,S) float32, heart (N,1,S,S) uint8,
label (N,) int64 = index in ``classes``, thorax_width (N,) float32 in resized pixels (NaN without lung
masks), case_id and patient_id (N,) strings.

Example:
    >>> from bench.data.cache import cached_arrays
    >>> refs = scan_cases(folder, "chexmask", classes)  # doctest: +SKIP
    >>> arrays = cached_arrays(key, lambda: radiograph_rows(refs, 256, classes))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from bench.data.cache import RowStream
from bench.data.case import Case
from bench.errors import DataError


def radiograph_rows(refs: Sequence, size: int, classes: Sequence[str]) -> RowStream:
    """A RowStream over ``refs`` (CaseRef or Case); labels must be in ``classes`` (checked before any decode)."""
    index = {name: k for k, name in enumerate(classes)}
    unknown = sorted({str(r.labels.get("class")) for r in refs} - set(index))
    if unknown:
        raise DataError(f"every label must be one of the classes {list(classes)}, but the data has {unknown}. "
                        "Resolve the classes from the data (bench.data.labels.resolve_classes).")
    whole = {
        "label": np.array([index[r.labels["class"]] for r in refs], np.int64),
        "case_id": np.array([r.id for r in refs]),
        "patient_id": np.array([r.patient_id for r in refs]),
    }
    return RowStream(len(refs), _rows(refs, size), whole)


def _rows(refs: Sequence, size: int) -> Iterator[dict[str, np.ndarray]]:
    for ref in refs:
        case = ref if isinstance(ref, Case) else ref.load()
        yield preprocess_radiograph(case, size)
        del case  # the full-size image must not outlive its row


def preprocess_radiograph(case: Case, size: int) -> dict[str, np.ndarray]:
    """One case -> image (1,S,S) standardised, heart (1,S,S) 0/1, thorax_width () in resized pixels."""
    import torch
    import torch.nn.functional as F

    if "heart" not in case.masks:
        raise DataError(
            f"case {case.id}: xray-heart trains a heart segmenter, so every image needs a heart mask, but "
            f"this one has masks {sorted(case.masks)}. Add mask_heart to the labels file or pick a source with masks."
        )
    image = torch.from_numpy(np.asarray(case.image, np.float32))[None, None]
    heart = torch.from_numpy(np.asarray(case.masks["heart"], np.float32))[None, None]
    image = F.interpolate(image, size=(size, size), mode="area")[0]
    heart = F.interpolate(heart, size=(size, size), mode="nearest")[0]
    lungs = [np.asarray(m) > 0 for n, m in case.masks.items() if n.startswith("lung")]
    # thoracic width = outer lung borders, rescaled to the resized image's pixels
    width = _outer_width(np.logical_or.reduce(lungs)) * size / case.image.shape[-1] if lungs else np.nan
    mean, std = image.mean(), image.std().clamp_min(1e-6)
    return {
        "image": ((image - mean) / std).numpy().astype(np.float32),
        "heart": (heart > 0.5).numpy().astype(np.uint8),
        "thorax_width": np.asarray(width if width else np.nan, np.float32),
    }


def _outer_width(mask: np.ndarray) -> float:
    cols = np.flatnonzero(mask.any(axis=0))
    return float(cols[-1] - cols[0] + 1) if len(cols) else 0.0
