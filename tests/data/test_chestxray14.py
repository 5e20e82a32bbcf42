import numpy as np
import pytest

from bench.data.formats import FORMATS
from bench.data.formats.chexmask import decode_rle, encode_rle
from bench.data.labels import CARDIOMEGALY_CLASSES
from bench.data.phantoms.xray import CLASSES
from bench.data.splits import make_split
from bench.errors import DataError


def test_labels_patients_spacing_and_official_split(cxr14_folder):
    cases = FORMATS.create("chestxray14").read(cxr14_folder, CARDIOMEGALY_CLASSES)
    by_id = {c.id: c for c in cases}
    assert by_id["00000001_001"].labels["class"] == "cardiomegaly"
    assert by_id["00000002_000"].labels["class"] == "no_cardiomegaly"
    assert by_id["00000001_000"].patient_id == by_id["00000001_001"].patient_id
    assert by_id["00000002_000"].spacing == pytest.approx((0.143 * 2048 / 32,) * 2)
    assert 0 <= min(c.image.min() for c in cases) and max(c.image.max() for c in cases) <= 1
    split = make_split(cases, "cxr", "cxr14", n_folds=2)
    assert split.test == ("00000002_000",)
    assert {i for f in split.folds for i in f["val"]} == {"00000001_000", "00000001_001", "00000003_000"}


def test_xray_heart_classes_are_refused_clearly(cxr14_folder):
    with pytest.raises(DataError, match=r"Data_Entry_2017.csv:2: the label must be one of the task's classes \(normal.*'cardiomegaly'"):
        FORMATS.create("chestxray14").read(cxr14_folder, CLASSES)


def test_image_without_entry(cxr14_folder):
    (cxr14_folder / "images_001" / "images" / "00000009_000.png").write_bytes(
        (cxr14_folder / "images_001" / "images" / "00000001_000.png").read_bytes())
    with pytest.raises(DataError, match="00000009_000.png: every image must have a row"):
        FORMATS.create("chestxray14").read(cxr14_folder, CARDIOMEGALY_CLASSES)


def test_rle_is_one_indexed_row_major():
    mask = decode_rle("2 3 9 1", 3, 4)
    assert mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]]
    assert encode_rle(mask) == "2 3 9 1"
    with pytest.raises(ValueError):
        decode_rle("11 5", 3, 4)


def test_chexmask_joins_masks_and_filters_quality(chexmask_folder):
    cases = FORMATS.create("chexmask").read(chexmask_folder, CARDIOMEGALY_CLASSES)
    assert sorted(c.id for c in cases) == ["00000001_000", "00000002_000"]  # Dice RCA 0.5 row dropped
    c = cases[0]
    assert set(c.masks) == {"heart", "lung_left", "lung_right"} and c.masks["heart"].sum() == 120
    assert c.masks["heart"].shape == c.image.shape
    assert len(FORMATS.create("chexmask", min_dice=0.0).read(chexmask_folder, CARDIOMEGALY_CLASSES)) == 3


def test_chexmask_wrong_mask_size(chexmask_folder):
    table = chexmask_folder / "ChestX-Ray8.csv"
    table.write_text(table.read_text().replace(",32,32", ",16,64"))
    with pytest.raises(DataError, match=r"ChestX-Ray8.csv:2: a mask must have its image's shape \(32, 32\)"):
        FORMATS.create("chexmask").read(chexmask_folder, CARDIOMEGALY_CLASSES)


def test_chexmask_table_missing(cxr14_folder):
    with pytest.raises(DataError, match="must contain the CheXmask CSV"):
        FORMATS.create("chexmask").read(cxr14_folder, CARDIOMEGALY_CLASSES)


def test_missing_images_are_listed_once(cxr14_chexmask):
    """A partly downloaded archive: one error naming how many rows lack their PNG and which, not one per row."""
    import warnings

    pngs = sorted(cxr14_chexmask.root.rglob("*.png"))
    for p in pngs[-4:]:
        p.unlink()
    names = ", ".join(p.name for p in pngs[-4:])
    with pytest.raises(DataError, match=rf"Data_Entry_2017.csv: 4 of 18 rows name an image file that is missing \({names}\)"):
        FORMATS.create("chestxray14").read(cxr14_chexmask.root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cases = FORMATS.create("chestxray14", missing="skip").read(cxr14_chexmask.root)
    assert len(caught) == 1 and "4 of 18 rows" in str(caught[0].message)
    assert sorted(c.id for c in cases) == sorted(p.stem for p in pngs[:-4])
    for c in cases:
        assert c.patient_id == cxr14_chexmask.patient[c.id] and c.labels["class"] == cxr14_chexmask.label[c.id]
        assert c.meta["split_part"] == cxr14_chexmask.part[c.id]


def test_no_classes_given_takes_the_data_scheme(cxr14_folder):
    assert {c.labels["class"] for c in FORMATS.create("chestxray14").read(cxr14_folder)} == set(CARDIOMEGALY_CLASSES)


def test_nih_box_layout_flat_images_and_2020_table(tmp_path):
    """The NIH box today: images_0NN.tar.gz extracted into one flat images/, Data_Entry_2017_v2020.csv."""
    from tests.data.conftest import write_cxr14

    written = write_cxr14(tmp_path / "nih", quality=lambda k: 0.5 if k == 1 else 0.9, nih_box=True)
    assert not (written.root / "Data_Entry_2017.csv").exists()
    cases = FORMATS.create("chestxray14").read(written.root, CARDIOMEGALY_CLASSES)
    assert sorted(c.id for c in cases) == sorted(written.patient)
    for c in cases:
        assert (c.patient_id, c.labels["class"], c.meta["split_part"]) == (
            written.patient[c.id], written.label[c.id], written.part[c.id])
    masked = FORMATS.create("chexmask").read(written.root, CARDIOMEGALY_CLASSES)
    dropped = sorted(written.patient)[1]  # the row written with Dice RCA (Mean) 0.5
    assert sorted(c.id for c in masked) == sorted(set(written.patient) - {dropped})
    for c in masked:
        assert c.masks["heart"].shape == c.image.shape
        np.testing.assert_array_equal(c.masks["heart"], written.masks[c.id]["heart"])
    test_part = {c.id for c in masked if c.meta.get("split_part") == "test"}
    assert test_part == {i for i, part in written.part.items() if part == "test"} - {dropped}
    split = make_split(masked, "xray-heart", "nih", n_folds=2)
    assert set(split.test) == test_part


def test_folder_without_entry_table_names_both_files(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="must contain Data_Entry_2017_v2020.csv or Data_Entry_2017.csv"):
        FORMATS.create("chestxray14").read(tmp_path)
    (tmp_path / "ChestX-Ray8.csv").write_text("Image Index,Dice RCA (Mean),Heart,Left Lung,Right Lung,Height,Width\n")
    with pytest.raises(DataError, match="images' table \\(Data_Entry_2017_v2020.csv or Data_Entry_2017.csv"):
        FORMATS.create("chexmask").read(tmp_path)
