"""Registry of segmentation losses (Dice variants). Each factory returns ``loss(logits, target)``.

Contract: ``logits`` are raw network outputs of shape (N, 1, H, W) or (N, 1, D, H, W); ``target`` has the
same shape with values in {0, 1}; the loss is a scalar tensor. Library implementations (MONAI) are used
where they exist; only the seed project's region-restricting variants are written here by hand, with
their formulas in the docstrings:

- ``spread_dice``: soft Dice + a penalty on the spatial spread of the predicted mass.
- ``spread_ratio_dice`` / ``spread_ratio_abs_dice``: soft Dice + the spread of the prediction relative
  to the spread of the true mask.
- ``roi_dice``: soft Dice + the fraction of predicted mass outside a region of interest; it also accepts
  ``loss(logits, target, roi=mask)``.

Importing this module is light (no torch, no MONAI): each factory's signature declares its parameters and
its body imports the implementation, MONAI's or the private ``bench._loss_impl``, when the loss is created.

All Dice terms are written as ``1 − Dice`` (not the seed's ``−Dice``) so that a perfect prediction sits
near 0; the gradients are the same.

References:
    Milletari et al., "V-Net", 3DV 2016 (squared denominators).
    Sudre et al., "Generalised Dice overlap as a deep learning loss function", DLMIA 2017.
    Salehi et al., "Tversky loss function for image segmentation", MLMI 2017.
    Abraham & Khan, "A novel focal Tversky loss function", ISBI 2019.
    Jadon, "A survey of loss functions for semantic segmentation", CIBCB 2020 (log-cosh Dice).
    Lin et al., "Focal loss for dense object detection", ICCV 2017.

Example:
    >>> import torch
    >>> from bench.losses import SEG_LOSSES
    >>> loss = SEG_LOSSES.create("tversky", alpha=0.3, beta=0.7)
    >>> float(loss(torch.full((1, 1, 4, 4), -20.0), torch.zeros(1, 1, 4, 4))) < 1e-3
    True
"""

from __future__ import annotations

from bench.errors import ConfigError
from bench.registry import Registry

SEG_LOSSES: Registry = Registry("segmentation loss")

# Keeps "unsmoothed" Dice finite when both prediction and target are empty (0 / 0).


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"loss parameter '{name}' must be {bound}, but got {value}. Pick a value in range.")


# --- library losses -------------------------------------------------------------------------------


@SEG_LOSSES.register("dice", library="monai")
def dice(smooth: float = 1e-5, batch: bool = False):
    """Soft Dice on sigmoid probabilities (MONAI DiceLoss); smooth=0 disables smoothing, batch=True pools the batch.

    Args:
        smooth: added to numerator and denominator. With 0 the numerator is unsmoothed and the denominator
            gets 1e-7 only to stay finite, so an empty target predicted empty scores loss 1, not 0.
        batch: False computes one Dice per sample and averages (small structures count as much as big
            ones); True computes one Dice over the whole batch (stable when some masks are empty).
    """
    _check_range("smooth", smooth, 0.0)
    from monai.losses import DiceLoss

    from bench._loss_impl import TINY

    return DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=max(smooth, TINY), batch=batch)


@SEG_LOSSES.register("dice_squared", library="monai")
def dice_squared(smooth: float = 1e-5, batch: bool = False):
    """V-Net soft Dice with squared denominators Σp² + Σt² (Milletari 2016; MONAI DiceLoss squared_pred)."""
    _check_range("smooth", smooth, 0.0)
    from monai.losses import DiceLoss

    from bench._loss_impl import TINY

    return DiceLoss(
        sigmoid=True, squared_pred=True, smooth_nr=smooth, smooth_dr=max(smooth, TINY), batch=batch
    )


