"""Registries of mask-guidance strategies: how an organ mask steers a second network.

Two registries live here, one per use:

``GUIDANCE`` — a heart (or lung) mask steers an image **classifier** (x-ray task). A strategy is a
``Guidance`` object; a trial uses it as::

    g = GUIDANCE.create(name, **params)
    model = g.wrap_model(CLASSIFIERS.create(arch, in_channels=1 + g.extra_channels, num_classes=K))
    x = g.inputs(images, masks)                    # (N, 1, H, W), masks (N, 1, H, W) in [0, 1]
    logits = model(x)
    loss = cross_entropy(logits, y)
    extra = g.extra_loss(model, x, masks, logits)  # None or a scalar to add
    if extra is not None: loss = loss + extra

``inputs`` may append the mask as a channel that the wrapped model strips again (``gate``), so always feed
the model with what ``inputs`` returned. ``extra_loss`` may run autograd on ``x`` (``attention_loss``) or
read features the wrapper stored during the forward pass (``aux_seg``).

``LESION_GUIDANCE`` — a lung mask steers a **segmenter** of lesions (CT task). A strategy is a
``LesionGuidance`` object with two methods, used as::

    g = LESION_GUIDANCE.create(name, **params)
    seg = SEG_MODELS.create(arch, in_channels=1 + g.extra_channels, classes=1, spatial_dims=3, ...)
    logits = g.outputs(seg(g.inputs(ct, lung)), lung)   # ct, lung: (N, 1, D, H, W); lung in [0, 1]
    loss = seg_loss(logits, lesion)                      # logits are on the original grid

``inputs(images, lung)`` builds the segmenter's input (same spatial size as ``images``); ``outputs(logits,
lung)`` maps the segmenter's logits back onto the image grid and may suppress everything outside the lung
(logits set to ``fill``, a large negative value, so sigmoid ≈ 0 and the suppressed voxels carry no
gradient). Both work on 2D (N, C, H, W) and 3D (N, C, D, H, W) tensors.

Patch training (CT task). A segmenter trained on patches never sees whole volumes, so ``outputs`` (which
needs the whole grid to paste crops back) cannot run on a patch. Two more methods split it up::

    x = g.inputs(ct, lung)                       # whole volume, segmenter grid
    y = g.to_grid(lesion, lung) > 0.5            # the target on the same grid
    lung_g = g.to_grid(lung, lung)               # the lung on the same grid
    # ... sample patches of (x, y, lung_g) ...
    loss = seg_loss(g.restrict(seg(x_patch), lung_g_patch), y_patch)
    # inference: logits = g.outputs(sliding_window(seg, x), lung) on the image grid

``to_grid`` is identity unless the strategy crops; ``restrict`` is the voxel-wise part of ``outputs`` (the
lung restriction of ``restrict_output`` and ``cascade``), identity otherwise.

Parameter names are shared: ``dilate`` is voxels of lung dilation before restricting (``restrict_output``,
``cascade``), ``margin`` the crop box margin as a fraction of the side (``lung_crop``, ``cascade``).

Mask source. Every strategy of both registries has ``train_mask``: ``"predicted"`` (default) trains the
guided network on the masks the first-stage segmenter predicts, ``"ground_truth"`` trains it on the
annotated masks. Validation and test always use predicted masks, whatever ``train_mask`` says, so the
score measures the deployed pipeline; training on ground truth is faster to converge but sees cleaner
masks than it will get. Tasks read ``strategy.train_mask`` to choose which masks to pass during training.

References:
    Ross, Hughes & Doshi-Velez, "Right for the right reasons: training differentiable models by
    constraining their explanations", IJCAI 2017 (``attention_loss``).
    Jaderberg et al., "Spatial transformer networks", NeurIPS 2015 (differentiable crops by grid sampling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from bench.errors import ConfigError
from bench.registry import Registry

GUIDANCE: Registry = Registry("guidance strategy")
LESION_GUIDANCE: Registry = Registry("lesion guidance strategy")

MASK_SOURCES = ("predicted", "ground_truth")


def _check_mask_source(train_mask: str) -> str:
    if train_mask not in MASK_SOURCES:
        raise ConfigError(
            f"train_mask must be one of {list(MASK_SOURCES)}, but got '{train_mask}'. "
            "Validation and test always use predicted masks."
        )
    return train_mask


def _check_range(name: str, value: float, low: float, high: float | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ConfigError(
            f"guidance parameter '{name}' must be {bound}, but got {value}. Pick a value in range."
        )


# --- shared tensor helpers ------------------------------------------------------------------------


def bounding_boxes(masks: torch.Tensor, margin: float = 0.0, threshold: float = 0.5):
    """Per-sample bounding boxes of ``masks > threshold``, widened by ``margin`` × side on each end.

    Returns ``(lo, hi)``, two long tensors of shape (N, spatial_dims) with inclusive pixel bounds in
    tensor axis order (H, W) or (D, H, W). A sample with an empty mask gets the whole image.
    """
    fg = masks.flatten(0, 1) > threshold if masks.shape[1] == 1 else (masks > threshold).any(1)
    dims = fg.dim() - 1
    los, his = [], []
    for axis in range(dims):
        size = fg.shape[axis + 1]
        other = [a + 1 for a in range(dims) if a != axis]
        present = fg.any(dim=other) if other else fg
        idx = torch.arange(size, device=masks.device)
        lo = torch.where(present, idx, size).amin(1)
        hi = torch.where(present, idx, -1).amax(1)
        empty = hi < 0
        pad = round(margin * size)
        lo = torch.where(empty, 0, (lo - pad).clamp_min(0))
        hi = torch.where(empty, size - 1, (hi + pad).clamp_max(size - 1))
        los.append(lo)
        his.append(hi)
    return torch.stack(los, 1), torch.stack(his, 1)


def _affine(lo: torch.Tensor, hi: torch.Tensor, sizes: tuple[int, ...], dtype) -> torch.Tensor:
    """Theta mapping the output grid onto the box [lo, hi] (align_corners=False convention)."""
    n, dims = lo.shape
    sizes_t = torch.tensor(sizes, dtype=dtype, device=lo.device)
    a = 2 * lo.to(dtype) / sizes_t - 1  # left edge of pixel lo
    b = 2 * (hi.to(dtype) + 1) / sizes_t - 1  # right edge of pixel hi
    scale, shift = (b - a) / 2, (a + b) / 2
    theta = torch.zeros(n, dims, dims + 1, dtype=dtype, device=lo.device)
    # affine_grid orders coordinates x (last axis) first, so reverse the tensor axes.
    for row, axis in enumerate(reversed(range(dims))):
        theta[:, row, row] = scale[:, axis]
        theta[:, row, dims] = shift[:, axis]
    return theta


def crop_to_boxes(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Crop each sample to its box and resample it (bi/trilinear) back to the input size; differentiable."""
    theta = _affine(lo, hi, tuple(x.shape[2:]), x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def uncrop_from_boxes(y: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, fill: float) -> torch.Tensor:
    """Inverse of ``crop_to_boxes``: paste each crop back into its box, ``fill`` outside the box."""
    theta = _affine(lo, hi, tuple(y.shape[2:]), y.dtype)
    dims = lo.shape[1]
    inv = torch.zeros_like(theta)
    diag = torch.diagonal(theta[:, :, :dims], dim1=1, dim2=2)
    inv[:, :, :dims] = torch.diag_embed(1 / diag)
    inv[:, :, dims] = -theta[:, :, dims] / diag
    grid = F.affine_grid(inv, list(y.shape), align_corners=False)
    pasted = F.grid_sample(y, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(box_masks(lo, hi, tuple(y.shape[2:]))[:, None], pasted, torch.full_like(pasted, fill))


def box_masks(lo: torch.Tensor, hi: torch.Tensor, sizes: tuple[int, ...]) -> torch.Tensor:
    """Boolean (N, *sizes) masks that are True inside each sample's box."""
    inside = torch.ones((lo.shape[0],) + sizes, dtype=torch.bool, device=lo.device)
    for axis, size in enumerate(sizes):
        idx = torch.arange(size, device=lo.device)
        ok = (idx[None] >= lo[:, axis, None]) & (idx[None] <= hi[:, axis, None])  # (N, size)
        shape = [lo.shape[0]] + [1] * len(sizes)
        shape[axis + 1] = size
        inside = inside & ok.view(shape)
    return inside


def _pool_to(mask: torch.Tensor, size) -> torch.Tensor:
    pool = F.adaptive_avg_pool3d if mask.dim() == 5 else F.adaptive_avg_pool2d
    return pool(mask, size)


def _dilate(mask: torch.Tensor, margin: int) -> torch.Tensor:
    if margin <= 0:
        return mask
    pool = F.max_pool3d if mask.dim() == 5 else F.max_pool2d
    return pool(mask, kernel_size=2 * margin + 1, stride=1, padding=margin)


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


# --- classifier guidance ----------------------------------------------------------------------------


class Guidance:
    """Base strategy: passes images through unchanged. Subclasses override what they need.

    Attributes:
        extra_channels: input channels the classifier must accept beyond the image's one.
        train_mask: "predicted" or "ground_truth"; which masks train the classifier (see module docs).
    """

    extra_channels = 0

    def __init__(self, train_mask: str = "predicted"):
        self.train_mask = _check_mask_source(train_mask)

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return images

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def extra_loss(self, model, images, masks, logits) -> torch.Tensor | None:
        return None


@GUIDANCE.register("none")
class NoGuidance(Guidance):
    """The classifier sees the whole image; the mask is ignored."""

    def __init__(self, train_mask: str = "predicted"):
        super().__init__(train_mask)


@GUIDANCE.register("soft_mask")
class SoftMask(Guidance):
    """Seed's soft mask: image × clip(mask, floor, 1), so pixels outside the heart are dimmed to `floor`."""

    def __init__(self, floor: float = 0.2, train_mask: str = "predicted"):
        super().__init__(train_mask)
        _check_range("floor", floor, 0.0, 1.0)
        self.floor = floor

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return images * masks.clamp(min=self.floor, max=1.0)


@GUIDANCE.register("crop")
class Crop(Guidance):
    """Hard crop to the mask's bounding box + margin (fraction of the side), resampled to the input size.

    Batch-wise and differentiable (affine grid + bilinear ``grid_sample``). An empty mask keeps the whole
    image. The aspect ratio is not preserved: the box is stretched to the input size.
    """

    def __init__(self, margin: float = 0.1, train_mask: str = "predicted"):
        super().__init__(train_mask)
        _check_range("margin", margin, 0.0, 1.0)
        self.margin = margin

    def inputs(self, images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        lo, hi = bounding_boxes(masks, self.margin)
        return crop_to_boxes(images, lo, hi)


@GUIDANCE.register("channel")
class MaskChannel(Guidance):
    """The mask is an extra input channel: the classifier sees [image, mask] and learns how to use it."""

    extra_channels = 1

    def __init__(self, train_mask: str = "predicted"):
        super().__init__(train_mask)

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
        mask = _pool_to(self._mask, output.shape[2:])
        # 1 inside the mask, 1 − strength outside: strength 0 is no gating, 1 zeroes the background.
        return output * (1.0 - self.strength * (1.0 - mask))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._mask = x[:, -1:]
        try:
            return self.model(x[:, :-1])
        finally:
            self._mask = None


@GUIDANCE.register("gate")
class FeatureGating(Guidance):
    """Feature gating: every encoder stage's output × (1 − strength·(1 − mask↓)), mask↓ pooled to its size.

    ``inputs`` appends the mask as a last channel; the wrapped model (``GatedModel``) strips it before the
    classifier, so ``extra_channels`` stays 0. Works with the MONAI ResNet, DenseNet and EfficientNet
    classifiers (see ``feature_stages``).
    """

    def __init__(self, strength: float = 0.5, train_mask: str = "predicted"):
        super().__init__(train_mask)
        _check_range("strength", strength, 0.0, 1.0)
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


@GUIDANCE.register("aux_seg")
class AuxiliarySegmentation(Guidance):
    """Multi-task: an auxiliary head segments the mask from classifier features; loss += λ·DiceCE(head, mask).

    The head is a 1×1 convolution on feature stage ``stage`` (index into ``feature_stages``; 1 is ResNet's
    ``layer2``); its logits are upsampled to the mask size for the loss. The image input is unchanged, so
    the mask only shapes what the features learn, and is not needed at test time.
    """

    def __init__(self, weight: float = 0.5, stage: int = 1, train_mask: str = "predicted"):
        super().__init__(train_mask)
        _check_range("weight", weight, 0.0)
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


@GUIDANCE.register("attention_loss")
class AttentionLoss(Guidance):
    """Right for the right reasons (Ross 2017): loss += λ·Σ((1 − mask)·∂Σ_k log p_k/∂x)², mean over the batch.

    Penalises input-gradient saliency outside the mask, so the classifier's evidence comes from the heart;
    the gradient is taken with ``create_graph=True`` so the penalty itself is trained. ``inputs`` marks
    the input as requiring grad, so the gradient comes from the training forward pass itself; if the
    caller passes an input without grad, the model is run once more on a copy that has it.
    """

    def __init__(self, weight: float = 1.0, train_mask: str = "predicted"):
        super().__init__(train_mask)
        _check_range("weight", weight, 0.0)
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


# --- lesion-segmentation guidance (CT) -----------------------------------------------------------------


class LesionGuidance:
    """Base strategy for lesion segmentation guided by a lung mask: input and output unchanged.

    Attributes:
        extra_channels: input channels the segmenter must accept beyond the image's one.
        train_mask: "predicted" or "ground_truth" lung masks for training (see module docs).
    """

    extra_channels = 0

    def __init__(self, train_mask: str = "predicted"):
        self.train_mask = _check_mask_source(train_mask)

    def inputs(self, images: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        """The segmenter's input, same spatial size as ``images``."""
        return images

    def outputs(self, logits: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        """The segmenter's logits mapped back to the image grid (and possibly restricted to the lung)."""
        return logits

    def to_grid(self, volume: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        """A volume on the image grid (a target, the lung itself) mapped onto the segmenter's input grid."""
        return volume

    def restrict(self, logits: torch.Tensor, lung_on_grid: torch.Tensor) -> torch.Tensor:
        """The voxel-wise part of ``outputs`` on the segmenter's grid; works on training patches."""
        return logits


def _check_fill(fill: float) -> None:
    if fill > -5:
        raise ConfigError(f"fill must be a large negative logit (<= -5), but got {fill}. Use e.g. -20.")


@LESION_GUIDANCE.register("none")
class NoLesionGuidance(LesionGuidance):
    """The lesion segmenter sees the whole volume; the lung mask is ignored."""

    def __init__(self, train_mask: str = "predicted"):
        super().__init__(train_mask)


@LESION_GUIDANCE.register("restrict_output")
class RestrictOutput(LesionGuidance):
    """Logits outside the lung mask (dilated by ``dilate`` voxels) are set to ``fill`` (sigmoid ≈ 0).

    The dilation keeps juxta-pleural nodules on the lung border, which a tight predicted mask may cut off.
    """

    def __init__(self, dilate: int = 2, fill: float = -20.0, train_mask: str = "predicted"):
        super().__init__(train_mask)
        _check_range("dilate", dilate, 0)
        _check_fill(fill)
        self.dilate, self.fill = int(dilate), fill

    def outputs(self, logits: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return self.restrict(logits, lung)

    def restrict(self, logits: torch.Tensor, lung_on_grid: torch.Tensor) -> torch.Tensor:
        keep = _dilate(lung_on_grid.to(logits.dtype), self.dilate) > 0.5
        return torch.where(keep, logits, torch.full_like(logits, self.fill))


@LESION_GUIDANCE.register("lung_channel")
class LungChannel(LesionGuidance):
    """The lung mask is an extra input channel of the lesion segmenter; outputs are unchanged."""

    extra_channels = 1

    def __init__(self, train_mask: str = "predicted"):
        super().__init__(train_mask)

    def inputs(self, images: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return torch.cat([images, lung.to(images.dtype)], dim=1)


@LESION_GUIDANCE.register("lung_crop")
class LungCrop(LesionGuidance):
    """Segment inside the lungs' bounding box (+ margin, fraction of the side), resampled to full size.

    ``inputs`` crops each volume to its box and stretches it to the input size (more voxels on the lung);
    ``outputs`` pastes the logits back into the box and sets ``fill`` outside it.
    """

    def __init__(self, margin: float = 0.05, fill: float = -20.0, train_mask: str = "predicted"):
        super().__init__(train_mask)
        _check_range("margin", margin, 0.0, 1.0)
        _check_fill(fill)
        self.margin, self.fill = margin, fill

    def inputs(self, images: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        lo, hi = bounding_boxes(lung, self.margin)
        return crop_to_boxes(images, lo, hi)

    def outputs(self, logits: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        lo, hi = bounding_boxes(lung, self.margin)
        return uncrop_from_boxes(logits, lo, hi, self.fill)

    def to_grid(self, volume: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        lo, hi = bounding_boxes(lung, self.margin)
        return crop_to_boxes(volume if volume.is_floating_point() else volume.float(), lo, hi)


@LESION_GUIDANCE.register("cascade")
class Cascade(LesionGuidance):
    """Two-stage cascade: the lung stage's mask sets the crop (``lung_crop``) and restricts the output.

    nnU-Net-style cascade (Isensee et al., "nnU-Net", Nature Methods 2021).

    Stage 1 is the lung segmenter that produced ``lung``; stage 2 segments lesions inside the lungs' box
    and its logits outside the (dilated) lung are set to ``fill``, as in ``restrict_output``.
    """

    def __init__(
        self, margin: float = 0.05, dilate: int = 2, fill: float = -20.0, train_mask: str = "predicted"
    ):
        super().__init__(train_mask)
        self._crop = LungCrop(margin, fill, train_mask)
        self._restrict = RestrictOutput(dilate, fill, train_mask)

    def inputs(self, images: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return self._crop.inputs(images, lung)

    def outputs(self, logits: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return self._restrict.outputs(self._crop.outputs(logits, lung), lung)

    def to_grid(self, volume: torch.Tensor, lung: torch.Tensor) -> torch.Tensor:
        return self._crop.to_grid(volume, lung)

    def restrict(self, logits: torch.Tensor, lung_on_grid: torch.Tensor) -> torch.Tensor:
        # In training, dilation counts voxels of the (stretched) crop grid; inference restricts on the image grid.
        return self._restrict.restrict(logits, lung_on_grid > 0.5)
