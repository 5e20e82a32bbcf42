"""Torch implementations of the hand-written losses in :mod:`bench.losses` (private: use ``SEG_LOSSES``).

Imported by the light factories in ``bench.losses`` when a loss is created, so that listing and describing
losses never imports torch or MONAI. Formulas are documented on the factories.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, TverskyLoss

TINY = 1e-7  # keeps Dice denominators above zero when smooth is 0


def dice_per_sample(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice coefficient per sample (shape (N,)): (2Σpt + s) / (Σp + Σt + s), p = sigmoid(logits)."""
    dice_loss = DiceLoss(sigmoid=True, reduction="none", smooth_nr=smooth, smooth_dr=max(smooth, TINY))
    return 1.0 - dice_loss(logits, target).flatten(1).mean(1)


def spreads(weights: torch.Tensor) -> torch.Tensor:
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


def geometric_mean(spread: torch.Tensor) -> torch.Tensor:
    """(σx·σy[·σz])^(1/d) per sample; the small epsilon keeps the root's gradient finite at 0."""
    return (spread.prod(dim=1) + 1e-12) ** (1.0 / spread.shape[1])


def focal_tversky(alpha: float, beta: float, gamma: float):
    base = TverskyLoss(sigmoid=True, alpha=alpha, beta=beta, reduction="none")

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Clamp so that d/dx x^γ (γ < 1) stays finite at a perfect prediction.
        return (base(logits, target).flatten(1).mean(1).clamp_min(1e-6) ** gamma).mean()

    return loss


def log_cosh_dice(smooth: float):
    base = DiceLoss(sigmoid=True, smooth_nr=smooth, smooth_dr=max(smooth, TINY))

    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.cosh(base(logits, target)))

    return loss


def spread_dice(weight: float, smooth: float):
    def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = dice_per_sample(logits, target, smooth)
        penalty = geometric_mean(spreads(torch.sigmoid(logits)))
        return ((1.0 - d) + weight * penalty).mean()

    return loss


def _spread_ratio(
    logits: torch.Tensor, target: torch.Tensor, absolute: bool, bce_weight: float, smooth: float
) -> torch.Tensor:
    d = dice_per_sample(logits, target, smooth)
    pred = geometric_mean(spreads(torch.sigmoid(logits)))
    true = geometric_mean(spreads(target.float()))
    ratio = pred / true.clamp_min(1e-6)
    term = (1.0 - ratio).abs() if absolute else ratio
    # An empty true mask has no spread to compare with: such samples keep only the Dice (and BCE) terms.
    has_target = target.flatten(1).sum(1) > 0
    term = torch.where(has_target, term, torch.zeros_like(term))
    total = ((1.0 - d) + term).mean()
    if bce_weight > 0:
        total = total + bce_weight * F.binary_cross_entropy_with_logits(logits, target.float())
    return total


def spread_ratio(absolute: bool, bce_weight: float, smooth: float):
    return lambda logits, target: _spread_ratio(logits, target, absolute, bce_weight, smooth)


class RoiDice:
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
        d = dice_per_sample(logits, target, self.smooth)
        return ((1.0 - d) + self.weight * fraction).mean()
