"""The task's data path end to end on an exported folder: reader -> cache -> split -> parts."""

import numpy as np
import pytest

from bench.config import TrialConfig
from bench.data.cache import cache_root
from bench.errors import DataError
from bench.tasks.xray_heart import prepare


def _config(folder, fmt="dicom"):
    return TrialConfig(task="xray-heart", data=str(folder), data_format=fmt, task_params={"image_size": 32})


def test_prepare_reads_dicom_export_with_shifted_part(dicom_folder):
    data = prepare(_config(dicom_folder))
    assert set(data.parts) == {"train", "val", "test", "test_shifted"}
    assert data.parts["test_shifted"].row_shape("image") == (1, 32, 32)
    assert data.parts["test_shifted"][[0]]["image"].shape == (1, 1, 32, 32)
    assert np.isfinite(data.parts["train"].per_case("thorax_width")).all()
    assert prepare(_config(dicom_folder)).split_hash == data.split_hash  # split kept and found again


def test_bad_input_leaves_nothing_in_the_cache(dicom_folder):
    victim = max((dicom_folder / "images").glob("*.dcm"))
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DataError, match=victim.name):
        prepare(_config(dicom_folder))
    root = cache_root()
    assert not root.exists() or not any(root.iterdir())
    assert not (root.parent / "splits").exists()


def test_missing_heart_mask_is_a_clear_error(dicom_folder):
    table = dicom_folder / "labels.csv"
    lines = table.read_text().splitlines()
    col = lines[0].split(",").index("mask_heart")
    table.write_text("\n".join([lines[0]] + [",".join(v if i != col else "" for i, v in enumerate(line.split(",")))
                                             for line in lines[1:]]) + "\n")
    with pytest.raises(DataError, match="needs a heart mask"):
        prepare(_config(dicom_folder))
