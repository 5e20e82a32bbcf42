"""`bench datasets inspect` for segmentation folders (nnU-Net v2 raw, MSD): what they hold, which labels lie
inside which, and every problem, each one line naming its file.

Cases are decoded one at a time (``SegDataset.load``) and folded into running counts and ranges, so peak
memory is one case whatever the size of the data set. Patients are counted, never listed.

Organs: per label, the other label that makes up the largest share of its surface (:func:`border_areas`,
in mm²), and whether that is an organ that guides it (:func:`organs`): a tumour on the kidney's surface
borders the kidney though it is no hole in it.

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
# The organ of a target is the foreground label that makes up the largest share of the target's surface
# (:func:`border_areas`); it guides the target when that share is at least GUIDE_MIN_BORDER and the target's
# surface is at most ORGAN_SURFACE_RATIO of the organ's (a lesion is smaller than its organ, while two
# neighbouring structures of like size, prostate PZ/TZ or hippocampus head/body, guide neither).
# Chosen on the layouts of real data sets, drawn as phantoms (scripts/seg_border_layouts.py prints them): a
# tumour enclosed in its organ 1.00; a tumour clipped to the organ touching its surface 0.72; exophytic, centre
# on the organ surface 0.41 (KiTS' typical renal mass), a quarter inside 0.21, an eighth inside 0.12 (no
# guide); two halves of one structure (hippocampus) 0.10 each; a core and its shell (prostate TZ/PZ)
# 0.52/0.33, but surface ratios 0.64/1.6, so neither guides the other.
GUIDE_MIN_BORDER = 0.2
ORGAN_SURFACE_RATIO = 0.5
PLAN_BUDGET = 16 * 48 * 48  # voxels of the patch inspect plans: the segmentation task's default patch_budget


def inspect_seg(root: str | Path, patient_regex: str | None = None, strict: bool = True) -> dict:
    """Summarise a segmentation folder: layout, channels, labels, cases, 2D/3D, shape and spacing ranges, voxels
    per label, containment per pair of labels, splits_final.json's folds, and problems.

    Args:
        root: the folder holding dataset.json (or its parent holding one Dataset*/Task* folder).
        patient_regex: one group over the case id naming the patient (counted, never listed).
        strict: raise one DataError, one line per problem, when there are problems (what the CLI shows,
            exit 2); False returns them in ``report["problems"]``.

    Problems: a missing label or channel file, a channel or label whose shape differs from channel 0's, a
    label value dataset.json does not name, numTraining disagreeing with the files, region-based labels
    without their regions_class_order, an unreadable file, an inconsistent splits_final.json.

    Raises:
        DataError: ``strict`` and problems found, or the folder cannot be listed at all (no dataset.json,
            malformed channels/labels, no labelled case).
    """
    ds, problems = list_seg_dataset(root, patient_regex)
    report = {
        "path": str(ds.root), "layout": ds.layout, "dims": ds.dims, "file_ending": ds.file_ending,
        "channels": list(ds.channels), "labels": dict(ds.labels), "cases": len(ds.case_ids),
        **({"regions": {k: list(v) for k, v in ds.regions.items()},
            "regions_class_order": list(ds.regions_class_order)} if ds.regions else {}),
        "test_cases": len(ds.test_ids) + len(ds.unlabelled_test_ids), "test_cases_labelled": len(ds.test_ids),
        "test_scored": _test_scored(ds), "num_training": ds.num_training,
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
    report["plan"] = stats.plan()
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


def border_areas(label: np.ndarray, values: list[int], spacing=None) -> np.ndarray:
    """``areas[i, j]``: the surface between label ``values[i]``'s voxels and label ``values[j]``'s (voxel faces,
    in mm² with ``spacing``, else in faces; symmetric, zero on the diagonal). The image's own edges border
    nothing (what lies beyond them is unknown). Divided by its row's sum, a row says what share of a label's
    surface each other label (or background, value 0) makes up: where a tumour borders its organ.

    Example:
        >>> lab = np.array([[0, 1, 1, 2]])
        >>> border_areas(lab, [0, 1, 2]).tolist()
        [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    """
    n = len(values)
    lut = np.full(max(max(values), int(label.max(initial=0))) + 1, n, np.int64)  # n: a value not listed
    lut[np.asarray(values, np.int64)] = np.arange(n)
    index = lut[np.asarray(label, np.int64)].astype(np.uint8 if n < 255 else np.int32)
    sp = np.ones(label.ndim) if spacing is None else np.asarray(spacing, float)
    areas = np.zeros((n + 1, n + 1), np.float64)
    for axis, size in enumerate(label.shape):
        if size < 2:
            continue
        lo = index[(slice(None),) * axis + (slice(None, -1),)]
        hi = index[(slice(None),) * axis + (slice(1, None),)]
        differ = lo != hi
        pairs = lo[differ].astype(np.int64) * (n + 1) + hi[differ]
        counts = np.bincount(pairs, minlength=(n + 1) ** 2).reshape(n + 1, n + 1)
        areas += (counts + counts.T) * float(np.prod(np.delete(sp, axis)))
    return areas[:n, :n]


def border_shares(areas: np.ndarray) -> np.ndarray:
    """Row-normalised :func:`border_areas` (a label that borders nothing: a row of zeros)."""
    total = areas.sum(axis=1, keepdims=True)
    return np.where(total > 0, areas / np.maximum(total, 1e-12), 0.0)


def organs(areas: np.ndarray, labels: dict[str, int], min_share: float = GUIDE_MIN_BORDER) -> dict[str, dict]:
    """Per foreground label (``labels`` name -> value, in the order of ``areas``' rows): the foreground label
    it borders most (``organ``, None when it borders none), the share of its surface that organ makes up
    (``share``, vs background and other labels) and whether that organ guides it (``guide``: share >=
    ``min_share`` and the label's surface at most ORGAN_SURFACE_RATIO of the organ's)."""
    names = list(labels)
    shares, surface = border_shares(areas), areas.sum(axis=1)
    out = {}
    for t, name in enumerate(names):
        if labels[name] == 0:
            continue
        others = [j for j, other in enumerate(names) if labels[other] != 0 and j != t and shares[t, j] > 0]
        if not others:
            out[name] = {"organ": None, "share": 0.0, "guide": False}
            continue
        j = max(others, key=lambda k: shares[t, k])
        guide = bool(shares[t, j] >= min_share and surface[t] <= ORGAN_SURFACE_RATIO * surface[j])
        out[name] = {"organ": names[j], "share": round(float(shares[t, j]), 4), "guide": guide}
    return out


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
        self.areas = np.zeros((len(ds.labels), len(ds.labels)))
        self.shapes: list[tuple[int, ...]] = []
        self.spacings: list[tuple[float, ...]] = []

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
        values = list(self.ds.labels.values())
        spacing = None if case.spacing is None else tuple(case.spacing)[-label.ndim:]
        self.shapes.append(tuple(label.shape))
        self.spacings.append(spacing or (1.0,) * label.ndim)
        self.areas += border_areas(label, values, spacing)
        regions = {}
        for a, b in self.pairs:
            if counts[a] and counts[b]:
                if b not in regions:
                    regions[b] = filled_region(label == b)
                self.inside[(a, b)] += int(((label == a) & regions[b]).sum())

    def plan(self) -> dict | None:
        """The fingerprint's plan (``bench.data.seg_plan``): median spacing, median shape at it, and the patch
        planned within the segmentation task's default budget (a preset's ``patch_budget`` may differ)."""
        from bench.data.seg_plan import median_shape, plan_patch

        if not self.shapes or len(self.shapes[0]) != 3:
            return None  # 2D images: trained on patch_2d slices, nothing to plan
        spacing = [float(s) for s in np.median(np.array(self.spacings), axis=0)]
        shape = median_shape(self.shapes, self.spacings, spacing)
        return {"spacing_mm": [round(s, 4) for s in spacing], "median_shape": list(shape),
                "patch": list(plan_patch(shape, spacing, PLAN_BUDGET)), "patch_budget": PLAN_BUDGET}

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
            # per label: the label it borders most, that label's share of its surface, whether it guides it
            "organs": organs(self.areas, self.ds.labels),
        }


def _test_scored(ds: SegDataset) -> str:
    """Which imagesTs cases a run scores: the labelled ones (the test part), never those without labels."""
    labelled, bare = len(ds.test_ids), len(ds.unlabelled_test_ids)
    if not labelled and not bare:
        return "no imagesTs cases: the test part is held out of the training cases"
    scored = (f"the {labelled} with labelsTs are the test part, scored (logged only)" if labelled
              else "none scored: the test part is held out of the training cases")
    return scored + (f"; {bare} without labels in labelsTs are not scored" if bare else "")


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
