import math

import numpy as np
import pytest
import torch

from bench.metrics import (
    attention_in_mask,
    balanced_accuracy,
    ctr_error,
    heart_hd95,
    higher_is_better,
    per_class_recall,
    shift_gap,
)


def _square(n, top, left, size=16):
    m = torch.zeros(n, 1, size, size)
    m[:, :, top : top + 4, left : left + 4] = 1
    return m


def test_hd95_shift_and_empty_prediction():
    truth = _square(2, 4, 4)
    assert heart_hd95(truth, truth) == 0.0
    assert heart_hd95(_square(2, 4, 7), truth) == pytest.approx(3.0)  # shifted 3 px sideways
    empty = torch.zeros_like(truth)
    assert heart_hd95(empty, truth) == pytest.approx(math.hypot(16, 16))
    assert heart_hd95(empty, empty) == 0.0


def test_ctr_error_uses_true_thoracic_width():
    truth, pred = _square(2, 4, 4), _square(2, 4, 4)
    pred[:, :, 4:8, 8:10] = 1  # 2 px wider
    assert ctr_error(pred, truth, np.array([10.0, 20.0])) == pytest.approx((0.2 + 0.1) / 2)
    assert math.isnan(ctr_error(pred, truth, np.array([np.nan, 0.0])))


def test_balanced_accuracy_and_recall():
    labels = np.array([0, 0, 0, 1])
    probs = np.eye(3)[[0, 0, 1, 1]]
    assert balanced_accuracy(probs, labels) == pytest.approx((2 / 3 + 1) / 2)
    recall = per_class_recall(probs, labels, ("a", "b", "c"))
    assert recall["recall_a"] == pytest.approx(2 / 3) and recall["recall_b"] == 1.0
    assert math.isnan(recall["recall_c"])


class _Corner(torch.nn.Module):
    """Logits depend only on the top-left 4x4 corner, so all saliency lies there."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(2))

    def forward(self, x):
        s = (x[:, 0, :4, :4] ** 2).sum((1, 2))
        return torch.stack([s * self.w[0], -s * self.w[1]], 1)


def test_attention_in_mask():
    torch.manual_seed(0)
    x = torch.randn(3, 1, 16, 16)
    assert attention_in_mask(_Corner(), x, _square(3, 0, 0)) == pytest.approx(1.0)
    assert attention_in_mask(_Corner(), x, _square(3, 8, 8)) == pytest.approx(0.0)
    # a preparing step (guidance) that dims the corner by 0.5 still keeps all attention there
    half = attention_in_mask(_Corner(), x, _square(3, 0, 0), prepare=lambda t, rows: t * 0.5)
    assert half == pytest.approx(1.0)


def test_shift_gap_and_directions():
    assert shift_gap({"test_auroc": 0.9, "test_shifted_auroc": 0.6}, "auroc") == pytest.approx(0.3)
    assert higher_is_better("val_auroc") and higher_is_better("test_shifted_balanced_accuracy")
    assert higher_is_better("test_recall_VSD") and higher_is_better("val_attention_in_heart")
    assert not higher_is_better("test_shifted_heart_hd95") and not higher_is_better("val_ctr_error")
    assert not higher_is_better("shift_gap_auroc")


def test_directions_refuse_unknown_names_and_duplicates():
    from bench.errors import RegistryError
    from bench.metrics import METRICS, metric

    assert not higher_is_better("val_fp_outside_lung_ml") and higher_is_better("test_lesion_dice")
    assert not higher_is_better("n_weights") and not higher_is_better("cls_train_loss")
    with pytest.raises(RegistryError, match=r"'val_aurok' needs a declared direction.*Did you mean 'auroc'"):
        higher_is_better("val_aurok")
    with pytest.raises(RegistryError, match=r"'val_sharpness' needs a declared direction.*must be one of \["):
        higher_is_better("val_sharpness")
    with pytest.raises(RegistryError, match="unique"):
        metric("auroc", False, "a second, contradicting declaration")
    assert METRICS.get("auroc").higher_is_better  # the first declaration stands


def test_every_metric_a_task_lists_has_a_direction():
    from bench.tasks import TASKS

    for spec in (entry.obj for entry in TASKS.entries()):
        for name in (spec.objective, *spec.metrics, *spec.headline):
            higher_is_better(name)  # raises for an undeclared metric
