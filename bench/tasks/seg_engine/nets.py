"""Networks of the segmentation engine (ct-lung, segmentation): shared ``SEG_MODELS`` entries, 3D or 2D run
slice by slice.

3D networks come from the shared registry (``SEG_MODELS.create(name, spatial_dims=3, ...)``); 2D networks
(smp, or a MONAI entry asked for with ``task_params.family="2d"``) are wrapped in :class:`SliceNet`, which
treats a depth-1 patch as a 2D image. Every network this module returns takes and returns 5-D tensors
``(B, C, D, H, W)``, so patch sampling, sliding-window inference and guidance are written once for both.
"""

from __future__ import annotations

import torch

from bench.errors import ConfigError
from bench.models import SEG_MODELS

FAMILIES = ("3d", "2d")
# Keyword the MONAI factories use for their base width (``task_params.width``).
_WIDTH_KEYS = ("base_channels", "init_filters")


class SliceNet(torch.nn.Module):
    """Runs a 2D network on depth-1 patches: (B, C, 1, H, W) → (B, K, 1, H, W)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, d, h, w = x.shape
        flat = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
        out = self.net(flat)
        return out.reshape(b, d, -1, h, w).permute(0, 2, 1, 3, 4)


def _dims(name: str) -> tuple[int, ...]:
    if name not in SEG_MODELS:
        raise ConfigError(f"seg_arch must be a registered segmenter {SEG_MODELS.names()}, but got '{name}'.")
    dims = SEG_MODELS.entry(name).tags.get("dims", (2,))
    return tuple(dims) if isinstance(dims, (tuple, list)) else (int(dims),)


def family_of(name: str, requested: str | None = None) -> str:
    """The family ("3d" or "2d") a name runs in: as requested, else 3D whenever the entry supports it."""
    dims = _dims(name)
    if requested:
        if requested not in FAMILIES:
            raise ConfigError(f"task_params.family must be one of {list(FAMILIES)}, but got '{requested}'.")
        if int(requested[0]) not in dims:
            raise ConfigError(f"task_params.family must be one of the dims '{name}' supports {list(dims)}, "
                              f"but got '{requested}'. Pick another family or network.")
        return requested
    return "3d" if 3 in dims else "2d"


def build_seg_net(name: str, in_channels: int, family: str, encoder: str = "resnet18", width: int = 8,
                  patch: tuple[int, int, int] = (16, 32, 32), out_channels: int = 1) -> torch.nn.Module:
    """A 5-D-in/5-D-out segmenter of the given family: one logit channel (binary), or ``out_channels``, one per
    label.

    ``width`` sets the base channels of the MONAI networks; ``patch`` is the (D, H, W) training window
    (the 2D family sees its (H, W)): factories check that their strides divide it, UNETR is sized for it.
    """
    family_of(name, family)  # validates the name and the family
    accepted = SEG_MODELS.entry(name).parameters()
    sides = tuple(patch) if family == "3d" else tuple(patch[1:])
    wanted = {"encoder": encoder, "spatial_dims": 3 if family == "3d" else 2, "img_size": sides,
              **{k: width for k in _WIDTH_KEYS}}
    net = SEG_MODELS.create(name, in_channels=in_channels, classes=out_channels,
                            **{k: v for k, v in wanted.items() if k in accepted})
    return SliceNet(net) if family == "2d" else net
