"""Contract tests over every guidance strategy (classifier and lesion registries) plus specific checks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bench.errors import ConfigError
from bench.guidance import (
    GUIDANCE,
    LESION_GUIDANCE,
    bounding_boxes,
    box_masks,
    crop_to_boxes,
    uncrop_from_boxes,
)
from bench.models import CLASSIFIERS


def _batch(n: int = 2, side: int = 32):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 1, side, side, generator=g)
    masks = torch.zeros(n, 1, side, side)
    masks[:, :, 8:20, 10:24] = 1.0
    return images, masks, torch.arange(n) % 3


# Narrow DenseNet settings keep the test fast; the stage structure is the same as the default's.
NARROW = {"densenet121": {"init_features": 16, "growth_rate": 8}}


def _step(name: str, classifier: str = "resnet10", **params):
    torch.manual_seed(0)
    g = GUIDANCE.create(name, **params)
    net = CLASSIFIERS.create(
        classifier, in_channels=1 + g.extra_channels, num_classes=3, **NARROW.get(classifier, {})
    )
    model = g.wrap_model(net)
    images, masks, labels = _batch()
    x = g.inputs(images, masks)
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    extra = g.extra_loss(model, x, masks, logits)
    if extra is not None:
        assert extra.dim() == 0 and torch.isfinite(extra)
        loss = loss + extra
    loss.backward()
    return g, model, x, logits, extra


def test_registries_are_big_enough():
    assert len(GUIDANCE) >= 6
    assert len(LESION_GUIDANCE) >= 4
    for entry in GUIDANCE.entries() + LESION_GUIDANCE.entries():
        assert entry.description, entry.name
        assert entry.parameters()["train_mask"] == "predicted", entry.name


@pytest.mark.parametrize("name", GUIDANCE.names())
def test_guidance_contract(name):
    g, model, x, logits, _ = _step(name)
    assert x.shape[0] == 2 and x.shape[2:] == (32, 32) and torch.isfinite(x).all()
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    grads = [p.grad for p in model.parameters()]
    assert all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    # Evaluation path (as the task's predict does it): no grad, eval mode.
    model.eval()
    with torch.no_grad():
        images, masks, _ = _batch(3)
        assert model(g.inputs(images, masks)).shape == (3, 3)


@pytest.mark.parametrize("name", ["gate", "aux_seg"])
@pytest.mark.parametrize("classifier", ["resnet18", "densenet121"])
def test_feature_strategies_work_with_other_classifiers(name, classifier):
    _, _, _, logits, _ = _step(name, classifier=classifier)
    assert torch.isfinite(logits).all()


def test_soft_mask_floor_formula():
    g = GUIDANCE.create("soft_mask", floor=0.3)
    images = torch.tensor([[[[2.0, -1.0, 4.0]]]])
    masks = torch.tensor([[[[0.0, 0.5, 1.0]]]])
    assert torch.allclose(g.inputs(images, masks), torch.tensor([[[[0.6, -0.5, 4.0]]]]))


def test_crop_picks_the_bounding_box():
    side = 16
    ramp = torch.arange(side, dtype=torch.float32)
    images = torch.stack([ramp.view(side, 1).expand(side, side), ramp.view(1, side).expand(side, side)])[None]
    masks = torch.zeros(1, 1, side, side)
    masks[0, 0, 3:7, 5:13] = 1.0  # rows 3..6, cols 5..12
    out = GUIDANCE.create("crop", margin=0.0).inputs(images, masks)
    # Output pixel j samples input position lo − 0.5 + (j + 0.5)·(box width / side); ramps interpolate exactly.
    j = torch.arange(side, dtype=torch.float32)
    rows = 3 - 0.5 + (j + 0.5) * 4 / side
    cols = 5 - 0.5 + (j + 0.5) * 8 / side
    assert torch.allclose(out[0, 0, :, 0], rows, atol=1e-5)
    assert torch.allclose(out[0, 1, 0, :], cols, atol=1e-5)


def test_bounding_boxes_margin_and_empty_mask():
    masks = torch.zeros(2, 1, 20, 20)
    masks[0, 0, 5:8, 10:12] = 1.0
    lo, hi = bounding_boxes(masks, margin=0.1)
    assert lo.tolist() == [[3, 8], [0, 0]]
    assert hi.tolist() == [[9, 13], [19, 19]]


def test_crop_with_empty_mask_is_identity():
    images, _, _ = _batch()
    out = GUIDANCE.create("crop").inputs(images, torch.zeros_like(images))
    assert torch.allclose(out, images, atol=1e-5)


def test_channel_adds_the_mask_channel():
    g = GUIDANCE.create("channel")
    images, masks, _ = _batch()
    x = g.inputs(images, masks)
    assert g.extra_channels == 1 and x.shape == (2, 2, 32, 32)
    assert torch.equal(x[:, 1:], masks) and torch.equal(x[:, :1], images)


def test_attention_loss_is_zero_when_mask_covers_everything():
    g = GUIDANCE.create("attention_loss", weight=10.0)
    model = CLASSIFIERS.create("resnet10", in_channels=1, num_classes=3)
    images, _, _ = _batch()
    ones = torch.ones_like(images)
    x = g.inputs(images, ones)
    assert float(g.extra_loss(model, x, ones, model(x)).detach()) == 0.0
    # ...and positive when the mask excludes part of the image, with a gradient reaching the weights.
    _, masks, _ = _batch()
    penalty = g.extra_loss(model, x, masks, model(x))
    assert float(penalty.detach()) > 0
    penalty.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_attention_loss_recomputes_when_input_has_no_grad():
    g = GUIDANCE.create("attention_loss")
    model = CLASSIFIERS.create("resnet10", in_channels=1, num_classes=3).eval()
    images, masks, _ = _batch()
    x = g.inputs(images, masks)
    direct = g.extra_loss(model, x, masks, model(x))
    recomputed = g.extra_loss(model, images, masks, model(images))
    assert torch.allclose(direct, recomputed, rtol=1e-5)


def test_gate_strength_zero_is_the_plain_classifier():
    torch.manual_seed(0)
    plain = CLASSIFIERS.create("resnet10", in_channels=1, num_classes=3).eval()
    g = GUIDANCE.create("gate", strength=0.0)
    gated = g.wrap_model(plain)
    images, masks, _ = _batch()
    with torch.no_grad():
        assert torch.allclose(gated(g.inputs(images, masks)), plain(images))
        strong = GUIDANCE.create("gate", strength=1.0)
        # Full strength: the background no longer matters.
        noisy = images + 5 * (1 - masks) * torch.randn_like(images)
        net = strong.wrap_model(plain)
        a, b = net(strong.inputs(images, masks)), net(strong.inputs(noisy, masks))
    assert not torch.allclose(a, plain(images).detach())
    assert (a - b).abs().max() < (plain(images) - plain(noisy)).abs().max()


def test_aux_seg_loss_uses_the_masks():
    g, model, x, logits, extra = _step("aux_seg", weight=2.0)
    assert extra is not None and float(extra.detach()) > 0
    other = g.extra_loss(model, x, 1 - _batch()[1], logits)
    assert not torch.isclose(extra, other)


def test_bad_parameters_raise():
    with pytest.raises(ConfigError, match="train_mask"):
        GUIDANCE.create("crop", train_mask="oracle")
    with pytest.raises(ConfigError, match="strength"):
        GUIDANCE.create("gate", strength=2.0)
    with pytest.raises(ConfigError, match="fill"):
        LESION_GUIDANCE.create("restrict_output", fill=3.0)


# --- lesion guidance (CT) -----------------------------------------------------------------------------


def _volume():
    g = torch.Generator().manual_seed(1)
    images = torch.randn(2, 1, 16, 16, 16, generator=g)
    lung = torch.zeros(2, 1, 16, 16, 16)
    lung[0, 0, 2:10, 3:12, 4:14] = 1.0
    lung[1, 0, 5:15, 1:9, 2:8] = 1.0
    return images, lung


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", LESION_GUIDANCE.names())
def test_lesion_guidance_contract(name, dims):
    g = LESION_GUIDANCE.create(name)
    images, lung = _volume()
    if dims == 2:
        images, lung = images[:, :, 8], lung[:, :, 8]
    x = g.inputs(images, lung)
    assert x.shape == (2, 1 + g.extra_channels) + images.shape[2:]
    conv = (torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d)(x.shape[1], 1, 3, padding=1)
    logits = g.outputs(conv(x), lung)
    assert logits.shape == lung.shape and torch.isfinite(logits).all()
    F.binary_cross_entropy_with_logits(logits, lung).backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize("name", ["restrict_output", "cascade"])
def test_restricting_strategies_suppress_outside_the_dilated_lung(name):
    g = LESION_GUIDANCE.create(name, fill=-30.0)
    _, lung = _volume()
    out = g.outputs(torch.full_like(lung, 5.0), lung)
    far = F.max_pool3d(lung, 5, stride=1, padding=2) == 0  # more than the default 2-voxel margin away
    assert far.any() and (out[far] == -30.0).all()
    assert torch.allclose(out[lung > 0], torch.tensor(5.0))


def test_restrict_output_dilate_dilates():
    lung = torch.zeros(1, 1, 9, 9)
    lung[0, 0, 4, 4] = 1.0
    out = LESION_GUIDANCE.create("restrict_output", dilate=1, fill=-20.0).outputs(
        torch.zeros(1, 1, 9, 9), lung
    )
    assert int((out == 0).sum()) == 9 and int((out == -20.0).sum()) == 72


@pytest.mark.parametrize("name", LESION_GUIDANCE.names())
def test_lesion_guidance_patch_split_matches_inputs_and_outputs(name):
    """to_grid / restrict (used on training patches) agree with inputs / outputs on whole volumes."""
    g = LESION_GUIDANCE.create(name)
    images, lung = _volume()
    assert torch.allclose(g.to_grid(images, lung), g.inputs(images, lung)[:, :1])
    lung_g = g.to_grid(lung, lung)
    assert lung_g.shape == lung.shape
    logits = torch.full_like(lung, 5.0)
    restricted = g.restrict(logits, lung_g)
    assert torch.allclose(restricted[lung_g > 0.5], torch.tensor(5.0))
    if name in ("none", "lung_channel", "restrict_output"):  # no crop: the grids coincide
        assert torch.equal(restricted, g.outputs(logits, lung))
    if name == "restrict_output":  # (cascade's crop is the lung's box here, so its dilated lung fills it)
        assert (restricted == -20.0).any()  # something outside the dilated lung was suppressed


def test_uncrop_inverts_crop_inside_the_box():
    _, lung = _volume()
    lo, hi = bounding_boxes(lung)
    # A field linear in the coordinates survives crop → uncrop exactly inside the box.
    zz, yy, xx = torch.meshgrid(*[torch.arange(16.0)] * 3, indexing="ij")
    field = (zz + 2 * yy + 3 * xx).expand(2, 1, 16, 16, 16)
    back = uncrop_from_boxes(crop_to_boxes(field, lo, hi), lo, hi, fill=-20.0)
    inside = lung > 0
    assert torch.allclose(back[inside], field[inside], atol=1e-3)
    outside_box = ~box_masks(lo, hi, (16, 16, 16))[:, None]
    assert outside_box.any() and (back[outside_box] == -20.0).all()


@pytest.mark.parametrize("name", GUIDANCE.names())
def test_saliency_flows_through_every_strategy(name):
    """attention-in-heart differentiates the classifier w.r.t. the raw image through ``inputs``."""
    from bench.metrics import attention_in_mask

    torch.manual_seed(0)
    guidance = GUIDANCE.create(name)
    model = guidance.wrap_model(CLASSIFIERS.create("resnet10", in_channels=1 + guidance.extra_channels,
                                                   num_classes=4))
    images, masks = torch.randn(2, 1, 32, 32), torch.zeros(2, 1, 32, 32)
    masks[:, :, 8:24, 8:24] = 1
    share = attention_in_mask(model, images, masks, prepare=lambda x, rows: guidance.inputs(x, masks[rows]))
    assert 0.0 <= share <= 1.0


def test_registries_describe_without_importing_torch():
    """Names, descriptions, parameters, tags and parameter checks need no torch; creating an entry loads it."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import json, sys
