"""`bench datasets inspect` for segmentation folders (nnU-Net v2 raw, MSD): what they hold, which labels lie
inside which, and every problem, each one line naming its file.

Cases are decoded one at a time (``SegDataset.load``) and folded into running counts and ranges, so peak
memory is one case whatever the size of the data set. Patients are counted, never listed.

Containment: the share of label A's voxels that lie inside label B's *filled* region (B with its holes
filled in 3D and slice by slice, so a tumour labelled 2 that replaces liver voxels counts as inside the
liver labelled 1). A share near 1 says B encloses A: B can guide the segmentation of A.

Example:
    >>> report = inspect_seg("Dataset501_Organ")      # doctest: +SKIP
    >>> report["containment"]["lesion in organ"]       # doctest: +SKIP
    1.0
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.seg_dataset import LABEL_KEY, SegDataset, list_seg_dataset
from bench.errors import BenchError, DataError

# A label counts as enclosed by another when at least this share of its voxels lies in the other's region.
ENCLOSED_SHARE = 0.9


def inspect_seg(root: str | Path, patient_regex: str | None = None, strict: bool = True) -> dict:
    """Summarise a segmentation folder: layout, channels, labels, cases, 2D/3D, shape and spacing ranges, voxels
    per label, containment per pair of labels, splits_final.json's folds, and problems.

    Args:
        root: the folder holding dataset.json (or its parent holding one Dataset*/Task* folder).
        patient_regex: one group over the case id naming the patient (counted, never listed).
        strict: raise one DataError, one line per problem, when there are problems (what the CLI shows,
            exit 2); False returns them in ``report["problems"]``.

    Problems: a missing label or channel file, a channel or label whose shape differs from channel 0's, a
    label value dataset.json does not name, numTraining disagreeing with the files, region-based labels,
    an unreadable file, an inconsistent splits_final.json.

    Raises:
        DataError: ``strict`` and problems found, or the folder cannot be listed at all (no dataset.json,
            malformed channels/labels, no labelled case).
    """
    ds, problems = list_seg_dataset(root, patient_regex)
    report = {
        "path": str(ds.root), "layout": ds.layout, "dims": ds.dims, "file_ending": ds.file_ending,
        "channels": list(ds.channels), "labels": dict(ds.labels), "cases": len(ds.case_ids),
        "test_cases": len(ds.test_ids), "num_training": ds.num_training,
        "patients": len({ds.patient_of(c) for c in ds.case_ids + ds.test_ids}),
    }
    stats = _Stats(ds)
    for case_id in ds.case_ids + ds.test_ids:  # one decoded case alive at a time
        try:
            case = ds.load(case_id)
        except BenchError as exc:
            problems.append(str(exc))
            continue
        stats.add(case)
        del case
    report.update(stats.summary())
    report["splits_final"] = _splits_report(ds, problems)
    report["problems"] = problems
    if strict and problems:
        raise DataError("\n".join(problems))
    return report


def containment(ds: SegDataset, inner: int, outer: int) -> float | None:
    """Share of label value ``inner``'s voxels (over every training case) inside ``outer``'s filled region;
    None when no case has ``inner``. Reads one case at a time."""
    inside = total = 0
    for case_id in ds.case_ids:
        label = ds.load(case_id).masks[LABEL_KEY]
        a = label == inner
        n = int(a.sum())
        if n:
            total += n
            inside += int((a & filled_region(label == outer)).sum())
    return inside / total if total else None


def filled_region(mask: np.ndarray) -> np.ndarray:
    """``mask`` with holes filled in its own dimension and, for volumes, also slice by slice along axis 0 (a
    lesion at an organ's surface is open in 3D but often enclosed within its axial slices)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    if not mask.any():
        return mask
    filled = ndimage.binary_fill_holes(mask)
    if mask.ndim == 3:
        filled |= np.stack([ndimage.binary_fill_holes(s) for s in mask])
    return filled


class _Stats:
    """Running counts and ranges over decoded cases."""

    def __init__(self, ds: SegDataset):
        self.ds = ds
        self.values = {v: k for k, v in ds.labels.items()}
        self.voxels = dict.fromkeys(ds.labels, 0)
        self.cases_with = dict.fromkeys(ds.labels, 0)
        fg = [v for v in ds.labels.values() if v != 0]
        self.pairs = [(a, b) for a in fg for b in fg if a != b]
        self.inside = dict.fromkeys(self.pairs, 0)
        self.shape_lo = self.shape_hi = self.spacing_lo = self.spacing_hi = None
        self.decoded = self.no_spacing = 0

    def add(self, case) -> None:
        self.decoded += 1
        label = case.masks[LABEL_KEY]
        shape = np.array(label.shape)
        self.shape_lo = shape if self.shape_lo is None else np.minimum(self.shape_lo, shape)
        self.shape_hi = shape if self.shape_hi is None else np.maximum(self.shape_hi, shape)
        if case.spacing is None:
            self.no_spacing += 1
        else:
            sp = np.array(case.spacing, float)
            self.spacing_lo = sp if self.spacing_lo is None else np.minimum(self.spacing_lo, sp)
            self.spacing_hi = sp if self.spacing_hi is None else np.maximum(self.spacing_hi, sp)
        counts = np.bincount(label.ravel().astype(np.int64), minlength=max(self.values) + 1)
        for value, name in self.values.items():
            self.voxels[name] += int(counts[value])
            self.cases_with[name] += bool(counts[value])
        regions = {}
        for a, b in self.pairs:
            if counts[a] and counts[b]:
                if b not in regions:
                    regions[b] = filled_region(label == b)
                self.inside[(a, b)] += int(((label == a) & regions[b]).sum())

    def summary(self) -> dict:
        axes = "zyx"[-len(self.shape_lo):] if self.shape_lo is not None else ""
        share = {}
        for a, b in self.pairs:
            total = self.voxels[self.values[a]]
            share[f"{self.values[a]} in {self.values[b]}"] = round(self.inside[(a, b)] / total, 4) if total else None
        enclosed = [{"inner": self.values[a], "outer": self.values[b], "share": share[f"{self.values[a]} in "
                                                                                      f"{self.values[b]}"]}
                    for a, b in self.pairs
                    if (share[f"{self.values[a]} in {self.values[b]}"] or 0) >= ENCLOSED_SHARE]
        return {
            "cases_decoded": self.decoded,
            "shape": ({a: {"min": int(self.shape_lo[i]), "max": int(self.shape_hi[i])} for i, a in enumerate(axes)}
                      if self.decoded else None),
            "spacing_mm": ({a: {"min": float(self.spacing_lo[i]), "max": float(self.spacing_hi[i])}
                            for i, a in enumerate(axes)} if self.spacing_lo is not None else "unknown"),
            "label_voxels": self.voxels,
            "cases_with_label": self.cases_with,
            "containment": share,
            "enclosed": enclosed,
        }


def _splits_report(ds: SegDataset, problems: list[str]) -> dict | None:
    """Folds of splits_final.json beside dataset.json (None when absent); an inconsistent file is a problem."""
    from bench.data.seg_splits import fold_of_cases, read_splits_final

    try:
        folds = read_splits_final(ds.root)
        if folds is None:
            return None
        fold_of = fold_of_cases(ds.root, ds.case_ids)
    except BenchError as exc:
        problems.append(str(exc))
        return {"valid": False}
    return {"valid": True, "folds": len(folds), "val_cases": [len(f["val"]) for f in folds],
            "outside_folds": len(set(ds.case_ids) - set(fold_of))}
