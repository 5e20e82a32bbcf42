"""The first stage of a two-stage segmentation (ct-lung: the lungs; segmentation: the target's organ): a fixed
light MONAI UNet trained with Dice + CE on organ/background-balanced patches, then every part's organ
predicted; trained once per data, fold, seed and stage settings and loaded by every later trial through the
stage cache (``bench.stages``), since nothing a search varies changes it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.config import TrialConfig
from bench.guidance import LESION_GUIDANCE
from bench.losses import SEG_LOSSES
from bench.stages import Stage, run_stage
from bench.tasks.seg_engine.nets import build_seg_net
from bench.tasks.seg_engine.training import Predictions, Volumes, train_net
from bench.train import Reporter


@dataclass(frozen=True)
class FirstStage:
    """What differs between the tasks' first stages: the stage's name (``lung``/``guide``: metric
    ``<name>_train_loss``, weights ``<name>_segmenter``, history stage), the case key it segments, the
    network's input channels and family, its windows and width, and the training settings."""

    stage: Stage
    name: str
    in_channels: int
    family: str
    patch: tuple[int, ...]
    roi: tuple[int, ...]
    width: int
    samples: int
    epochs: int
    lr: float


def first_stage(config: TrialConfig, spec: FirstStage, parts: Mapping[str, list],
                volumes: Callable[[Any, list], Volumes], *, data_key: str, split_hash: str, params: dict,
                reporter: Reporter, history: list[dict], store: Predictions
                ) -> tuple[torch.nn.Module, dict[str, list[np.ndarray]]]:
    """Train the first-stage network and predict every part's organ, or load both from the stage cache.
    ``volumes(unguided, cases)`` makes a part's volumes with the organ as target; ``params``: the stage's task
    parameters as resolved (its cache key)."""
    net = build_seg_net("monai_unet", spec.in_channels, spec.family, width=spec.width, patch=spec.patch)
    unguided = LESION_GUIDANCE.create("none")

    def train(log) -> tuple[dict, dict[str, np.ndarray]]:
        vols = {p: volumes(unguided, cases) for p, cases in parts.items()}
        # Dice + CE: the CE term gets the easy organ/background contrast right within a couple of epochs.
        train_net(net, vols["train"], SEG_LOSSES.create("dice_ce"), patch=spec.patch, samples=spec.samples,
                  pos_fraction=0.5, epochs=spec.epochs, lr=spec.lr, seed=config.seed + 7,
                  batch_size=config.batch_size, optimiser=config.optimiser, augment=config.augment,
                  on_epoch=lambda epoch, value: log({f"{spec.name}_train_loss": value}, epoch))
        preds = {f"pred.{part}": store.predict(net, v, spec.roi) for part, v in vols.items()}
        return {f"{spec.name}_segmenter": net.state_dict()}, preds

    stage = run_stage(spec.stage, config, data_key=data_key, split_hash=split_hash, reporter=reporter,
                      train=train, params=params)
    if stage.loaded:
        net.load_state_dict(stage.weights[f"{spec.name}_segmenter"])
    history.extend({"stage": spec.name, "epoch": step, **metrics} for step, metrics in stage.epochs)
    return net, {part: list(stage.arrays[f"pred.{part}"]) for part in parts}
