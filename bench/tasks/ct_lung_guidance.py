"""How a lung mask guides the ct-lung lesion segmenter (local until the shared LESION_GUIDANCE registry lands).

Modes (``config.guidance``):

* ``none``: the lesion network sees the whole volume; its output is used as is.
* ``restrict_output``: logits outside the (dilated) lung mask are forced to ``NEG_LOGIT``, in training and
  inference, so nothing can be predicted outside the lungs.
* ``lung_channel``: the lung mask is a second input channel; the network learns how to use it.
* ``lung_crop``: every volume is cropped to the lung bounding box (+ margin) before training and
  inference; predictions are pasted back, so everything outside the box is background.
* ``cascade``: stage-1 lung segmentation feeds stage 2 three ways: crop to the lungs, lung mask as a
  channel, and output restricted to the lungs (nnU-Net-style cascade, Isensee et al. 2021).

``guidance_params``: ``mask`` ("predicted", the default and the honest choice: what a deployed model gets,
or "true" for an oracle upper bound), ``dilate`` (voxels of dilation so juxta-pleural lesions are not cut
off) and ``margin`` (voxels around the crop box).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bench.errors import ConfigError

MODES = ("none", "restrict_output", "lung_channel", "lung_crop", "cascade")
# Finite so BCE terms stay bounded in training (sigmoid(-20) ≈ 2e-9, i.e. certainly background).
NEG_LOGIT = -20.0


@dataclass(frozen=True)
class LungGuidance:
    mode: str = "none"
    mask: str = "predicted"
    dilate: int = 1
    margin: int = 2

    @classmethod
    def from_config(cls, mode: str, params: dict) -> LungGuidance:
        if mode not in MODES:
            raise ConfigError(f"guidance for ct-lung must be one of {list(MODES)}, but got '{mode}'.")
        unknown = sorted(set(params) - {"mask", "dilate", "margin"})
        if unknown:
            raise ConfigError(f"ct-lung guidance_params take mask, dilate, margin, but got {unknown}.")
        g = cls(mode, **params)
        if g.mask not in ("predicted", "true"):
            raise ConfigError(f"guidance_params.mask must be 'predicted' or 'true', but got '{g.mask}'.")
        if int(g.dilate) < 0 or int(g.margin) < 0:
            raise ConfigError(f"guidance_params dilate/margin must be >= 0, but got {g.dilate}/{g.margin}.")
        return g

    @property
    def channel(self) -> bool:
        return self.mode in ("lung_channel", "cascade")

    @property
    def restrict(self) -> bool:
        return self.mode in ("restrict_output", "cascade")

    @property
    def crop(self) -> bool:
        return self.mode in ("lung_crop", "cascade")

    @property
    def in_channels(self) -> int:
        return 2 if self.channel else 1

    def region(self, lung: np.ndarray) -> np.ndarray:
        """The lung mask this guidance trusts, dilated by ``dilate`` voxels."""
        region = lung.astype(bool)
        if self.dilate and region.any():
            region = ndimage.binary_dilation(region, iterations=int(self.dilate))
        return region

    def box(self, lung: np.ndarray) -> tuple[slice, ...]:
        """Bounding box of the lung region plus ``margin``; the whole volume when no lung was found."""
        region = self.region(lung)
        if not region.any():
            return tuple(slice(0, n) for n in lung.shape)
        idx = np.argwhere(region)
        lo = np.maximum(idx.min(0) - int(self.margin), 0)
        hi = np.minimum(idx.max(0) + 1 + int(self.margin), lung.shape)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
