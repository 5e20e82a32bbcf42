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


def test_intervals_are_rounded_to_what_their_ci_supports():
    from bench.compare_stats._table import _interval, ci_decimals

    assert ci_decimals(0.80, 0.864) == 3  # half-width 0.032: two significant digits
    assert ci_decimals(0.5, 1.0) == 2 and ci_decimals(10.0, 34.0) == 0
    assert ci_decimals(float("nan"), 1.0) is None and ci_decimals(0.3, 0.3) is None
    assert _interval(0.912345678, 0.80, 0.864) == "0.912 [0.800, 0.864]"
    assert _interval(21.4567, 10.0, 34.0) == "21 [10, 34]"


def test_case_plots_widen_with_the_arms():
    from bench.compare_plots import case_strip_png

    three = _image(case_strip_png({f"arm{i}": np.linspace(0, 1, 20) for i in range(3)}, "dice"))
    seven = _image(case_strip_png({f"arm{i}": np.linspace(0, 1, 20) for i in range(7)}, "dice"))
    assert seven.width > 1.4 * three.width  # each box keeps its width instead of all sharing 5 inches


def test_comparison_report_puts_the_verdict_table_first_and_shows_no_raw_floats(frame):
    import re
    from types import SimpleNamespace

    from bench.compare.export import report_html

    table = compare_arms(frame, "dice", "dice", higher_is_better=True, resamples=100).assign(unit="case")
    result = SimpleNamespace(
        name="demo", metric="dice", task="xray-heart",
        analysis=SimpleNamespace(table=table, verdicts=["spread_dice: too few runs (2): descriptive only"], notes=[]),
        settings={"dimension": "seg_loss", "arms": "dice,spread_dice,roi_dice", "baseline": "dice", "folds": 2,
                  "seeds": [0, 1], "mode": "fixed", "config_source": "preset", "preset": "smoke"},
        n_ran=12, n_skipped=0, n_failed=0, trial_hours_total=0.1, dropped_cells=[],
        runs=pd.DataFrame({"arm": ["dice"], "fold": [0], "seed": [0], "state": ["COMPLETE"], "dice": [0.7012345]}))
    page = report_html(result, {"forest.png": b"\x89PNG"})
    assert page.index("Verdicts: dice") < page.index("<h2>Figures") < page.index("<h2>All metrics")
    body = page.split("<h2>All metrics")[1].split("<h2>Runs")[0]
    assert not re.search(r"\d\.\d{5,}", body), "a results cell shows more digits than its CI supports"
    assert "max-width:48%" not in page  # figures at their own size, one per row
