"""The two guidance registries, the base strategies and the parameter checks; no torch at import time.

Strategies are registered in :mod:`bench.guidance.entries` as light factories (name, description,
parameters with defaults, the task they apply to); their tensor code lives in
:mod:`bench.guidance.classifier` and :mod:`bench.guidance.lesion` and is imported when one is created.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.errors import ConfigError
from bench.registry import Registry

if TYPE_CHECKING:
    import torch

GUIDANCE: Registry = Registry("guidance strategy", "guidance strategies")
LESION_GUIDANCE: Registry = Registry("lesion guidance strategy", "lesion guidance strategies")

MASK_SOURCES = ("predicted", "ground_truth")


def check_mask_source(train_mask: str) -> str:
    if train_mask not in MASK_SOURCES:
        raise ConfigError(
            f"train_mask must be one of {list(MASK_SOURCES)}, but got '{train_mask}'. "
            "Validation and test always use predicted masks."
        )
    return train_mask


def check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(
            f"guidance parameter '{name}' must be {bound}, but got {value}. Pick a value in range."
        )


def check_fill(fill: float) -> None:
    if fill > -5:
        raise ConfigError(f"fill must be a large negative logit (<= -5), but got {fill}. Use e.g. -20.")


class Guidance:
    """Base classifier strategy: passes images through unchanged. Subclasses override what they need.

    Attributes:
        extra_channels: input channels the classifier must accept beyond the image's one.
        train_mask: "predicted" or "ground_truth"; which masks train the classifier (see ``bench.guidance``).
    """

    extra_channels = 0

    def __init__(self, train_mask: str = "predicted"):
        self.train_mask = check_mask_source(train_mask)

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return images

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def extra_loss(self, model, images, masks, logits) -> torch.Tensor | None:
        return None


class LesionGuidance:
    """Base strategy for lesion segmentation guided by a lung mask: input and output unchanged.

    Attributes:
        extra_channels: input channels the segmenter must accept beyond the image's one.
        train_mask: "predicted" or "ground_truth" lung masks for training (see ``bench.guidance``).
    """

    extra_channels = 0

    def __init__(self, train_mask: str = "predicted"):
        self.train_mask = check_mask_source(train_mask)

    def inputs(self, images: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        """The segmenter's input, same spatial size as ``images``."""
        return images

    def outputs(self, logits: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        """The segmenter's logits mapped back to the image grid (and possibly restricted to the lung)."""
        return logits

    def to_grid(self, volume: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        """A volume on the image grid (a target, the lung itself) mapped onto the segmenter's input grid."""
        return volume

    def restrict(self, logits: torch.Tensor, lung_on_grid: torch.Tensor) -> torch.Tensor:
        """The voxel-wise part of ``outputs`` on the segmenter's grid; works on training patches."""
        return logits
