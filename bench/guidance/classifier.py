"""Classifier guidance: how a heart mask steers an image classifier (the tensor code of ``GUIDANCE``).

Built through ``GUIDANCE.create(name, **params)`` (see :mod:`bench.guidance.entries`), which holds each
strategy's defaults and checks its parameters; the classes here take validated values.

Reference: Ross, Hughes & Doshi-Velez, "Right for the right reasons: training differentiable models by
constraining their explanations", IJCAI 2017 (``attention_loss``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from bench.errors import ConfigError
from bench.guidance.base import Guidance
from bench.guidance.geometry import bounding_boxes, crop_to_boxes, pool_to


def feature_stages(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The successive feature stages of a classifier, shallow to deep, found by module name.

    MONAI ResNet: ``layer1..layer4``; MONAI DenseNet: ``features.denseblock1..4``; MONAI EfficientNet:
    the children of ``_blocks``. Raises ConfigError for other networks.
    """
    named = dict(model.named_modules())
    for names in (
        [f"layer{i}" for i in range(1, 5)],
        [f"features.denseblock{i}" for i in range(1, 5)],
    ):
        if all(n in named for n in names):
            return [named[n] for n in names]
    if "_blocks" in named:
        return list(named["_blocks"].children())
    raise ConfigError(
        f"feature guidance needs a MONAI ResNet, DenseNet or EfficientNet classifier, but got "
        f"{type(model).__name__}. Use another guidance strategy or classifier."
    )


def _first_conv(model: torch.nn.Module) -> torch.nn.Module:
    for module in model.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            return module
    raise ConfigError(f"feature guidance needs a convolutional classifier, but got {type(model).__name__}.")


class NoGuidance(Guidance):
    """The classifier sees the whole image; the mask is ignored."""


class SoftMask(Guidance):
    """Seed's soft mask: image × clip(mask, floor, 1), so pixels outside the heart are dimmed to `floor`."""

    def __init__(self, *, floor: float, train_mask: str):
        super().__init__(train_mask)
        self.floor = floor

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return images * masks.clamp(min=self.floor, max=1.0)


class Crop(Guidance):
    """Hard crop to the mask's bounding box + margin (fraction of the side), resampled to the input size.

    Batch-wise and differentiable (affine grid + bilinear ``grid_sample``). An empty mask keeps the whole
    image. The aspect ratio is not preserved: the box is stretched to the input size.
    """

    def __init__(self, *, margin: float, train_mask: str):
        super().__init__(train_mask)
        self.margin = margin

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        lo, hi = bounding_boxes(masks, self.margin)
        return crop_to_boxes(images, lo, hi)


class MaskChannel(Guidance):
    """The mask is an extra input channel: the classifier sees [image, mask] and learns how to use it."""

    extra_channels = 1

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return torch.cat([images, masks.to(images.dtype)], dim=1)


class GatedModel(torch.nn.Module):
    """Runs a classifier whose stage outputs are scaled by the downsampled mask (the input's last channel)."""

    def __init__(self, model: torch.nn.Module, strength: float):
        super().__init__()
        self.model = model
        self.strength = strength
        self._mask: torch.Tensor | None = None
        for stage in feature_stages(model):
            stage.register_forward_hook(self._gate)

    def _gate(self, module, args, output):
        if self._mask is None:
            return output
        mask = pool_to(self._mask, output.shape[2:])
        # 1 inside the mask, 1 − strength outside: strength 0 is no gating, 1 zeroes the background.
        return output * (1.0 - self.strength * (1.0 - mask))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._mask = x[:, -1:]
        try:
            return self.model(x[:, :-1])
        finally:
            self._mask = None


