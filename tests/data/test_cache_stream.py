"""Streaming cache build: rows written one at a time, same arrays as the in-memory preprocessing, at most one
full-size case alive, and nothing left behind when a build fails."""


import numpy as np
import pytest

from bench.data.cache import RowStream, cache_root, cached_arrays
from bench.data.labels import CARDIOMEGALY_CLASSES
from bench.data.radiograph import radiograph_rows
from bench.data.stream import scan_cases
from bench.errors import DataError
from tests.data.conftest import LiveCases


def test_row_stream_round_trip():
    rows = ({"x": np.full((2, 3), i, np.float32), "m": np.array(i % 2, np.uint8)} for i in range(4))
    arrays = cached_arrays("k", lambda: RowStream(4, rows, {"id": np.array(["a", "b", "c", "d"])}))
    assert arrays["x"].shape == (4, 2, 3) and arrays["x"][3, 1, 2] == 3 and isinstance(arrays["x"], np.memmap)
    assert arrays["m"].tolist() == [0, 1, 0, 1] and arrays["id"].tolist() == ["a", "b", "c", "d"]


@pytest.mark.parametrize("count, rows, message", [
    (3, [{"x": np.zeros(2)}] * 2, "yield 3 rows as it announced, but it yielded 2"),
    (2, [{"x": np.zeros(2)}, {"x": np.zeros(3)}], r"'x' must have shape \(2,\), but row 1 has \(3,\)"),
])
def test_bad_stream_leaves_nothing(count, rows, message):
    with pytest.raises(DataError, match=message):
        cached_arrays("bad", lambda: RowStream(count, iter(rows)))
    assert not any(cache_root().iterdir())


def test_rows_hold_the_resized_written_data(cxr14_chexmask):
    """32² PNGs -> 16²: image = 2x2 block means standardised per image, heart = nearest mask, thorax from lungs."""
    refs = scan_cases(str(cxr14_chexmask.root), "chexmask", CARDIOMEGALY_CLASSES)
    arrays = cached_arrays("s", lambda: radiograph_rows(refs, 16, CARDIOMEGALY_CLASSES))
    assert arrays["image"].shape == (len(refs), 1, 16, 16) and arrays["heart"].dtype == np.uint8
    for row, case_id in enumerate(arrays["case_id"].tolist()):
        blocks = cxr14_chexmask.image[case_id].reshape(16, 2, 16, 2).mean(axis=(1, 3))
        expected = (blocks - blocks.mean()) / blocks.std(ddof=1)
        np.testing.assert_allclose(arrays["image"][row, 0], expected, atol=1e-4)
        np.testing.assert_array_equal(arrays["heart"][row, 0], cxr14_chexmask.masks[case_id]["heart"][::2, ::2])
        assert arrays["thorax_width"][row] == pytest.approx(28 / 2)
        assert arrays["label"][row] == CARDIOMEGALY_CLASSES.index(cxr14_chexmask.label[case_id])
        assert arrays["patient_id"][row] == cxr14_chexmask.patient[case_id]


def test_one_full_size_case_alive_at_a_time(cxr14_chexmask):
    live = LiveCases()
    refs = [live.wrap(r) for r in scan_cases(str(cxr14_chexmask.root), "chexmask", CARDIOMEGALY_CLASSES)]
    cached_arrays("one", lambda: radiograph_rows(refs, 8, CARDIOMEGALY_CLASSES))
    seen = live.seen
    assert len(seen) == len(refs) and max(seen) == 0  # the previous case is gone before the next is read


def test_labels_outside_the_classes_fail_before_any_decode(cxr14_chexmask):
    refs = scan_cases(str(cxr14_chexmask.root), "chexmask", None)
    with pytest.raises(DataError, match=r"the data has \['cardiomegaly'"):
        radiograph_rows(refs, 8, ("no_cardiomegaly", "effusion"))
