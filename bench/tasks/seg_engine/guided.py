"""How an organ mask guides the target segmenter (ct-lung: the lungs guide the lesion segmenter; segmentation:
the target's organ): the shared ``LESION_GUIDANCE`` strategies applied to whole volumes before patch
sampling, and after sliding-window inference. Fields keep ct-lung's word ``lung`` for the organ.

``config.guidance`` names a ``LESION_GUIDANCE`` entry (``none``, ``restrict_output``, ``lung_channel``,
``lung_crop``, ``cascade``, see ``bench/guidance.py``) and ``config.guidance_params`` are its factory
keywords (``dilate``: voxels of lung dilation before restricting; ``margin``: crop box margin, a fraction
of the side; ``fill``; ``train_mask``: "predicted" (default) or "ground_truth" lungs for training;
validation and test always use the stage-1 predicted lungs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from bench.errors import BenchError, ConfigError
from bench.guidance import LESION_GUIDANCE, LesionGuidance


def make_guidance(name: str, params: dict) -> LesionGuidance:
    """The strategy a config names; a ConfigError that lists the choices otherwise (validated before work)."""
    if name not in LESION_GUIDANCE:
        raise ConfigError(f"guidance for ct-lung must be one of {LESION_GUIDANCE.names()}, but got '{name}'.")
    try:
        return LESION_GUIDANCE.create(name, **params)
    except BenchError as err:
        raise ConfigError(f"guidance_params for '{name}' are invalid: {err}") from err


@dataclass
class Guided:
    """One volume on the segmenter's grid: inputs (C,D,H,W), target (1,D,H,W), lung (1,D,H,W)."""

    inputs: np.ndarray
    target: np.ndarray
    lung: np.ndarray


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, np.float32))[None, None]  # a copy: cached arrays are read-only


@torch.no_grad()
def to_segmenter_grid(g: LesionGuidance, image: np.ndarray, target: np.ndarray, lung: np.ndarray) -> Guided:
    """``g.inputs`` / ``g.to_grid`` on one (D,H,W) volume: what patches are drawn from."""
    ct, lung_t = _t(image), _t(lung > 0)
    return Guided(
        inputs=g.inputs(ct, lung_t)[0].numpy().astype(np.float32),
        target=(g.to_grid(_t(target > 0), lung_t)[0] > 0.5).numpy().astype(np.float32),
        lung=(g.to_grid(lung_t, lung_t)[0] > 0.5).numpy().astype(np.float32),
    )


@torch.no_grad()
def to_image_grid(g: LesionGuidance, logits: torch.Tensor, lung: np.ndarray) -> torch.Tensor:
    """``g.outputs``: logits (1,1,D,H,W) on the segmenter's grid → the image grid, restricted as ``g`` says."""
    return g.outputs(logits, _t(lung > 0).to(logits.device))
