"""Registry of mask-guidance strategies: how a heart (or lung) mask steers the classifier.

A strategy transforms the classifier's input given a mask in [0, 1]; strategies that need to change the
model or add a loss term override ``wrap_model`` / ``extra_loss``. Masks at validation and test time are
always the segmenter's predictions, never ground truth.
"""

from __future__ import annotations

import torch

from bench.errors import ConfigError
from bench.registry import Registry

GUIDANCE: Registry = Registry("guidance strategy")


class Guidance:
    extra_channels = 0

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return images

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def extra_loss(self, model, images, masks, logits) -> torch.Tensor | None:
        return None


@GUIDANCE.register("none")
class NoGuidance(Guidance):
    """The classifier sees the whole image; the mask is ignored."""


@GUIDANCE.register("soft_mask")
class SoftMask(Guidance):
    """Seed's soft mask: image × clip(mask, floor, 1), so pixels outside the heart are dimmed to `floor`."""

    def __init__(self, floor: float = 0.2):
        if not 0.0 <= floor <= 1.0:
            raise ConfigError(f"soft_mask floor must be in [0, 1], but got {floor}.")
        self.floor = floor

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return images * masks.clamp(min=self.floor, max=1.0)
