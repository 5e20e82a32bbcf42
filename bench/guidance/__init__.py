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

Layout. ``base`` (registries, base classes, checks) and ``entries`` (one light factory per strategy:
defaults, checks, the task it applies to) import no torch, so listing strategies is instant; the tensor
code is in ``geometry``, ``classifier`` and ``lesion`` and loads when a strategy is created. Their public
names (``bounding_boxes``, ``SoftMask``, ...) are importable from here and load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from bench.guidance import entries as _entries  # noqa: F401  (registers every strategy, light)
from bench.guidance.base import (
    GUIDANCE,
    LESION_GUIDANCE,
    MASK_SOURCES,
    Guidance,
    LesionGuidance,
    check_mask_source,
)
from bench.registry import Entry, Registry

# Public names whose module imports torch: resolved on first access (PEP 562), so importing
# ``bench.guidance`` stays light.
_HEAVY = {
    **{name: "bench.guidance.geometry" for name in (
        "bounding_boxes", "crop_to_boxes", "uncrop_from_boxes", "box_masks", "pool_to", "dilate")},
    **{name: "bench.guidance.classifier" for name in (
        "feature_stages", "NoGuidance", "SoftMask", "Crop", "MaskChannel", "GatedModel", "FeatureGating",
        "AuxSegModel", "AuxiliarySegmentation", "AttentionLoss")},
    **{name: "bench.guidance.lesion" for name in (
        "NoLesionGuidance", "RestrictOutput", "LungChannel", "LungCrop", "Cascade")},
}


def __getattr__(name: str) -> Any:
    if name in _HEAVY:
        return getattr(importlib.import_module(_HEAVY[name]), name)
    raise AttributeError(f"module 'bench.guidance' has no attribute '{name}'")


def all_strategies() -> list[tuple[Registry, Entry]]:
    """Both families, classifier strategies first: ``(registry, entry)`` pairs; names repeat across families
    (both have ``none``), so the registry's ``kind`` tells them apart. A task names the family it uses in
    ``TaskSpec.guidance``. Imports no torch.

    Example:
        >>> sorted({registry.kind for registry, _ in all_strategies()})
        ['guidance strategy', 'lesion guidance strategy']
    """
    return [(registry, entry) for registry in (GUIDANCE, LESION_GUIDANCE) for entry in registry.entries()]


__all__ = ["GUIDANCE", "LESION_GUIDANCE", "MASK_SOURCES", "Guidance", "LesionGuidance", "all_strategies",
           "check_mask_source"]