from bench.errors import ConfigError
from bench.guidance import GUIDANCE, all_strategies
rows = [(r.kind, e.name, e.description, e.parameters()) for r, e in all_strategies()]
try:
    GUIDANCE.create("gate", strength=2.0)
    refused = False
except ConfigError:
    refused = True
heavy = [m for m in ("torch", "monai", "segmentation_models_pytorch") if m in sys.modules]
GUIDANCE.create("soft_mask")
print(json.dumps({"rows": rows, "heavy": heavy, "refused": refused, "torch_after_create": "torch" in sys.modules}))
"""
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["heavy"] == [] and report["refused"] and report["torch_after_create"]
    assert {kind for kind, *_ in report["rows"]} == {"guidance strategy", "lesion guidance strategy"}
    assert len(report["rows"]) == len(GUIDANCE) + len(LESION_GUIDANCE)


def test_all_strategies_lists_both_families_with_their_task():
    from bench.guidance import all_strategies

    pairs = all_strategies()
    assert [e.name for r, e in pairs if r is GUIDANCE] == GUIDANCE.names()
    assert [e.name for r, e in pairs if r is LESION_GUIDANCE] == LESION_GUIDANCE.names()
    from bench.tasks import TASKS

    assert TASKS.get("xray-heart").guidance is GUIDANCE and TASKS.get("ct-lung").guidance is LESION_GUIDANCE
