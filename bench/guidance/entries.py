"""Every guidance strategy's registry entry: name, description, parameters with defaults, checks.

Which tasks use a family is the tasks' word (``TaskSpec.guidance``), not the entries'.

Each entry is a light factory: it checks its parameters (so a bad value fails before torch loads) and
imports the strategy's tensor code only when it is created. ``Registry.entry(name).parameters()`` reads
the defaults from the factory's signature. Adding a strategy is a class in ``classifier.py`` or
``lesion.py`` plus one factory here.
"""

from __future__ import annotations

from bench.guidance.base import GUIDANCE, LESION_GUIDANCE, check_fill, check_range

# --- classifier guidance (xray-heart) ---------------------------------------------------------------------


@GUIDANCE.register("none")
def none(train_mask: str = "predicted"):
    """The classifier sees the whole image; the mask is ignored."""
    from bench.guidance.classifier import NoGuidance

    return NoGuidance(train_mask=train_mask)


@GUIDANCE.register("soft_mask")
def soft_mask(floor: float = 0.2, train_mask: str = "predicted"):
    """Seed's soft mask: image × clip(mask, floor, 1), so pixels outside the heart are dimmed to `floor`."""
    check_range("floor", floor, 0.0, 1.0)
    from bench.guidance.classifier import SoftMask

    return SoftMask(floor=floor, train_mask=train_mask)


@GUIDANCE.register("crop")
def crop(margin: float = 0.1, train_mask: str = "predicted"):
    """Hard crop to the mask's bounding box + margin (fraction of the side), resampled to the input size."""
    check_range("margin", margin, 0.0, 1.0)
    from bench.guidance.classifier import Crop

    return Crop(margin=margin, train_mask=train_mask)


@GUIDANCE.register("channel")
def channel(train_mask: str = "predicted"):
    """The mask is an extra input channel: the classifier sees [image, mask] and learns how to use it."""
    from bench.guidance.classifier import MaskChannel

    return MaskChannel(train_mask=train_mask)


@GUIDANCE.register("gate")
def gate(strength: float = 0.5, train_mask: str = "predicted"):
    """Feature gating: every encoder stage's output × (1 − strength·(1 − mask↓)), mask↓ pooled to its size."""
    check_range("strength", strength, 0.0, 1.0)
    from bench.guidance.classifier import FeatureGating

    return FeatureGating(strength=strength, train_mask=train_mask)


@GUIDANCE.register("aux_seg")
def aux_seg(weight: float = 0.5, stage: int = 1, train_mask: str = "predicted"):
    """Multi-task: an auxiliary head segments the mask from classifier features; loss += λ·DiceCE(head, mask)."""
    check_range("weight", weight, 0.0)
    from bench.guidance.classifier import AuxiliarySegmentation

    return AuxiliarySegmentation(weight=weight, stage=stage, train_mask=train_mask)


@GUIDANCE.register("attention_loss")
def attention_loss(weight: float = 1.0, train_mask: str = "predicted"):
    """Right for the right reasons (Ross 2017): loss += λ·Σ((1 − mask)·∂Σ_k log p_k/∂x)², mean over the batch."""
    check_range("weight", weight, 0.0)
    from bench.guidance.classifier import AttentionLoss

    return AttentionLoss(weight=weight, train_mask=train_mask)


# --- lesion guidance (ct-lung) ----------------------------------------------------------------------------


@LESION_GUIDANCE.register("none")
def no_lesion_guidance(train_mask: str = "predicted"):
    """The lesion segmenter sees the whole volume; the lung mask is ignored."""
    from bench.guidance.lesion import NoLesionGuidance

    return NoLesionGuidance(train_mask=train_mask)


@LESION_GUIDANCE.register("restrict_output")
def restrict_output(dilate: int = 2, fill: float = -20.0, train_mask: str = "predicted"):
    """Logits outside the lung mask (dilated by ``dilate`` voxels) are set to ``fill`` (sigmoid ≈ 0)."""
    check_range("dilate", dilate, 0)
    check_fill(fill)
    from bench.guidance.lesion import RestrictOutput

    return RestrictOutput(dilate=dilate, fill=fill, train_mask=train_mask)


@LESION_GUIDANCE.register("lung_channel")
def lung_channel(train_mask: str = "predicted"):
    """The lung mask is an extra input channel of the lesion segmenter; outputs are unchanged."""
    from bench.guidance.lesion import LungChannel

    return LungChannel(train_mask=train_mask)


@LESION_GUIDANCE.register("lung_crop")
def lung_crop(margin: float = 0.05, fill: float = -20.0, train_mask: str = "predicted"):
    """Segment inside the lungs' bounding box (+ margin, fraction of the side), resampled to full size."""
    check_range("margin", margin, 0.0, 1.0)
    check_fill(fill)
    from bench.guidance.lesion import LungCrop

    return LungCrop(margin=margin, fill=fill, train_mask=train_mask)


# The segmentation task's names for the two strategies named after ct-lung's lungs: the same strategies, the
# organ in the lungs' place (the lung_* names stay: ct-lung's spaces and every earlier run use them).
@LESION_GUIDANCE.register("organ_channel")
def organ_channel(train_mask: str = "predicted"):
    """The guide organ's mask is an extra input channel of the target segmenter (``lung_channel``)."""
    return lung_channel(train_mask=train_mask)


@LESION_GUIDANCE.register("organ_crop")
def organ_crop(margin: float = 0.05, fill: float = -20.0, train_mask: str = "predicted"):
    """Segment inside the guide organ's bounding box (+ margin, fraction of the side), resampled to full size
    (``lung_crop``)."""
    return lung_crop(margin=margin, fill=fill, train_mask=train_mask)


@LESION_GUIDANCE.register("cascade")
def cascade(margin: float = 0.05, dilate: int = 2, fill: float = -20.0, train_mask: str = "predicted"):
    """Two-stage cascade: the lung stage's mask sets the crop (``lung_crop``) and restricts the output."""
    check_range("margin", margin, 0.0, 1.0)
    check_range("dilate", dilate, 0)
    check_fill(fill)
    from bench.guidance.lesion import Cascade

    return Cascade(margin=margin, dilate=dilate, fill=fill, train_mask=train_mask)
