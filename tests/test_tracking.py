"""Tracking artifacts of a finished trial: the predictions overlay PNG (and what else a trial run carries)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.errors import BenchError
from bench.report import overlay_png
from bench.tracking import Tracker


def test_overlay_png_draws_masks_and_saliency():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((4, 1, 32, 32))
    truth = np.zeros((4, 1, 32, 32))
    truth[:, :, 8:20, 8:20] = 1
    pred = np.zeros((4, 1, 32, 32))
    pred[:, :, 10:22, 9:21] = 1
    with_saliency = Image.open(io.BytesIO(overlay_png(images, truth, pred, np.abs(images), ["a", "b", "c", "d"])))
    without = Image.open(io.BytesIO(overlay_png(images, truth, pred)))
    assert with_saliency.format == "PNG" and with_saliency.size[1] > without.size[1]  # second row of heat maps
    with pytest.raises(BenchError, match="same non-zero number"):
        overlay_png(images, truth[:3], pred)


@pytest.fixture
def smoke_search(workdir):
    from bench.search.optuna_backend import SearchSettings, run_search

    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, seed=1, study="tr"))
    assert summary.n_complete == 1
    return summary


def test_finished_trial_logs_overlay_png(smoke_search):
    tracker = Tracker("xray-heart")
    run_id = smoke_search.best_run_id
    assert "overlay.png" in [a.path for a in tracker.client.list_artifacts(run_id)]
    png = Image.open(tracker.download(run_id, "overlay.png"))
    png.verify()
    assert png.format == "PNG" and png.size[0] > 0 and png.size[1] > 0