class FeatureGating(Guidance):
    """Feature gating: every encoder stage's output × (1 − strength·(1 − mask↓)), mask↓ pooled to its size.

    ``inputs`` appends the mask as a last channel; the wrapped model (``GatedModel``) strips it before the
    classifier, so ``extra_channels`` stays 0. Works with the MONAI ResNet, DenseNet and EfficientNet
    classifiers (see ``feature_stages``).
    """

    def __init__(self, *, strength: float, train_mask: str):
        super().__init__(train_mask)
        self.strength = strength

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return torch.cat([images, masks.to(images.dtype)], dim=1)

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return GatedModel(model, self.strength)


class AuxSegModel(torch.nn.Module):
    """A classifier plus a 1×1-conv segmentation head on one feature stage; keeps the head's last logits."""

    def __init__(self, model: torch.nn.Module, stage: int):
        super().__init__()
        self.model = model
        stages = feature_stages(model)
        if not -len(stages) <= stage < len(stages):
            raise ConfigError(f"aux_seg stage must index one of {len(stages)} stages, but got {stage}.")
        self._features: torch.Tensor | None = None
        stages[stage].register_forward_hook(self._keep)
        conv = _first_conv(model)
        dims = 3 if isinstance(conv, torch.nn.Conv3d) else 2
        # One dry run finds the stage's width, so the head exists before the optimiser is built.
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, conv.in_channels) + (32,) * dims))
        model.train(was_training)
        conv_cls = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.head = conv_cls(self._features.shape[1], 1, kernel_size=1)
        self._features = None
        self.aux_logits: torch.Tensor | None = None

    def _keep(self, module, args, output):
        self._features = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.aux_logits = self.head(self._features)
        self._features = None
        return out


class AuxiliarySegmentation(Guidance):
    """Multi-task: an auxiliary head segments the mask from classifier features; loss += λ·DiceCE(head, mask).

    The head is a 1×1 convolution on feature stage ``stage`` (index into ``feature_stages``; 1 is ResNet's
    ``layer2``); its logits are upsampled to the mask size for the loss. The image input is unchanged, so
    the mask only shapes what the features learn, and is not needed at test time.
    """

    def __init__(self, *, weight: float, stage: int, train_mask: str):
        super().__init__(train_mask)
        self.weight = weight
        self.stage = int(stage)
        self._loss = DiceCELoss(sigmoid=True)

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return AuxSegModel(model, self.stage)

    def extra_loss(self, model, images, masks, logits) -> torch.Tensor | None:
        aux = getattr(model, "aux_logits", None)
        if aux is None:
            raise ConfigError(
                "aux_seg extra_loss needs the model returned by wrap_model, but got a bare model."
            )
        mode = "trilinear" if aux.dim() == 5 else "bilinear"
        aux = F.interpolate(aux, size=masks.shape[2:], mode=mode, align_corners=False)
        return self.weight * self._loss(aux, (masks > 0.5).to(aux.dtype))


class AttentionLoss(Guidance):
    """Right for the right reasons (Ross 2017): loss += λ·Σ((1 − mask)·∂Σ_k log p_k/∂x)², mean over the batch.

    Penalises input-gradient saliency outside the mask, so the classifier's evidence comes from the heart;
    the gradient is taken with ``create_graph=True`` so the penalty itself is trained. ``inputs`` marks
    the input as requiring grad, so the gradient comes from the training forward pass itself; if the
    caller passes an input without grad, the model is run once more on a copy that has it.
    """

    def __init__(self, *, weight: float, train_mask: str):
        super().__init__(train_mask)
        self.weight = weight

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        if images.requires_grad:  # already a leaf someone differentiates against (saliency metrics)
            return images
        return images.detach().requires_grad_(True)

    def extra_loss(self, model, images, masks, logits) -> torch.Tensor | None:
        if not torch.is_grad_enabled():
            return None
        if not (images.requires_grad and logits.requires_grad):
            images = images.detach().requires_grad_(True)
            logits = model(images)
        log_probs = torch.log_softmax(logits, dim=1).sum()
        (grad,) = torch.autograd.grad(log_probs, images, create_graph=True)
        outside = 1.0 - masks.to(grad.dtype)
        return self.weight * (outside * grad).square().flatten(1).sum(1).mean()
