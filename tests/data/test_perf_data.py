"""`bench perf --suite data --param mode=cxr14` plumbing at a tiny size (the figures come from the full run)."""

import numpy as np
from PIL import Image

from bench.data.formats import FORMATS
from bench.perf import run_suite
from bench.perf.data import write_synthetic_cxr14


def test_synthetic_layout_is_read_by_the_real_readers(tmp_path):
    write_synthetic_cxr14(tmp_path / "cxr", n_images=6, source_px=64)
    with Image.open(next((tmp_path / "cxr").rglob("*.png"))) as im:
        assert im.size == (64, 64) and im.mode == "L"
    cases = FORMATS.create("chexmask").read(tmp_path / "cxr")
    assert len(cases) == 6 and {c.meta["split_part"] for c in cases} == {"trainval", "test"}
    assert all(c.masks["heart"].any() and c.masks["heart"].shape == (64, 64) for c in cases)
    assert {c.labels["class"] for c in cases} == {"cardiomegaly", "no_cardiomegaly"}
    assert len({c.patient_id for c in cases}) == 3


def test_cxr14_mode_reports_build_memory_and_epochs():
    result = run_suite("data", out=None, mode="cxr14", n_images=4, source_px=64, image_size=16, epochs=1)
    assert result["images"] == 4 and result["command"].endswith("--param epochs=1")
    assert result["peak_rss_mb"] >= result["baseline_rss_mb"] > 0 and isinstance(result["met"], bool)
    assert result["cache_mb"] > 0 and np.isfinite(result["cache_epoch_s"]) and result["build_images_per_s"] > 0
