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

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss, GeneralizedDiceLoss, TverskyLoss

from bench.errors import ConfigError
from bench.registry import Registry

SEG_LOSSES: Registry = Registry("segmentation loss")

# Keeps "unsmoothed" Dice finite when both prediction and target are empty (0 / 0).
_TINY = 1e-7


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(f"loss parameter '{name}' must be {bound}, but got {value}. Pick a value in range.")


def _dice_per_sample(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice coefficient per sample (shape (N,)): (2Σpt + s) / (Σp + Σt + s), p = sigmoid(logits)."""
    dice_loss = DiceLoss(sigmoid=True, reduction="none", smooth_nr=smooth, smooth_dr=max(smooth, _TINY))
    return 1.0 - dice_loss(logits, target).flatten(1).mean(1)


def _spreads(weights: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-axis mean absolute spread of a non-negative mass, shape (N, spatial_dims).

    With m = w / Σw and coordinates normalised to [0, 1] on each axis, σ_axis = Σ |x − Σ x·m| · m.
    A sample with no mass gets spread 0.
    """
    n = weights.shape[0]
    w = weights.reshape(n, *weights.shape[2:])  # drop the single channel
    total = w.flatten(1).sum(1).clamp_min(1e-12)
    m = w / total.view(n, *([1] * (w.dim() - 1)))
    out = []
    for axis in range(1, w.dim()):
        size = w.shape[axis]
        coords = (
            torch.linspace(0.0, 1.0, size, dtype=w.dtype, device=w.device) if size > 1 else w.new_zeros(1)
        )
        shape = [1] * w.dim()
        shape[axis] = size
        coords = coords.view(shape)
        centre = (coords * m).flatten(1).sum(1).view(n, *([1] * (w.dim() - 1)))
        out.append(((coords - centre).abs() * m).flatten(1).sum(1))
    return torch.stack(out, dim=1)


def _geometric_mean(spreads: torch.Tensor) -> torch.Tensor:
    """(σx·σy[·σz])^(1/d) per sample; the small epsilon keeps the root's gradient finite at 0."""
    return (spreads.prod(dim=1) + 1e-12) ** (1.0 / spreads.shape[1])


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
    return DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=max(smooth, _TINY), batch=batch)


@SEG_LOSSES.register("dice_squared", library="monai")
def dice_squared(smooth: float = 1e-5, batch: bool = False):
    """V-Net soft Dice with squared denominators Σp² + Σt² (Milletari 2016; MONAI DiceLoss squared_pred)."""
    _check_range("smooth", smooth, 0.0)
    return DiceLoss(
        sigmoid=True, squared_pred=True, smooth_nr=smooth, smooth_dr=max(smooth, _TINY), batch=batch
    )


@SEG_LOSSES.register("generalized_dice", library="monai")
def generalized_dice(w_type: str = "square", batch: bool = False):
    """Generalised Dice with inverse-volume class weights (Sudre 2017; MONAI GeneralizedDiceLoss).

    With a single foreground channel the weights cancel except for empty targets, where MONAI gives a
    zero loss (so empty samples do not train this loss at all; pair it with batch=True on sparse data).
    """
    if w_type not in ("square", "simple", "uniform"):
        raise ConfigError(f"generalized_dice w_type must be square, simple or uniform, but got '{w_type}'.")
    return GeneralizedDiceLoss(sigmoid=True, w_type=w_type, batch=batch)


@SEG_LOSSES.register("tversky", library="monai")
def tversky(alpha: float = 0.3, beta: float = 0.7):
    """Tversky loss 1 − TP/(TP + α·FP + β·FN) (Salehi 2017; MONAI TverskyLoss); β > α favours recall."""
    _check_range("alpha", alpha, 0.0, 1.0)
    _check_range("beta", beta, 0.0, 1.0)
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
    base = TverskyLoss(sigmoid=True, alpha=alpha, beta=beta, reduction="none")

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Clamp so that d/dx x^γ (γ < 1) stays finite at a perfect prediction.
        return (base(logits, target).flatten(1).mean(1).clamp_min(1e-6) ** gamma).mean()

    return loss


@SEG_LOSSES.register("log_cosh_dice")
def log_cosh_dice(smooth: float = 1e-5):
    """log(cosh(1 − Dice)): Dice loss smoothed into a convex-looking curve (Jadon 2020), on MONAI DiceLoss."""
    _check_range("smooth", smooth, 0.0)
    base = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=max(smooth, _TINY))

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.cosh(base(logits, target)))

    return loss


@SEG_LOSSES.register("dice_ce", library="monai")
def dice_ce(ce_weight: float = 1.0):
    """Soft Dice + binary cross-entropy (MONAI DiceCELoss), weighted 1 : ce_weight."""
    _check_range("ce_weight", ce_weight, 0.0)
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

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = _dice_per_sample(logits, target, smooth)
        penalty = _geometric_mean(_spreads(torch.sigmoid(logits)))
        return ((1.0 - d) + weight * penalty).mean()

    return loss


def _spread_ratio(
    logits: torch.Tensor, target: torch.Tensor, absolute: bool, bce_weight: float, smooth: float
):
    d = _dice_per_sample(logits, target, smooth)
    pred = _geometric_mean(_spreads(torch.sigmoid(logits)))
    true = _geometric_mean(_spreads(target.float()))
    ratio = pred / true.clamp_min(1e-6)
    term = (1.0 - ratio).abs() if absolute else ratio
    # An empty true mask has no spread to compare with: such samples keep only the Dice (and BCE) terms.
    has_target = target.flatten(1).sum(1) > 0
    term = torch.where(has_target, term, torch.zeros_like(term))
    total = ((1.0 - d) + term).mean()
    if bce_weight > 0:
        total = total + bce_weight * F.binary_cross_entropy_with_logits(logits, target.float())
    return total


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
    return lambda logits, target: _spread_ratio(logits, target, False, bce_weight, smooth)


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
    return lambda logits, target: _spread_ratio(logits, target, True, bce_weight, smooth)


class _RoiDice:
    def __init__(self, weight: float, margin: int, smooth: float):
        self.weight, self.margin, self.smooth = weight, margin, smooth

    def fallback_roi(self, target: torch.Tensor) -> torch.Tensor:
        """The true mask dilated by ``margin`` pixels (a (2·margin+1)-wide square/cube max filter)."""
        if self.margin == 0:
            return target.float()
        pool = F.max_pool3d if target.dim() == 5 else F.max_pool2d
        return pool(target.float(), kernel_size=2 * self.margin + 1, stride=1, padding=self.margin)

    def __call__(
        self, logits: torch.Tensor, target: torch.Tensor, roi: torch.Tensor | None = None
    ) -> torch.Tensor:
        roi = self.fallback_roi(target) if roi is None else roi.float()
        p = torch.sigmoid(logits)
        outside = (p * (1.0 - roi)).flatten(1).sum(1)
        # "+ 1" (one pixel of mass) keeps the fraction ~0 for an all-background prediction instead of 0/0.
        fraction = outside / (p.flatten(1).sum(1) + 1.0)
        d = _dice_per_sample(logits, target, self.smooth)
        return ((1.0 - d) + self.weight * fraction).mean()


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
    return _RoiDice(weight, int(margin), smooth)
