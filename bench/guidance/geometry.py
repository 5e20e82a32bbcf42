"""Tensor geometry shared by the guidance strategies: bounding boxes, differentiable crops and their
inverse, box masks, mask pooling and dilation. Works on 2D (N, C, H, W) and 3D (N, C, D, H, W) tensors.

Reference: Jaderberg et al., "Spatial transformer networks", NeurIPS 2015 (differentiable crops by grid
sampling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bounding_boxes(masks: torch.Tensor, margin: float = 0.0, threshold: float = 0.5):
    """Per-sample bounding boxes of ``masks > threshold``, widened by ``margin`` × side on each end.

    Returns ``(lo, hi)``, two long tensors of shape (N, spatial_dims) with inclusive pixel bounds in
    tensor axis order (H, W) or (D, H, W). A sample with an empty mask gets the whole image.
    """
    fg = masks.flatten(0, 1) > threshold if masks.shape[1] == 1 else (masks > threshold).any(1)
    dims = fg.dim() - 1
    los, his = [], []
    for axis in range(dims):
        size = fg.shape[axis + 1]
        other = [a + 1 for a in range(dims) if a != axis]
        present = fg.any(dim=other) if other else fg
        idx = torch.arange(size, device=masks.device)
        lo = torch.where(present, idx, size).amin(1)
        hi = torch.where(present, idx, -1).amax(1)
        empty = hi < 0
        pad = round(margin * size)
        lo = torch.where(empty, 0, (lo - pad).clamp_min(0))
        hi = torch.where(empty, size - 1, (hi + pad).clamp_max(size - 1))
        los.append(lo)
        his.append(hi)
    return torch.stack(los, 1), torch.stack(his, 1)


def _affine(lo: torch.Tensor, hi: torch.Tensor, sizes: tuple[int, ...], dtype) -> torch.Tensor:
    """Theta mapping the output grid onto the box [lo, hi] (align_corners=False convention)."""
    n, dims = lo.shape
    sizes_t = torch.tensor(sizes, dtype=dtype, device=lo.device)
    a = 2 * lo.to(dtype) / sizes_t - 1  # left edge of pixel lo
    b = 2 * (hi.to(dtype) + 1) / sizes_t - 1  # right edge of pixel hi
    scale, shift = (b - a) / 2, (a + b) / 2
    theta = torch.zeros(n, dims, dims + 1, dtype=dtype, device=lo.device)
    # affine_grid orders coordinates x (last axis) first, so reverse the tensor axes.
    for row, axis in enumerate(reversed(range(dims))):
        theta[:, row, row] = scale[:, axis]
        theta[:, row, dims] = shift[:, axis]
    return theta


def crop_to_boxes(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Crop each sample to its box and resample it (bi/trilinear) back to the input size; differentiable."""
    theta = _affine(lo, hi, tuple(x.shape[2:]), x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def uncrop_from_boxes(y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, fill: float) -> torch.Tensor:
    """Inverse of ``crop_to_boxes``: paste each crop back into its box, ``fill`` outside the box."""
    theta = _affine(lo, hi, tuple(y.shape[2:]), y.dtype)
    dims = lo.shape[1]
    inv = torch.zeros_like(theta)
    diag = torch.diagonal(theta[:, :, :dims], dim1=1, dim2=2)
    inv[:, :, :dims] = torch.diag_embed(1 / diag)
    inv[:, :, dims] = -theta[:, :, dims] / diag
    grid = F.affine_grid(inv, list(y.shape), align_corners=False)
    pasted = F.grid_sample(y, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(box_masks(lo, hi, tuple(y.shape[2:]))[:, None], pasted, torch.full_like(pasted, fill))


def box_masks(lo: torch.Tensor, hi: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Boolean (N, *sizes) masks that are True inside each sample's box."""
    inside = torch.ones((lo.shape[0],) + sizes, dtype=torch.bool, device=lo.device)
    for axis, size in enumerate(sizes):
        idx = torch.arange(size, device=lo.device)
        ok = (idx[None] >= lo[:, axis, None]) & (idx[None] <= hi[:, axis, None])  # (N, size)
        shape = [lo.shape[0]] + [1] * len(sizes)
        shape[axis + 1] = size
        inside = inside & ok.view(shape)
    return inside


def pool_to(mask: torch.Tensor, size) -> torch.Tensor:
    """Average-pool a mask to a feature map's spatial size."""
    pool = F.adaptive_avg_pool3d if mask.dim() == 5 else F.adaptive_avg_pool2d
    return pool(mask, size)


def dilate(mask: torch.Tensor, margin: int) -> torch.Tensor:
    """Binary dilation by ``margin`` pixels/voxels (a max pool with a (2·margin + 1)-wide window)."""
    if margin <= 0:
        return mask
    pool = F.max_pool3d if mask.dim() == 5 else F.max_pool2d
    return pool(mask, kernel_size=2 * margin + 1, stride=1, padding=margin)
