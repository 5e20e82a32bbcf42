import math

import numpy as np
import pytest

from bench.metrics import higher_is_better
from bench.metrics_seg3d import (
    case_metrics,
    dice,
    fp_volume_outside_ml,
    hd95,
    lesion_hits,
    summarise,
    surface_dice,
)

SP = (2.0, 1.0, 1.0)


def cube(lo, hi, shape=(10, 20, 20)):
    m = np.zeros(shape, bool)
    m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return m


def test_empty_rules():
    empty, full = np.zeros((4, 4, 4), bool), cube((1, 1, 1), (3, 3, 3), (4, 4, 4))
    assert dice(empty, empty) == 1.0 and dice(full, empty) == 0.0
    assert hd95(empty, empty, SP) == 0.0
    assert hd95(full, empty, SP) == pytest.approx(math.sqrt(8**2 + 4**2 + 4**2))  # diagonal in mm
    assert surface_dice(empty, empty, SP, 2.0) == 1.0 and surface_dice(empty, full, SP, 2.0) == 0.0


def test_values_on_shifted_cubes():
    a, b = cube((2, 5, 5), (6, 10, 10)), cube((2, 5, 6), (6, 10, 11))
    assert dice(a, a) == 1.0 and dice(a, b) == pytest.approx(2 * 80 / 200)
    assert hd95(a, b, SP) == pytest.approx(1.0)
    assert surface_dice(a, b, SP, 1.5) == pytest.approx(1.0)
    assert fp_volume_outside_ml(b, a, SP) == pytest.approx(20 * 2.0 / 1000)


def test_lesion_sensitivity_and_summary():
    truth = cube((1, 1, 1), (3, 3, 3)) | cube((6, 10, 10), (8, 14, 14))
    pred = cube((1, 2, 2), (2, 3, 3))
    assert lesion_hits(pred, truth) == (1, 2)
    lung = np.ones_like(truth)
    rows = [case_metrics(pred, truth, lung, lung, SP), case_metrics(np.zeros_like(pred), np.zeros_like(pred), lung,
                                                                    lung, SP)]
    out = summarise(rows)
    assert out["lesion_sensitivity"] == 0.5 and out["lung_dice"] == 1.0
    # The lesion-free case (both empty) does not lift the lesion means; it counts for specificity.
    assert out["lesion_dice"] == pytest.approx(dice(pred, truth))
    assert out["lesion_hd95"] == pytest.approx(hd95(pred, truth, SP))
    assert out["case_specificity"] == 1.0
    assert not higher_is_better("val_fp_outside_lung_ml") and higher_is_better("val_lesion_dice")
    only_normal = summarise([case_metrics(pred, np.zeros_like(pred), lung, lung, SP)])
    assert math.isnan(only_normal["lesion_sensitivity"]) and math.isnan(only_normal["lesion_dice"])
    assert only_normal["case_specificity"] == 0.0  # a lesion predicted on a lesion-free case