@SEG_LOSSES.register("generalized_dice", library="monai")
def generalized_dice(w_type: str = "square", batch: bool = False):
    """Generalised Dice with inverse-volume class weights (Sudre 2017; MONAI GeneralizedDiceLoss).

    With a single foreground channel the weights cancel except for empty targets, where MONAI gives a
    zero loss (so empty samples do not train this loss at all; pair it with batch=True on sparse data).
    """
    if w_type not in ("square", "simple", "uniform"):
        raise ConfigError(f"generalized_dice w_type must be square, simple or uniform, but got '{w_type}'.")
    from monai.losses import GeneralizedDiceLoss

    return GeneralizedDiceLoss(sigmoid=True, w_type=w_type, batch=batch)


@SEG_LOSSES.register("tversky", library="monai")
def tversky(alpha: float = 0.3, beta: float = 0.7):
    """Tversky loss 1 − TP/(TP + α·FP + β·FN) (Salehi 2017; MONAI TverskyLoss); β > α favours recall."""
    _check_range("alpha", alpha, 0.0, 1.0)
    _check_range("beta", beta, 0.0, 1.0)
    from monai.losses import TverskyLoss

    return TverskyLoss(sigmoid=True, alpha=alpha, beta=beta)


@SEG_LOSSES.register("focal_tversky")
def focal_tversky(alpha: float = 0.3, beta: float = 0.7, gamma: float = 0.75):
    """Focal Tversky (1 − TI)^γ per sample, averaged (Abraham & Khan 2019); γ < 1 focuses on hard samples.

    The paper writes the exponent as 1/γ with γ in [1, 3] (best 4/3); ``gamma`` here is that 1/γ, so the
    paper's choice is gamma = 0.75. MONAI has no focal Tversky; the Tversky index comes from its
    TverskyLoss (reduction="none").
    """
    _check_range("alpha", alpha, 0.0, 1.0)
    _check_range("beta", beta, 0.0, 1.0)
    _check_range("gamma", gamma, 0.1, 5.0)
    from bench import _loss_impl

    return _loss_impl.focal_tversky(alpha, beta, gamma)


@SEG_LOSSES.register("log_cosh_dice")
def log_cosh_dice(smooth: float = 1e-5):
    """log(cosh(1 − Dice)): Dice loss smoothed into a convex-looking curve (Jadon 2020), on MONAI DiceLoss."""
    _check_range("smooth", smooth, 0.0)
    from bench import _loss_impl

    return _loss_impl.log_cosh_dice(smooth)


@SEG_LOSSES.register("dice_ce", library="monai")
def dice_ce(ce_weight: float = 1.0):
    """Soft Dice + binary cross-entropy (MONAI DiceCELoss), weighted 1 : ce_weight."""
    _check_range("ce_weight", ce_weight, 0.0)
    from monai.losses import DiceCELoss

    return DiceCELoss(sigmoid=True, lambda_dice=1.0, lambda_ce=ce_weight)


@SEG_LOSSES.register("dice_focal", library="monai")
def dice_focal(focal_weight: float = 1.0, focal_gamma: float = 2.0):
    """Soft Dice + sigmoid focal loss (Lin 2017; MONAI DiceFocalLoss), weighted 1 : focal_weight.

    Args:
        focal_weight: weight of the focal term.
        focal_gamma: focusing exponent γ of the focal term (0 gives plain BCE); named apart from
            focal_tversky's ``gamma`` so one search space can tune both.
    """
    _check_range("focal_weight", focal_weight, 0.0)
    _check_range("focal_gamma", focal_gamma, 0.0, 10.0)
    from monai.losses import DiceFocalLoss

    return DiceFocalLoss(sigmoid=True, gamma=focal_gamma, lambda_dice=1.0, lambda_focal=focal_weight)


# --- the seed's region-restricting variants (hand-written: no library has them) ---------------------


