"""Contract test over every registered segmentation loss, plus hand-computed checks of the seed's formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import ConfigError, RegistryError
from bench.losses import SEG_LOSSES


def _target(dims: int, empty: bool = False) -> torch.Tensor:
    shape = (2, 1) + (8,) * dims
    t = torch.zeros(shape)
    if not empty:
        index = (slice(None), slice(None)) + (slice(2, 6),) * dims
        t[index] = 1.0
        t[1, 0, 1, 1] = 1.0  # make the two samples differ
    return t


def _perfect(target: torch.Tensor) -> torch.Tensor:
    return target * 40.0 - 20.0


def _random_logits(target: torch.Tensor) -> torch.Tensor:
    return torch.randn(target.shape, generator=torch.Generator().manual_seed(0)) * 3.0


def test_registry_has_at_least_ten_losses():
    assert len(SEG_LOSSES) >= 10
    for entry in SEG_LOSSES.entries():
        assert entry.description, entry.name


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", SEG_LOSSES.names())
def test_loss_contract(name, dims):
    loss = SEG_LOSSES.create(name)
    target = _target(dims)
    logits = _random_logits(target).requires_grad_(True)
    value = loss(logits, target)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0

    perfect = loss(_perfect(target), target)
    assert torch.isfinite(perfect)
    assert perfect <= value + 1e-6
    if SEG_LOSSES.entry(name).tags.get("perfect_is_minimum", True):
        assert float(perfect) < 0.05
    # A confidently wrong prediction must be worse than the perfect one.
    assert loss(-_perfect(target), target) > perfect


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("name", SEG_LOSSES.names())
def test_loss_empty_masks_are_finite(name, dims):
    loss = SEG_LOSSES.create(name)
    target = _target(dims, empty=True)
    for logits in (_random_logits(target), _perfect(target), -_perfect(target)):
        logits = logits.clone().requires_grad_(True)
        value = loss(logits, target)
        assert torch.isfinite(value), name
        value.backward()
        assert torch.isfinite(logits.grad).all(), name


def test_unknown_parameter_and_bad_range_raise():
    with pytest.raises(RegistryError):
        SEG_LOSSES.create("tversky", gamma=2.0)
    with pytest.raises(ConfigError, match="alpha"):
        SEG_LOSSES.create("tversky", alpha=1.5)
    with pytest.raises(ConfigError):
        SEG_LOSSES.create("generalized_dice", w_type="cubic")


# --- formulas computed independently in numpy on a 1×1×3×3 example ----------------------------------

LOGITS = np.array([[2.0, -1.0, 0.5], [-2.0, 1.5, -0.5], [0.0, 3.0, -3.0]])
TARGET = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
SMOOTH = 1e-5


def _np_sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _np_dice(p, t, smooth=SMOOTH):
    return (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def _np_spreads(w):
    m = w / w.sum()
    ys, xs = np.meshgrid(np.linspace(0, 1, w.shape[0]), np.linspace(0, 1, w.shape[1]), indexing="ij")
    sy = (np.abs(ys - (ys * m).sum()) * m).sum()
    sx = (np.abs(xs - (xs * m).sum()) * m).sum()
    return sy, sx


def _torch(a):
    return torch.tensor(a, dtype=torch.float64)[None, None]


def test_spread_dice_matches_hand_computation():
    p = _np_sigmoid(LOGITS)
    sy, sx = _np_spreads(p)
    expected = (1 - _np_dice(p, TARGET)) + 0.5 * np.sqrt(sx) * np.sqrt(sy)
    got = SEG_LOSSES.create("spread_dice", weight=0.5)(_torch(LOGITS), _torch(TARGET))
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_spread_dice_is_per_sample_mean():
    other = np.flip(LOGITS, axis=0).copy()
    loss = SEG_LOSSES.create("spread_dice", weight=0.5)
    both = loss(torch.cat([_torch(LOGITS), _torch(other)]), torch.cat([_torch(TARGET), _torch(TARGET)]))
    separate = (loss(_torch(LOGITS), _torch(TARGET)) + loss(_torch(other), _torch(TARGET))) / 2
    assert float(both) == pytest.approx(float(separate), rel=1e-9)


def test_spread_dice_3d_uses_cube_root():
    logits = np.random.default_rng(0).normal(size=(3, 3, 3))
    target = np.zeros((3, 3, 3))
    target[1, 1, :] = 1
    p = _np_sigmoid(logits)
    m = p / p.sum()
    grids = np.meshgrid(*[np.linspace(0, 1, 3)] * 3, indexing="ij")
    spreads = [(np.abs(g - (g * m).sum()) * m).sum() for g in grids]
    expected = (1 - _np_dice(p, target)) + 0.2 * np.prod(spreads) ** (1 / 3)
    got = SEG_LOSSES.create("spread_dice", weight=0.2)(_torch(logits), _torch(target))
    assert float(got) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("absolute", [False, True])
def test_spread_ratio_matches_hand_computation(absolute):
    p = _np_sigmoid(LOGITS)
    ratio = np.sqrt(np.prod(_np_spreads(p))) / np.sqrt(np.prod(_np_spreads(TARGET)))
    term = abs(1 - ratio) if absolute else ratio
    bce = -(TARGET * np.log(p) + (1 - TARGET) * np.log(1 - p)).mean()
    expected = (1 - _np_dice(p, TARGET)) + term + 0.3 * bce
    name = "spread_ratio_abs_dice" if absolute else "spread_ratio_dice"
    got = SEG_LOSSES.create(name, bce_weight=0.3)(_torch(LOGITS), _torch(TARGET))
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_spread_ratio_ignores_ratio_for_empty_target():
    empty = np.zeros((3, 3))
    p = _np_sigmoid(LOGITS)
    got = SEG_LOSSES.create("spread_ratio_dice")(_torch(LOGITS), _torch(empty))
    assert float(got) == pytest.approx(1 - _np_dice(p, empty), rel=1e-5)


def test_roi_dice_with_explicit_roi():
    roi = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    p = _np_sigmoid(LOGITS)
    expected = (1 - _np_dice(p, TARGET)) + 2.0 * (p * (1 - roi)).sum() / (p.sum() + 1)
    got = SEG_LOSSES.create("roi_dice", weight=2.0)(_torch(LOGITS), _torch(TARGET), roi=_torch(roi))
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_roi_dice_falls_back_to_dilated_target():
    p = _np_sigmoid(LOGITS)
    # margin 0: the ROI is the target itself.
    expected0 = (1 - _np_dice(p, TARGET)) + (p * (1 - TARGET)).sum() / (p.sum() + 1)
    got0 = SEG_LOSSES.create("roi_dice", margin=0)(_torch(LOGITS), _torch(TARGET))
    assert float(got0) == pytest.approx(expected0, rel=1e-6)
    # margin 1 on a 3×3 image: the dilated diagonal-ish target covers everything, so only Dice remains.
    got1 = SEG_LOSSES.create("roi_dice", margin=1)(_torch(LOGITS), _torch(TARGET))
    assert float(got1) == pytest.approx(1 - _np_dice(p, TARGET), rel=1e-6)


def test_focal_tversky_matches_hand_computation():
    p = _np_sigmoid(LOGITS)
    tp, fp, fn = (p * TARGET).sum(), (p * (1 - TARGET)).sum(), ((1 - p) * TARGET).sum()
    ti = (tp + SMOOTH) / (tp + 0.3 * fp + 0.7 * fn + SMOOTH)
    got = SEG_LOSSES.create("focal_tversky", alpha=0.3, beta=0.7, gamma=0.75)(_torch(LOGITS), _torch(TARGET))
    assert float(got) == pytest.approx((1 - ti) ** 0.75, rel=1e-5)


def test_log_cosh_dice_matches_hand_computation():
    p = _np_sigmoid(LOGITS)
    got = SEG_LOSSES.create("log_cosh_dice")(_torch(LOGITS), _torch(TARGET))
    assert float(got) == pytest.approx(np.log(np.cosh(1 - _np_dice(p, TARGET))), rel=1e-5)


def test_squared_dice_uses_squared_denominator():
    p = _np_sigmoid(LOGITS)
    expected = 1 - (2 * (p * TARGET).sum() + SMOOTH) / ((p**2).sum() + (TARGET**2).sum() + SMOOTH)
    got = SEG_LOSSES.create("dice_squared")(_torch(LOGITS), _torch(TARGET))
    assert float(got) == pytest.approx(expected, rel=1e-5)
