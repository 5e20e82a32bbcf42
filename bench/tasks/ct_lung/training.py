"""Generic patch training and sliding-window inference over lists of volumes (both ct-lung stages).

Training draws lesion/background-balanced patches (MONAI ``RandCropByPosNegLabel``) from whole volumes
already mapped onto the segmenter's grid by a ``LESION_GUIDANCE`` strategy; inference runs a sliding
window on whole volumes and maps the logits back with the strategy's ``outputs``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.transforms import (
    Compose,
    RandCropByPosNegLabel,
    RandFlip,
    RandGaussianNoise,
    RandScaleIntensity,
    SpatialPad,
)
from monai.transforms.utils import map_binary_to_indices
from monai.utils import convert_to_tensor

from bench import runtime
from bench.guidance import LesionGuidance
from bench.tasks.ct_lung.lung_guidance import to_image_grid, to_segmenter_grid
from bench.train import device, make_optimiser


@dataclass
class Volumes:
    """Network inputs of one part, per case on the segmenter's grid (input channels (C,D,H,W), target and
    lung (1,D,H,W)), plus the guiding lung on the image grid for ``guide.outputs`` at inference."""

    guide: LesionGuidance
    inputs: list[np.ndarray]
    targets: list[np.ndarray]
    grid_lungs: list[np.ndarray]
    lungs: list[np.ndarray]


def make_volumes(cases, target: str, guide: LesionGuidance, lungs: list[np.ndarray] | None) -> Volumes:
    """``lungs`` guide each case (None: no lungs, e.g. for the lung stage itself with ``none`` guidance)."""
    lungs = lungs if lungs is not None else [np.zeros(c["image"].shape, np.uint8) for c in cases]
    guided = [to_segmenter_grid(guide, c["image"], c[target], lung) for c, lung in zip(cases, lungs)]
    return Volumes(guide, [v.inputs for v in guided], [v.target for v in guided], [v.lung for v in guided],
                   list(lungs))


def train_net(
    net: torch.nn.Module,
    vols: Volumes,
    loss_fn: Callable,
    *,
    patch: tuple[int, int, int],
    samples: int,
    pos_fraction: float,
    epochs: int,
    batch_size: int,
    lr: float,
    optimiser: str,
    seed: int,
    augment: bool,
    on_epoch: Callable[[int, float], None],
) -> None:
    """Patch training: each epoch draws ``samples`` lesion/background-balanced patches per volume."""
    dev = device()
    policy = runtime.current()
    runtime.prepare_model(net, policy, spatial_dims=3)
    step = runtime.TrainStep(net, make_optimiser(optimiser, net.parameters(), lr), policy)
    crop = RandCropByPosNegLabel(spatial_size=patch, pos=pos_fraction, neg=1.0 - pos_fraction, num_samples=samples)
    crop.set_random_state(seed)
    # Spatial augmentation moves every channel (image, lung, target, region) together; intensity
    # augmentation touches the CT channel only.
    flip = RandFlip(prob=0.5, spatial_axis=2)
    flip.set_random_state(seed + 1)
    intensity = Compose([RandScaleIntensity(factors=0.1, prob=0.5), RandGaussianNoise(prob=0.3, std=0.02)])
    intensity.set_random_state(seed + 2)
    pad = SpatialPad(patch)
    stacked, indices = [], []
    for x, y, r in zip(vols.inputs, vols.targets, vols.grid_lungs):
        parts = [x, y, r]
        # Plain tensors: MONAI's MetaTensor bookkeeping costs more than the tiny CPU convolutions.
        arr = convert_to_tensor(pad(torch.from_numpy(np.concatenate(parts))), track_meta=False)
        stacked.append(arr)
        label = arr[x.shape[0] : x.shape[0] + 1]
        indices.append(map_binary_to_indices(label))
    gen = torch.Generator().manual_seed(seed)
    n_in = vols.inputs[0].shape[0]
    for epoch in range(epochs):
        net.train()
        patches = []
        with warnings.catch_warnings():  # lesion-free volumes: MONAI warns and samples background only
            warnings.simplefilter("ignore")
            for arr, (fg, bg) in zip(stacked, indices):
                patches.extend(crop(arr, label=arr[n_in : n_in + 1], fg_indices=fg, bg_indices=bg))
        batch_all = torch.stack([convert_to_tensor(p, track_meta=False) for p in patches])
        order = torch.randperm(len(batch_all), generator=gen)
        total = torch.zeros((), dtype=torch.float64, device=dev)
        for start in range(0, len(order), batch_size):
            b = batch_all[order[start : start + batch_size]]
            if augment:
                b = torch.stack([convert_to_tensor(flip(bi), track_meta=False) for bi in b])
                ct = torch.stack([convert_to_tensor(intensity(bi[:1]), track_meta=False) for bi in b])
                b = torch.cat([ct, b[:, 1:]], dim=1)
            b = runtime.prepare_batch(b, policy)
            x = b[:, :n_in]
            total += step(lambda m, x=x, b=b: loss_fn(vols.guide.restrict(m(x), b[:, n_in + 1 : n_in + 2]),
                                                      b[:, n_in : n_in + 1])).double() * len(x)
        epoch_loss = float(total) / max(len(batch_all), 1)
        if not np.isfinite(epoch_loss):
            raise FloatingPointError(f"training loss became {epoch_loss} at epoch {epoch}")
        on_epoch(epoch, epoch_loss)


@torch.no_grad()
def infer(net: torch.nn.Module, vols: Volumes, patch: tuple[int, int, int], threshold: float = 0.0
          ) -> list[np.ndarray]:
    """Binary predictions (logit > ``threshold``) on whole volumes: sliding window, then ``guide.outputs``."""
    dev = device()
    net.to(dev).eval()
    out = []
    for x, lung in zip(vols.inputs, vols.lungs):
        xt = torch.from_numpy(x)[None].to(dev)
        # 2D windows are single slices: batch many per call.
        with runtime.autocast():
            logits = sliding_window_inference(xt, roi_size=patch, sw_batch_size=8 if patch[0] > 1 else 64,
                                              predictor=net, overlap=0.25)
        logits = to_image_grid(vols.guide, logits.float(), lung)
        out.append((logits[0, 0] > threshold).cpu().numpy().astype(np.uint8))
    return out