@SEG_LOSSES.register("spread_dice", perfect_is_minimum=False)
def spread_dice(weight: float = 0.1, smooth: float = 1e-5):
    """Spread-penalised Dice: (1 − Dice) + α·√σx·√σy, penalising predicted mass scattered over the image.

    With p = sigmoid(logits), m = p / Σp and pixel coordinates normalised to [0, 1] per axis, the spread
    along x is σx = Σ |x − Σx·m| · m (the mean absolute distance of the predicted mass from its centre).
    In 3D the penalty is α·(σx·σy·σz)^(1/3): the geometric mean of the per-axis spreads, which is what
    √σx·√σy is in 2D, so α means the same in both. Dice and penalty are computed per sample and then
    averaged; the seed summed the spreads over the whole batch as one mass, which mixes samples.

    The minimum is not exactly at the perfect prediction: a perfect mask still pays α times the spread of
    the true mask (e.g. ≈0.01 for a heart a third of the image wide at α = 0.1).

    Args:
        weight: α, the weight of the spread penalty (0 gives plain soft Dice); named ``weight`` like
            the other losses' penalty weights, so search spaces can share the key.
        smooth: Dice smoothing added to numerator and denominator.
    """
    _check_range("weight", weight, 0.0)
    _check_range("smooth", smooth, 0.0)
    from bench import _loss_impl

    return _loss_impl.spread_dice(weight, smooth)


@SEG_LOSSES.register("spread_ratio_dice", perfect_is_minimum=False)
def spread_ratio_dice(bce_weight: float = 0.0, smooth: float = 1e-5):
    """Spread-ratio Dice: (1 − Dice) + σσ(pred)/σσ(true) [+ w·BCE], penalising predictions wider than truth.

    σσ(·) is the geometric mean of the per-axis spreads (see ``spread_dice``) of the sigmoid probabilities
    (pred) or of the true mask (true); computed per sample, then averaged. The ratio term rewards shrinking
    the prediction, so its minimum is below the perfect prediction's value (≈1); use it as the seed did,
    as a compactness pressure balanced by Dice. A sample with an empty true mask has no reference spread:
    its ratio term is 0 and only Dice (and BCE) act. A one-pixel true mask has spread ~0; the denominator
    is clamped at 1e-6 so the loss stays finite (but large).

    Args:
        bce_weight: weight of an added binary cross-entropy term (0 = off).
        smooth: Dice smoothing added to numerator and denominator.
    """
    _check_range("bce_weight", bce_weight, 0.0)
    _check_range("smooth", smooth, 0.0)
    from bench import _loss_impl

    return _loss_impl.spread_ratio(False, bce_weight, smooth)


@SEG_LOSSES.register("spread_ratio_abs_dice")
def spread_ratio_abs_dice(bce_weight: float = 0.0, smooth: float = 1e-5):
    """Spread-matching Dice: (1 − Dice) + |1 − σσ(pred)/σσ(true)| [+ w·BCE]; 0 at the perfect prediction.

    Same spreads as ``spread_ratio_dice`` but penalises any mismatch of spread, too wide or too narrow,
    so the minimum is the perfect prediction. Empty true masks contribute only Dice (and BCE).

    Args:
        bce_weight: weight of an added binary cross-entropy term (0 = off).
        smooth: Dice smoothing added to numerator and denominator.
    """
    _check_range("bce_weight", bce_weight, 0.0)
    _check_range("smooth", smooth, 0.0)
    from bench import _loss_impl

    return _loss_impl.spread_ratio(True, bce_weight, smooth)


@SEG_LOSSES.register("roi_dice")
def roi_dice(weight: float = 1.0, margin: int = 3, smooth: float = 1e-5):
    """ROI-restricted Dice: (1 − Dice) + w·Σp·(1 − roi) / (Σp + 1), penalising predicted mass outside a ROI.

    Call as ``loss(logits, target, roi=mask)`` with a region mask (e.g. the lungs) of the target's shape.
    Without ``roi`` (the generic ``loss(logits, target)`` contract) the ROI is the true mask dilated by
    ``margin`` pixels, so the loss still penalises scattered false positives far from the structure. The
    "+1" in the denominator is one pixel's worth of mass, so an all-background prediction scores ~0.

    Args:
        weight: weight of the outside-mass fraction.
        margin: dilation in pixels of the fallback ROI (ignored when ``roi`` is given).
        smooth: Dice smoothing added to numerator and denominator.
    """
    _check_range("weight", weight, 0.0)
    _check_range("margin", margin, 0)
    _check_range("smooth", smooth, 0.0)
    from bench import _loss_impl

    return _loss_impl.RoiDice(weight, int(margin), smooth)
