"""The budget presets' shared part for the tasks on this engine (ct-lung, segmentation): the searched target
network's fields per preset, one copy; each task adds its own ``task_params`` (patch or patch budget, first
stage epochs, phantom). Plain data: the task specs import it without torch."""

from __future__ import annotations

from typing import Any

ENGINE_BUDGETS: dict[str, dict[str, Any]] = {
    # seconds a trial: one epoch on at most 6 training volumes
    "smoke": {"seg_arch": "monai_unet", "seg_epochs": 1, "batch_size": 4, "max_train_cases": 6},
    # a 2-core CPU: the light MONAI UNet (2D family: mobilenet_v2), Dice + CE, lr 3e-3, 10 epochs
    "cpu": {"seg_arch": "monai_unet", "seg_encoder": "mobilenet_v2", "seg_epochs": 10, "batch_size": 4,
            "seg_loss": "dice_ce", "lr": 3e-3},
    # one GPU: 60 epochs, batches of 8
    "gpu": {"seg_arch": "monai_unet", "seg_epochs": 60, "batch_size": 8},
}
