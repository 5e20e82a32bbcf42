"""The training patch planned from a segmentation data set's fingerprint, as nnU-Net v2's experiment planner
does it (Isensee et al., Nature Methods 2021; ``ExperimentPlanner``), in a simplified form.

Fingerprint: each case's shape and spacing. Target spacing: the median spacing (or the one given). Patch: the
median shape in voxels at that spacing, each axis rounded down to a multiple of ``MULTIPLE`` (the networks
halve every axis four times; at least ``MULTIPLE``), then, while its voxels exceed the budget (the preset's
``patch_budget``: what one patch may cost in memory), the axis with the largest physical extent (voxels x
spacing) loses ``MULTIPLE`` voxels, so the patch keeps the data's proportions in mm as nnU-Net's does.

Example:
    >>> plan_patch((24, 48, 48), (3.0, 1.5, 1.5), budget=16 * 32 * 32)
    (16, 32, 32)
    >>> plan_patch((64, 256, 256), (2.5, 0.8, 0.8), budget=32 * 96 * 96)
    (32, 96, 96)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MULTIPLE = 16  # every patch side a multiple of this: four halvings of the MONAI/smp networks


def median_shape(shapes: Sequence[Sequence[int]], spacings: Sequence[Sequence[float]],
                 target: Sequence[float]) -> tuple[int, ...]:
    """The median of the cases' shapes once resampled to ``target`` spacing (voxels)."""
    sizes = [[n if n == 1 else max(1, round(n * s / t)) for n, s, t in zip(shape, sp, target)]
             for shape, sp in zip(shapes, spacings)]
    return tuple(int(v) for v in np.median(np.array(sizes), axis=0))


def plan_patch(shape: Sequence[int], spacing: Sequence[float], budget: int) -> tuple[int, ...]:
    """The (z, y, x) patch for data whose median shape at its target spacing is ``shape`` (see module doc)."""
    patch = [max(MULTIPLE, int(n) // MULTIPLE * MULTIPLE) for n in shape]
    while int(np.prod(patch)) > budget:
        shrinkable = [i for i, n in enumerate(patch) if n > MULTIPLE]
        if not shrinkable:
            break
        axis = max(shrinkable, key=lambda i: (patch[i] * spacing[i], patch[i]))
        patch[axis] -= MULTIPLE
    return tuple(patch)
