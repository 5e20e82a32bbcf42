import numpy as np
import pytest

from bench.data.formats import FORMATS
from bench.data.formats.jsrt import read_img
from bench.data.phantoms.xray import CLASSES
from bench.data.splits import make_split
from bench.errors import DataError
from tests.conftest import write_jsrt_img


def test_reads_images_masks_and_official_folds(jsrt_folder):
    cases = FORMATS.create("jsrt", size=64).read(jsrt_folder, CLASSES)
    assert [c.id for c in cases] == ["JPCLN001", "JPCNN002"]
    for c in cases:
        assert c.image.shape == (32, 32) and c.spacing == (0.35, 0.35)
        assert set(c.masks) == {"heart", "lung_left", "lung_right"}  # "left lung" and "left_lung" both found
        assert c.labels["class"] == "normal"
    split = make_split(cases, "xray-heart", "jsrt")
    assert split.folds[0]["val"] == ("JPCLN001",) and split.folds[1]["val"] == ("JPCNN002",)
    assert split.test == ()


def test_img_layout_is_big_endian_and_inverted(tmp_path):
    raw = np.array([[0, 4095], [256, 1]], np.uint16)
    write_jsrt_img(tmp_path / "a.IMG", raw)
    assert (tmp_path / "a.IMG").read_bytes()[:4] == b"\x00\x00\x0f\xff"
    assert np.allclose(read_img(tmp_path / "a.IMG", size=2), 1 - raw / 4096)


def test_wrong_size_is_named(tmp_path):
    write_jsrt_img(tmp_path / "JPCLN001.IMG", np.zeros((8, 8)))
    with pytest.raises(DataError, match=r"JPCLN001.IMG: a JSRT .IMG must hold 2048x2048 .* but got 128 bytes"):
        FORMATS.create("jsrt").read(tmp_path, CLASSES)


def test_labels_file_and_unknown_class(jsrt_folder):
    (jsrt_folder / "labels.csv").write_text("case_id,label\nJPCLN001,VSD\nJPCNN002,Cardiomegaly\n")
    with pytest.raises(DataError, match="JPCNN002.IMG: the label must be one of .* but got 'Cardiomegaly'"):
        FORMATS.create("jsrt", size=64).read(jsrt_folder, CLASSES)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="must contain .IMG files"):
        FORMATS.create("jsrt").read(tmp_path, CLASSES)
