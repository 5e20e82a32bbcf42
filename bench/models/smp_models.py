"""2D segmentation networks from segmentation-models-pytorch (smp), never with downloaded weights by default.

Every factory takes the same arguments, so a search can pair any decoder with any encoder smp builds
offline with ``encoder_weights=None`` (resnet18, resnet34, mobilenet_v2, efficientnet-b0, …; the full list
is ``segmentation_models_pytorch.encoders.get_encoder_names()``). Input sides must be divisible by 32.

References are in each docstring; smp: Iakubovskii, https://github.com/qubvel-org/segmentation_models.pytorch
"""

from __future__ import annotations

from bench.errors import ConfigError
from bench.models import SEG_MODELS

# Encoders checked to build offline and to run on 64×64 inputs; any other smp encoder name also works.
SUGGESTED_ENCODERS = ("resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0")


def _smp(decoder: str, in_channels: int, classes: int, encoder: str, encoder_weights: str | None, **kwargs):
    """smp's ``decoder`` class (e.g. ``"Unet"``) on ``encoder``; smp is imported here, when a model is built."""
    import difflib

    import segmentation_models_pytorch as smp

    names = smp.encoders.get_encoder_names()
    if encoder not in names:
        close = difflib.get_close_matches(encoder, names, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else f" Try one of {list(SUGGESTED_ENCODERS)}."
        raise ConfigError(f"seg_encoder must be an smp encoder name, but got '{encoder}'.{hint}")
    return getattr(smp, decoder)(
        encoder_name=encoder,
        encoder_weights=encoder_weights,
        in_channels=in_channels,
        classes=classes,
        **kwargs,
    )


@SEG_MODELS.register("unet", dims=(2,), library="smp")
def unet(
    in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None
):
    """smp U-Net (Ronneberger 2015) with a configurable encoder."""
    return _smp("Unet", in_channels, classes, encoder, encoder_weights)


@SEG_MODELS.register("unetplusplus", dims=(2,), library="smp")
def unetplusplus(
    in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None
):
    """smp U-Net++ with nested dense skip paths (Zhou 2018); slower than U-Net."""
    return _smp("UnetPlusPlus", in_channels, classes, encoder, encoder_weights)


@SEG_MODELS.register("fpn", dims=(2,), library="smp")
def fpn(
    in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None
):
    """smp Feature Pyramid Network decoder (Lin 2017)."""
    return _smp("FPN", in_channels, classes, encoder, encoder_weights)


@SEG_MODELS.register("deeplabv3plus", dims=(2,), library="smp")
def deeplabv3plus(
    in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None
):
    """smp DeepLabV3+: atrous spatial pyramid pooling + a light decoder (Chen 2018).

    Its ASPP image-pooling branch has a BatchNorm on a 1×1 map, so a training batch of one sample fails.
    """
    return _smp("DeepLabV3Plus", in_channels, classes, encoder, encoder_weights)


@SEG_MODELS.register("manet", dims=(2,), library="smp")
def manet(
    in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None
):
    """smp MA-Net: multi-scale attention decoder (Fan 2020)."""
    return _smp("MAnet", in_channels, classes, encoder, encoder_weights)


@SEG_MODELS.register("linknet", dims=(2,), library="smp")
def linknet(
    in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None
):
    """smp LinkNet: light decoder with additive skips (Chaurasia 2017)."""
    return _smp("Linknet", in_channels, classes, encoder, encoder_weights)


@SEG_MODELS.register("pan", dims=(2,), library="smp", min_size=128)
def pan(
    in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None
):
    """smp Pyramid Attention Network (Li 2018); needs sides >= 128 (its pyramid pools the 1/16 map 3 times)."""
    return _smp("PAN", in_channels, classes, encoder, encoder_weights)
