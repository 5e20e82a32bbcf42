"""Plots of `bench compare`: each is a valid PNG of the expected kind; CD cliques worked by hand."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.compare_plots import case_strip_png, cd_diagram_png, forest_png, rank_cliques
from bench.compare_stats import compare_arms, friedman_nemenyi, per_case_means
from bench.errors import BenchError


def _image(png: bytes) -> Image.Image:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    Image.open(io.BytesIO(png)).verify()  # raises on a truncated or corrupt file
    return Image.open(io.BytesIO(png))


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = [{"arm": arm, "fold": c % 2, "seed": s, "case": c // 2, "dice": 0.7 + shift + rng.normal(0, 0.05)}
            for arm, shift in (("dice", 0.0), ("spread_dice", 0.1), ("roi_dice", -0.1))
            for s in range(2) for c in range(20)]
    rows[0]["dice"] = np.nan  # an undefined case must not break the strip plot
    return pd.DataFrame(rows)


def test_forest_plot_is_a_png_with_one_panel_per_metric(frame):
    table = compare_arms(frame, "dice", "dice", higher_is_better=True, resamples=100)
    one = _image(forest_png(table))
    two = _image(forest_png(pd.concat([table, table.assign(metric="hd95", higher_is_better=False)])))
    assert one.width > 200 and one.height > 100
    assert two.width > 1.5 * one.width  # a second metric adds a panel beside the first


def test_forest_plot_refuses_a_table_without_comparisons(frame):
    table = compare_arms(frame, "dice", "dice", higher_is_better=True, resamples=50)
    with pytest.raises(BenchError, match="besides the baseline"):
        forest_png(table[table["arm"] == "dice"])
    with pytest.raises(BenchError, match="lacks \\['delta_low'"):
        forest_png(table.drop(columns="delta_low"))


def test_case_strip_plot_is_a_png(frame):
    image = _image(case_strip_png(per_case_means(frame, "dice"), "lesion Dice"))
    assert image.width > 200 and image.height > 100
    with pytest.raises(BenchError, match="at least one arm"):
        case_strip_png({"dice": [np.nan]}, "lesion Dice")


def test_rank_cliques_by_hand():
    assert rank_cliques([1.0, 1.5, 2.8, 3.0], cd=1.0) == [(0, 1), (2, 3)]
    assert rank_cliques([1.0, 1.5, 1.9, 2.6], cd=1.0) == [(0, 2), (2, 3)]  # overlapping groups both drawn
    assert rank_cliques([1.0, 2.0, 3.0], cd=0.5) == []  # every pair differs
    assert rank_cliques([3.0, 1.0, 2.0], cd=5.0) == [(0, 2)]  # sorted first, all in one group


def test_cd_diagram_is_a_png_taller_with_more_arms():
    scores = pd.DataFrame(np.random.default_rng(1).random((8, 6)) + np.arange(6) * 0.1,
                          columns=["none", "multiply", "gate", "aux_seg", "attention_loss", "crop"])
    result = friedman_nemenyi(scores, higher_is_better=True)
    six = _image(cd_diagram_png(result.mean_ranks, result.cd, title=f"Friedman p = {result.p:.3f}"))
    three = _image(cd_diagram_png(result.mean_ranks.iloc[:3], result.cd))
    assert six.height > three.height
    with pytest.raises(BenchError, match="positive CD"):
        cd_diagram_png(result.mean_ranks, float("nan"))
