"""Registry of segmentation losses (Dice variants). Each factory returns ``loss(logits, target)``.

Library implementations (MONAI) are used where they exist; only the seed project's region-restricting
variants are written here by hand.
"""

from __future__ import annotations

from monai.losses import DiceCELoss, DiceLoss

from bench.registry import Registry

SEG_LOSSES: Registry = Registry("segmentation loss")


@SEG_LOSSES.register("dice")
def dice(smooth: float = 1e-5, batch: bool = False):
    """Soft Dice on sigmoid probabilities (MONAI DiceLoss); batch=True pools the batch into one Dice."""
    return DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=smooth, batch=batch)


@SEG_LOSSES.register("dice_ce")
def dice_ce(ce_weight: float = 1.0):
    """Soft Dice + binary cross-entropy (MONAI DiceCELoss), weighted 1 : ce_weight."""
    return DiceCELoss(sigmoid=True, lambda_dice=1.0, lambda_ce=ce_weight)
