"""2D segmentation networks from segmentation-models-pytorch, never with downloaded weights by default."""

from __future__ import annotations

import segmentation_models_pytorch as smp

from bench.models import SEG_MODELS


def _smp(cls, in_channels: int, classes: int, encoder: str, encoder_weights: str | None):
    return cls(encoder_name=encoder, encoder_weights=encoder_weights, in_channels=in_channels, classes=classes)


@SEG_MODELS.register("unet", dims=2, library="smp")
def unet(in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None):
    """smp U-Net (Ronneberger 2015) with a configurable encoder."""
    return _smp(smp.Unet, in_channels, classes, encoder, encoder_weights)


@SEG_MODELS.register("fpn", dims=2, library="smp")
def fpn(in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None):
    """smp Feature Pyramid Network decoder (Lin 2017)."""
    return _smp(smp.FPN, in_channels, classes, encoder, encoder_weights)


@SEG_MODELS.register("linknet", dims=2, library="smp")
def linknet(in_channels: int = 1, classes: int = 1, encoder: str = "resnet18", encoder_weights: str | None = None):
    """smp LinkNet: light decoder with additive skips (Chaurasia 2017)."""
    return _smp(smp.Linknet, in_channels, classes, encoder, encoder_weights)
