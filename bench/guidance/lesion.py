"""Lesion guidance: how a lung mask steers a lesion segmenter (the tensor code of ``LESION_GUIDANCE``).

Built through ``LESION_GUIDANCE.create(name, **params)`` (see :mod:`bench.guidance.entries`), which holds
each strategy's defaults and checks its parameters; the classes here take validated values.

Reference for ``cascade``: Isensee et al., "nnU-Net", Nature Methods 2021.
"""

from __future__ import annotations

import torch

from bench.guidance.base import LesionGuidance
from bench.guidance.geometry import bounding_boxes, crop_to_boxes, dilate, uncrop_from_boxes


class NoLesionGuidance(LesionGuidance):
    """The lesion segmenter sees the whole volume; the lung mask is ignored."""


class RestrictOutput(LesionGuidance):
    """Logits outside the lung mask (dilated by ``dilate`` voxels) are set to ``fill`` (sigmoid ≈ 0).

    The dilation keeps juxta-pleural nodules on the lung border, which a tight predicted mask may cut off.
    """

    def __init__(self, *, dilate: int, fill: float, train_mask: str):
        super().__init__(train_mask)
        self.dilate, self.fill = int(dilate), fill

    def outputs(self, logits: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return self.restrict(logits, lung)

    def restrict(self, logits: torch.Tensor, lung_on_grid: torch.Tensor) -> torch.Tensor:
        keep = dilate(lung_on_grid.to(logits.dtype), self.dilate) > 0.5
        return torch.where(keep, logits, torch.full_like(logits, self.fill))


class LungChannel(LesionGuidance):
    """The lung mask is an extra input channel of the lesion segmenter; outputs are unchanged."""

    extra_channels = 1

    def inputs(self, images: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return torch.cat([images, lung.to(images.dtype)], dim=1)


class LungCrop(LesionGuidance):
    """Segment inside the lungs' bounding box (+ margin, fraction of the side), resampled to full size.

    ``inputs`` crops each volume to its box and stretches it to the input size (more voxels on the lung);
    ``outputs`` pastes the logits back into the box and sets ``fill`` outside it.
    """

    def __init__(self, *, margin: float, fill: float, train_mask: str):
        super().__init__(train_mask)
        self.margin, self.fill = margin, fill

    def inputs(self, images: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        lo, hi = bounding_boxes(lung, self.margin)
        return crop_to_boxes(images, lo, hi)

    def outputs(self, logits: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        lo, hi = bounding_boxes(lung, self.margin)
        return uncrop_from_boxes(logits, lo, hi, self.fill)

    def to_grid(self, volume: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        lo, hi = bounding_boxes(lung, self.margin)
        return crop_to_boxes(volume if volume.is_floating_point() else volume.float(), lo, hi)


class Cascade(LesionGuidance):
    """Two-stage cascade: the lung stage's mask sets the crop (``lung_crop``) and restricts the output.

    Stage 1 is the lung segmenter that produced ``lung``; stage 2 segments lesions inside the lungs' box
    and its logits outside the (dilated) lung are set to ``fill``, as in ``restrict_output``.
    """

    def __init__(self, *, margin: float, dilate: int, fill: float, train_mask: str):
        super().__init__(train_mask)
        self._crop = LungCrop(margin=margin, fill=fill, train_mask=train_mask)
        self._restrict = RestrictOutput(dilate=dilate, fill=fill, train_mask=train_mask)

    def inputs(self, images: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return self._crop.inputs(images, lung)

    def outputs(self, logits: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return self._restrict.outputs(self._crop.outputs(logits, lung), lung)

    def to_grid(self, volume: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return self._crop.to_grid(volume, lung)

    def restrict(self, logits: torch.Tensor, lung_on_grid: torch.Tensor) -> torch.Tensor:
        # In training, dilation counts voxels of the (stretched) crop grid; inference restricts on the image grid.
        return self._restrict.restrict(logits, lung_on_grid > 0.5)
