"""Helpers shared by the CT readers and the ct-lung task: HU sanity checks and a classical lung mask."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

AIR_THRESHOLD_HU = -320.0  # between lung parenchyma (≈ −850) and soft tissue (≈ 40); classic choice


def lung_mask_from_hu(hu: np.ndarray, threshold: float = AIR_THRESHOLD_HU) -> np.ndarray:
    """A rough lung mask for sources that ship lesion labels only (e.g. MSD Task06).

    Air-like voxels (< ``threshold``) not connected to the volume border are the lungs and airways; the two
    largest such components are kept and holes (vessels, nodules) filled slice by slice. Good enough to
    guide and to measure false positives outside the lungs; not a substitute for a real lung label.
    """
    air = np.asarray(hu) < threshold
    labels, n = ndimage.label(air)
    if n == 0:
        return np.zeros(air.shape, np.uint8)
    border = np.unique(np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(),
                                       labels[:, -1].ravel(), labels[:, :, 0].ravel(), labels[:, :, -1].ravel()]))
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    sizes[border[border > 0] - 1] = 0  # outside air touches the border
    keep = [i + 1 for i in np.argsort(sizes)[::-1][:2] if sizes[i] > 0]
    lung = np.isin(labels, keep)
    lung = np.stack([ndimage.binary_fill_holes(s) for s in lung])
    return lung.astype(np.uint8)


def hu_summary(hu: np.ndarray) -> dict[str, float]:
    """Robust HU range (1st/99th percentile) plus min/max, as plain floats for JSON."""
    lo, hi = np.percentile(hu, [1, 99])
    return {"min": float(hu.min()), "p1": float(lo), "p99": float(hi), "max": float(hu.max())}
