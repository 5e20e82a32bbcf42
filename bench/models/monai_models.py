"""2D/3D segmentation networks from MONAI, with small default widths so they train on a CPU.

Every factory takes ``in_channels``, ``classes``, ``spatial_dims`` (2 or 3) and ``img_size`` (the input's
side, or one side per spatial dim; the others check their divisibility on it, UNETR sizes its position
embedding from it) and ``encoder``, which is ignored: MONAI networks have no interchangeable encoder, but the task passes
its ``seg_encoder`` to every segmentation model.

MONAI is imported inside each factory, when the network is built, so listing the models stays light.

References: MONAI Consortium, "MONAI: An open-source framework for deep learning in healthcare", 2022,
and the papers named in each docstring.
"""

from __future__ import annotations

import importlib.util

from bench.errors import ConfigError
from bench.models import SEG_MODELS


def _sides(name: str, spatial_dims: int, img_size: int | tuple[int, ...]) -> tuple[int, ...]:
    """``img_size`` as one side per spatial dim (an int means a square / cube)."""
    if spatial_dims not in (2, 3):
        raise ConfigError(f"{name} spatial_dims must be 2 or 3, but got {spatial_dims}.")
    sides = (int(img_size),) * spatial_dims if isinstance(img_size, int) else tuple(int(v) for v in img_size)
    if len(sides) != spatial_dims:
        raise ConfigError(f"{name} img_size must have {spatial_dims} sides, but got {img_size}.")
    return sides


def _check(name: str, spatial_dims: int, img_size: int | tuple[int, ...], multiple: int) -> tuple[int, ...]:
    sides = _sides(name, spatial_dims, img_size)
    if any(side < multiple or side % multiple for side in sides):
        raise ConfigError(
            f"{name} needs image sides divisible by {multiple}, but got {img_size}. "
            f"Set image_size (or the patch size) to multiples of {multiple}."
        )
    return sides


def _require(name: str, package: str) -> None:
    # MONAI imports einops lazily and fails mid-forward; fail at build time with the fix instead.
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"{name} needs the {package} package, but it is not installed. Run `pip install {package}`."
        )


def _widths(base: int, depth: int) -> tuple[int, ...]:
    return tuple(base * 2**i for i in range(depth))


@SEG_MODELS.register("monai_unet", dims=(2, 3), library="monai", min_size=16)
def monai_unet(
    in_channels: int = 1,
    classes: int = 1,
    encoder: str | None = None,
    spatial_dims: int = 2,
    img_size: int | tuple[int, ...] = 64,
    base_channels: int = 16,
    num_res_units: int = 2,
):
    """MONAI residual U-Net (Kerfoot 2018), 4 levels from ``base_channels`` wide."""
    _check("monai_unet", spatial_dims, img_size, 8)
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=classes,
        channels=_widths(base_channels, 4),
        strides=(2, 2, 2),
        num_res_units=num_res_units,
    )


@SEG_MODELS.register("basic_unet", dims=(2, 3), library="monai", min_size=16)
def basic_unet(
    in_channels: int = 1,
    classes: int = 1,
    encoder: str | None = None,
    spatial_dims: int = 2,
    img_size: int | tuple[int, ...] = 64,
    base_channels: int = 16,
):
    """MONAI BasicUNet: the plain 5-level U-Net (Ronneberger 2015; Falk 2019)."""
    _check("basic_unet", spatial_dims, img_size, 16)
    b = base_channels
    from monai.networks.nets import BasicUNet

    return BasicUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=classes,
        features=(b, b, 2 * b, 4 * b, 8 * b, b),
    )


@SEG_MODELS.register("segresnet", dims=(2, 3), library="monai", min_size=8)
def segresnet(
    in_channels: int = 1,
    classes: int = 1,
    encoder: str | None = None,
    spatial_dims: int = 2,
    img_size: int | tuple[int, ...] = 64,
    init_filters: int = 8,
):
    """MONAI SegResNet: residual encoder, light decoder (Myronenko 2018, without the VAE branch)."""
    _check("segresnet", spatial_dims, img_size, 8)
    from monai.networks.nets import SegResNet

    return SegResNet(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=classes, init_filters=init_filters
    )


