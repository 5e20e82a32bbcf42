"""Networks for the ct-lung task: MONAI 3D segmenters and smp 2D segmenters run slice by slice.

``build_seg_net`` first looks a name up in the shared ``SEG_MODELS`` registry and falls back to the small
local catalogue below, so the task works today and picks up the shared MONAI 3D models once they are
registered (fold-in plan: move ``LOCAL_3D`` into ``bench/models/monai_models.py`` as ``SEG_MODELS`` entries
with a ``spatial_dims`` parameter, then delete it here).

Every network this module returns takes and returns 5-D tensors ``(B, C, D, H, W)``; 2D networks are
wrapped in :class:`SliceNet`, which treats a depth-1 patch as a 2D image. So patch sampling, sliding-window
inference and guidance are written once for both families.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.nets import AttentionUnet, BasicUNet, DynUNet, SegResNet, UNet

from bench.errors import ConfigError
from bench.models import SEG_MODELS


def _monai_unet(in_channels: int, out_channels: int, width: int) -> torch.nn.Module:
    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                channels=(width, 2 * width, 4 * width, 8 * width), strides=(2, 2, 2), num_res_units=1)


def _basic_unet(in_channels: int, out_channels: int, width: int) -> torch.nn.Module:
    return BasicUNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                     features=(width, width, 2 * width, 4 * width, 8 * width, width))


def _segresnet(in_channels: int, out_channels: int, width: int) -> torch.nn.Module:
    return SegResNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, init_filters=width,
                     blocks_down=(1, 2, 2), blocks_up=(1, 1))


def _attention_unet(in_channels: int, out_channels: int, width: int) -> torch.nn.Module:
    return AttentionUnet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                         channels=(width, 2 * width, 4 * width), strides=(2, 2))


def _dynunet(in_channels: int, out_channels: int, width: int) -> torch.nn.Module:
    # nnU-Net-style: anisotropic first stride keeps the thin z axis (5 mm slices) from collapsing too early.
    return DynUNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                   kernel_size=[3, 3, 3, 3], strides=[1, (1, 2, 2), 2, 2], upsample_kernel_size=[(1, 2, 2), 2, 2],
                   filters=(width, 2 * width, 4 * width, 8 * width), res_block=True)


LOCAL_3D: dict[str, Callable[[int, int, int], torch.nn.Module]] = {
    "monai_unet": _monai_unet,
    "basic_unet": _basic_unet,
    "segresnet": _segresnet,
    "attention_unet": _attention_unet,
    "dynunet": _dynunet,
}
FAMILIES = ("3d", "2d")


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


def family_of(name: str, requested: str | None = None) -> str:
    """The family ("3d" or "2d") a name runs in: as requested, else inferred from where it is registered."""
    if requested:
        if requested not in FAMILIES:
            raise ConfigError(f"task_params.family must be one of {list(FAMILIES)}, but got '{requested}'.")
        return requested
    if name in LOCAL_3D:
        return "3d"
    if name in SEG_MODELS:
        entry = SEG_MODELS.entry(name)
        if entry.tags.get("dims") == 2:
            return "2d"
        return "3d" if "spatial_dims" in entry.parameters() or entry.tags.get("dims") == 3 else "2d"
    raise ConfigError(
        f"seg_arch must be a 3D name {sorted(LOCAL_3D)} or a registered model {SEG_MODELS.names()}, "
        f"but got '{name}'."
    )


def build_seg_net(name: str, in_channels: int, family: str, encoder: str = "resnet18", width: int = 8):
    """A 5-D-in/5-D-out binary segmenter (one logit channel) of the given family."""
    if name in SEG_MODELS:
        entry = SEG_MODELS.entry(name)
        accepted = entry.parameters()
        wanted = {"in_channels": in_channels, "classes": 1, "out_channels": 1, "encoder": encoder,
                  "spatial_dims": 3 if family == "3d" else 2}
        net = entry.obj(**{k: v for k, v in wanted.items() if k in accepted})
        return SliceNet(net) if family == "2d" else net
    if name in LOCAL_3D:
        if family != "3d":
            raise ConfigError(f"'{name}' is a 3D network here, so task_params.family must be '3d', but got '{family}'.")
        return LOCAL_3D[name](in_channels, 1, width)
    family_of(name)  # raises the helpful error
    raise AssertionError("unreachable")


def all_arch_names() -> list[str]:
    return sorted(set(LOCAL_3D) | set(SEG_MODELS.names()))
