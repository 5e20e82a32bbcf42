"""Contract test over every registered segmentation model and classifier: forward + backward on tiny inputs."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from bench.errors import ConfigError
from bench.models import CLASSIFIERS, SEG_MODELS

SMALL = {"base_channels": 8, "init_filters": 8, "num_res_units": 1, "feature_size": 12, "hidden_size": 96}


def _cases():
    for entry in SEG_MODELS.entries():
        for dims in entry.tags["dims"]:
            yield pytest.param(entry.name, dims, id=f"{entry.name}-{dims}d")


def _side(name: str, dims: int) -> int:
    # The smallest input each model accepts, but at least the standard tiny sizes (64² in 2D, 32³ in 3D).
    return max(SEG_MODELS.entry(name).tags.get("min_size", 0), 64 if dims == 2 else 32)


def test_registries_are_big_enough():
    assert len(SEG_MODELS) >= 8
    assert len(CLASSIFIERS) >= 3
    assert {"unet", "fpn", "linknet"} <= set(SEG_MODELS.names())
    for entry in SEG_MODELS.entries() + CLASSIFIERS.entries():
        assert entry.description, entry.name
        assert set(entry.tags["dims"]) <= {2, 3}


@pytest.mark.parametrize("name,dims", list(_cases()))
def test_segmentation_model_forward_backward(name, dims):
    entry = SEG_MODELS.entry(name)
    required = entry.tags.get("requires")
    if required and importlib.util.find_spec(required) is None:
        with pytest.raises(ConfigError, match=required):
            SEG_MODELS.create(name, spatial_dims=dims, img_size=_side(name, dims))
        pytest.skip(f"{name} needs {required}, which is not installed")
    torch.manual_seed(0)
    side = _side(name, dims)
    kwargs = {"in_channels": 1, "classes": 1, "encoder": "resnet18"}
    if "spatial_dims" in entry.parameters():
        kwargs.update(spatial_dims=dims, img_size=side)
    # Narrow settings where the factory has them keep the whole file fast on 2 CPU cores.
    kwargs.update({k: v for k, v in SMALL.items() if k in entry.parameters()})
    model = SEG_MODELS.create(name, **kwargs)
    # Batch of 2: BatchNorm on pooled 1×1 maps (DeepLabV3+'s ASPP) cannot train on a single sample.
    x = torch.randn((2, 1) + (side,) * dims)
    y = model(x)
    assert y.shape == (2, 1) + (side,) * dims
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    # MONAI's ViT blocks (UNETR) own a cross-attention norm that self-attention never uses.
    grads = [p.grad for n, p in model.named_parameters() if p.requires_grad and "norm_cross_attn" not in n]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", CLASSIFIERS.names())
def test_classifier_forward_backward(name):
    torch.manual_seed(0)
    narrow = {
        k: v
        for k, v in {"init_features": 16, "growth_rate": 8}.items()
        if k in CLASSIFIERS.entry(name).parameters()
    }
    model = CLASSIFIERS.create(name, in_channels=2, num_classes=4, **narrow)
    # 32×32 pools down to 1×1 in DenseNet/EfficientNet, whose BatchNorm then needs 2 samples in training.
    logits = model(torch.randn(2, 2, 32, 32))
    assert logits.shape == (2, 4) and torch.isfinite(logits).all()
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_classifier_3d():
    model = CLASSIFIERS.create("resnet10", in_channels=1, num_classes=3, spatial_dims=3)
    assert model(torch.randn(2, 1, 16, 16, 16)).shape == (2, 3)


def test_bad_configurations_raise():
    with pytest.raises(ConfigError, match="smp encoder"):
        SEG_MODELS.create("unet", encoder="resnet81")
    with pytest.raises(ConfigError, match="divisible by 16"):
        SEG_MODELS.create("unetr", img_size=40)
    with pytest.raises(ConfigError, match="spatial_dims"):
        SEG_MODELS.create("segresnet", spatial_dims=4)
    with pytest.raises(ConfigError, match="spatial_dims"):
        CLASSIFIERS.create("resnet18", spatial_dims=1)


@pytest.mark.parametrize("encoder", ["mobilenet_v2", "efficientnet-b0"])
def test_smp_encoders_build_offline(encoder):
    model = SEG_MODELS.create("fpn", encoder=encoder)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 1, 32, 32)