@SEG_MODELS.register("attention_unet", dims=(2, 3), library="monai", min_size=16)
def attention_unet(
    in_channels: int = 1,
    classes: int = 1,
    encoder: str | None = None,
    spatial_dims: int = 2,
    img_size: int | tuple[int, ...] = 64,
    base_channels: int = 16,
):
    """MONAI Attention U-Net: attention gates on the skip connections (Oktay 2018)."""
    _check("attention_unet", spatial_dims, img_size, 8)
    from monai.networks.nets import AttentionUnet

    return AttentionUnet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=classes,
        channels=_widths(base_channels, 4),
        strides=(2, 2, 2),
    )


@SEG_MODELS.register("dynunet", dims=(2, 3), library="monai", min_size=16)
def dynunet(
    in_channels: int = 1,
    classes: int = 1,
    encoder: str | None = None,
    spatial_dims: int = 2,
    img_size: int | tuple[int, ...] = 64,
    base_channels: int = 16,
    res_block: bool = True,
):
    """MONAI DynUNet, the nnU-Net-style configurable U-Net (Isensee 2021), 4 levels."""
    _check("dynunet", spatial_dims, img_size, 8)
    strides = (1, 2, 2, 2)
    from monai.networks.nets import DynUNet

    return DynUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=classes,
        kernel_size=(3,) * len(strides),
        strides=strides,
        upsample_kernel_size=strides[1:],
        filters=_widths(base_channels, len(strides)),
        res_block=res_block,
    )


@SEG_MODELS.register("unetr", dims=(2, 3), library="monai", min_size=16, requires="einops")
def unetr(
    in_channels: int = 1,
    classes: int = 1,
    encoder: str | None = None,
    spatial_dims: int = 2,
    img_size: int | tuple[int, ...] = 64,
    feature_size: int = 16,
    hidden_size: int = 192,
    num_heads: int = 4,
):
    """MONAI UNETR: ViT encoder on 16-pixel patches with a convolutional decoder (Hatamizadeh 2022).

    ``img_size`` must equal the input's sides (the position embedding is sized for them), each a
    multiple of 16. Defaults are a small ViT (hidden 192, 4 heads, MLP 4×hidden), not the paper's ViT-B. Needs the
    ``einops`` package.
    """
    sides = _check("unetr", spatial_dims, img_size, 16)
    _require("unetr", "einops")
    if hidden_size % num_heads:
        raise ConfigError(
            f"unetr hidden_size must be divisible by num_heads, but got {hidden_size}/{num_heads}."
        )
    from monai.networks.nets import UNETR

    return UNETR(
        in_channels=in_channels,
        out_channels=classes,
        img_size=sides,
        feature_size=feature_size,
        hidden_size=hidden_size,
        mlp_dim=4 * hidden_size,
        num_heads=num_heads,
        spatial_dims=spatial_dims,
    )


@SEG_MODELS.register("swin_unetr", dims=(2, 3), library="monai", min_size=64, requires="einops")
def swin_unetr(
    in_channels: int = 1,
    classes: int = 1,
    encoder: str | None = None,
    spatial_dims: int = 2,
    img_size: int | tuple[int, ...] = 64,
    feature_size: int = 12,
):
    """MONAI Swin UNETR: shifted-window transformer encoder, U-Net decoder (Hatamizadeh 2022).

    Input sides must be multiples of 32 (five 2× patch merges) and at least 64 (instance norm on the
    1/32 map needs more than one element); ``img_size`` is checked for that, since this MONAI version no
    longer takes it. ``feature_size`` must be a multiple of 12. Needs the ``einops`` package.
    """
    if min(_check("swin_unetr", spatial_dims, img_size, 32)) < 64:
        raise ConfigError(
            f"swin_unetr needs an image side of at least 64, but got {img_size}. Raise image_size."
        )
    _require("swin_unetr", "einops")
    if feature_size % 12:
        raise ConfigError(f"swin_unetr feature_size must be a multiple of 12, but got {feature_size}.")
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(
        in_channels=in_channels,
        out_channels=classes,
        feature_size=feature_size,
        spatial_dims=spatial_dims,
        window_size=4,
    )
