"""Per-case 3D segmentation metrics for CT (lesions and lungs), then their mean over cases.

Boundary metrics use MONAI (``compute_hausdorff_distance``, ``compute_surface_dice``); connected lesions
use ``scipy.ndimage.label``. Masks are binary numpy arrays on a (z, y, x) grid with ``spacing`` in mm.

Empty-mask rules (a CT set has many lesion-free cases, so these decide the numbers):

* Lesion Dice, HD95 and surface Dice are averaged over the cases that *have* a lesion: on a lesion-free
  case "both empty" would score a perfect 1.0 for doing nothing and swamp the mean (with one normal case
  of six, an empty prediction already scored 0.17). Lesion-free cases are judged by ``case_specificity``
  (share of lesion-free cases with no predicted lesion voxel) and by the false-positive volume. A part
  without lesion-bearing cases gives NaN for the three lesion means.
* Per case, Dice: both empty → 1.0; exactly one empty → 0.0 (a missed lesion scores 0).
* HD95 (mm): both empty → 0.0; exactly one empty → the volume's diagonal in mm (the worst possible
  distance), so a missed lesion is penalised instead of silently dropped.
* Surface Dice (NSD) at ``tolerance_mm``: both empty → 1.0; exactly one empty → 0.0.
* False-positive volume outside the lungs (mL): predicted lesion voxels outside the *true* lung mask,
  times the voxel volume; 0.0 when nothing is predicted there. Lower is better.
* Lesion-wise sensitivity: share of true lesions (26-connected components) touched by at least one
  predicted voxel, pooled over all cases; NaN when no case has a lesion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

LESION_METRICS = ("lesion_dice", "lung_dice", "lesion_hd95", "lesion_nsd", "fp_outside_lung_ml",
                  "lesion_sensitivity", "case_specificity")
# Directions of these metrics are declared in bench.metrics (METRICS). Averaged over lesion-bearing cases
# only (see the empty-mask rules above).
LESION_CASE_METRICS = ("lesion_dice", "lesion_hd95", "lesion_nsd")


def dice(pred: np.ndarray, target: np.ndarray) -> float:
    p, t = pred.astype(bool), target.astype(bool)
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2.0 * (p & t).sum() / total)


def mean_lesion_dice(preds: Iterable[np.ndarray], truths: Iterable[np.ndarray]) -> float:
    """Lesion Dice averaged over the lesion-bearing cases only (NaN if none): ``summarise``'s rule, cheap
    enough to run every epoch."""
    scores = [dice(p, t) for p, t in zip(preds, truths) if t.any()]
    return float(np.mean(scores)) if scores else float("nan")


def _both_empty(p: np.ndarray, t: np.ndarray) -> tuple[bool, bool]:
    return (not p.any()) and (not t.any()), bool(p.any()) != bool(t.any())


def hd95(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float]) -> float:
    p, t = pred.astype(bool), target.astype(bool)
    both, one = _both_empty(p, t)
    if both:
        return 0.0
    if one:
        return float(np.linalg.norm(np.array(p.shape) * np.array(spacing)))
    from monai.metrics import compute_hausdorff_distance

    value = compute_hausdorff_distance(_bt(p), _bt(t), include_background=True, percentile=95,
                                       spacing=[float(s) for s in spacing])
    return float(value.item())


def surface_dice(pred: np.ndarray, target: np.ndarray, spacing: Sequence[float], tolerance_mm: float) -> float:
    p, t = pred.astype(bool), target.astype(bool)
    both, one = _both_empty(p, t)
    if both:
        return 1.0
    if one:
        return 0.0
    from monai.metrics import compute_surface_dice

    value = compute_surface_dice(_bt(p), _bt(t), class_thresholds=[tolerance_mm], include_background=True,
                                 spacing=[float(s) for s in spacing])
    return float(value.item())


def fp_volume_outside_ml(pred: np.ndarray, lung: np.ndarray, spacing: Sequence[float]) -> float:
    outside = pred.astype(bool) & ~lung.astype(bool)
    return float(outside.sum() * np.prod(spacing) / 1000.0)


def lesion_hits(pred: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """(true lesions touched by the prediction, true lesions) with 26-connectivity."""
    from scipy import ndimage

    labels, n = ndimage.label(target.astype(bool), structure=np.ones((3,) * target.ndim))
    if n == 0:
        return 0, 0
    hit = np.unique(labels[pred.astype(bool) & (labels > 0)])
    return len(hit), int(n)


def _bt(mask: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(mask))[None, None].float()


def case_metrics(
    lesion_pred: np.ndarray,
    lesion_true: np.ndarray,
    lung_pred: np.ndarray,
    lung_true: np.ndarray,
    spacing: Sequence[float],
    tolerance_mm: float = 5.0,
) -> dict[str, float]:
    """All per-case metrics of one volume (see the module docstring for the empty-mask rules)."""
    hits, n = lesion_hits(lesion_pred, lesion_true)
    return {
        "lesion_dice": dice(lesion_pred, lesion_true),
        "lung_dice": dice(lung_pred, lung_true),
        "lesion_hd95": hd95(lesion_pred, lesion_true, spacing),
        "lesion_nsd": surface_dice(lesion_pred, lesion_true, spacing, tolerance_mm),
        "fp_outside_lung_ml": fp_volume_outside_ml(lesion_pred, lung_true, spacing),
        "_hits": float(hits),
        "_lesions": float(n),
        "_clear": float(not lesion_pred.any()),
    }


def summarise(per_case: Iterable[dict[str, float]]) -> dict[str, float]:
    """Means over cases as the module docstring says; lesion sensitivity pooled over lesions."""
    rows = list(per_case)
    if not rows:
        return {name: float("nan") for name in LESION_METRICS}
    with_lesion = [r for r in rows if r["_lesions"] > 0]
    lesion_free = [r for r in rows if r["_lesions"] == 0]

    def mean(key: str, subset: list[dict[str, float]]) -> float:
        return float(np.mean([r[key] for r in subset])) if subset else float("nan")

    out = {k: mean(k, with_lesion if k in LESION_CASE_METRICS else rows) for k in rows[0] if not k.startswith("_")}
    lesions = sum(r["_lesions"] for r in rows)
    out["lesion_sensitivity"] = float(sum(r["_hits"] for r in rows) / lesions) if lesions else float("nan")
    out["case_specificity"] = mean("_clear", lesion_free)
    return out
