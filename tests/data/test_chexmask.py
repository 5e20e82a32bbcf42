"""CheXmask joined to ChestX-ray14 and to CheXpert: masks decoded from real RLE, quality filter, labels,
patients and official parts from the image set's own tables."""

import csv
import warnings

import numpy as np
import pytest

from bench.data.formats import FORMATS
from bench.data.labels import CARDIOMEGALY_CLASSES
from bench.data.stream import scan_cases
from bench.errors import DataError


def _check_against(cases, written):
    for c in cases:
        assert c.patient_id == written.patient[c.id]
        assert c.labels["class"] == written.label[c.id]
        assert c.meta.get("split_part") == written.part[c.id]
        assert set(c.masks) == {"heart", "lung_left", "lung_right"}
        for name, mask in c.masks.items():
            assert mask.shape == c.image.shape
            np.testing.assert_array_equal(mask, written.masks[c.id][name], err_msg=f"{c.id} {name}")


def test_chestxray14_join_filters_quality_and_keeps_official_split(cxr14_chexmask):
    cases = FORMATS.create("chexmask").read(cxr14_chexmask.root, CARDIOMEGALY_CLASSES)
    dropped = sorted(cxr14_chexmask.patient)[1]  # the row written with Dice RCA (Mean) 0.5
    assert sorted(c.id for c in cases) == sorted(set(cxr14_chexmask.patient) - {dropped})
    _check_against(cases, cxr14_chexmask)
    for c in cases:
        np.testing.assert_allclose(c.image, cxr14_chexmask.image[c.id])
    assert len(FORMATS.create("chexmask", min_dice=0.4).read(cxr14_chexmask.root)) == len(cxr14_chexmask.patient)
    assert len(FORMATS.create("chexmask", min_dice=0.95).scan(cxr14_chexmask.root)) == 0


def test_scan_decodes_nothing_and_matches_read(cxr14_chexmask):
    refs = scan_cases(str(cxr14_chexmask.root), "chexmask", None)
    png = next(cxr14_chexmask.root.rglob("*.png"))
    png.write_bytes(b"not a png")  # a scan must not have needed the pixels
    assert all(r.labels["class"] == cxr14_chexmask.label[r.id] for r in refs)
    broken = next(r for r in refs if r.id == png.stem)
    with pytest.raises(DataError, match=png.name):
        broken.load()


def test_chexpert_join_resizes_masks_to_the_downsampled_images(chexpert_folder):
    cases = FORMATS.create("chexmask").read(chexpert_folder.root)
    # frontal only, uncertain (-1) ignored: the lateral and patient00003 are left out
    assert sorted(c.id for c in cases) == sorted(
        i for i, label in chexpert_folder.label.items() if label != "uncertain" and "lateral" not in i)
    _check_against(cases, chexpert_folder)
    ones = FORMATS.create("chexmask", uncertain="ones").read(chexpert_folder.root)
    assert {c.id: c.labels["class"] for c in ones}["train/patient00003/study1/view1_frontal"] == "cardiomegaly"


def test_mask_of_another_aspect_ratio_is_refused(cxr14_chexmask):
    table = cxr14_chexmask.root / "ChestX-Ray8.csv"
    table.write_text(table.read_text().replace(",32,32", ",16,64"))
    with pytest.raises(DataError, match=r"ChestX-Ray8.csv:2: a mask must have its image's shape \(32, 32\)"):
        FORMATS.create("chexmask").read(cxr14_chexmask.root)


def test_table_of_another_data_set_is_refused(cxr14_chexmask):
    table = cxr14_chexmask.root / "ChestX-Ray8.csv"
    rows = list(csv.reader(table.open()))
    with table.open("w", newline="") as fh:
        csv.writer(fh).writerows([rows[0]] + [[f"x{r[0]}"] + r[1:] for r in rows[1:]])
    with pytest.raises(DataError, match="none of its ids matches"):
        FORMATS.create("chexmask").scan(cxr14_chexmask.root)


def test_bad_rle_names_the_row(cxr14_chexmask):
    table = cxr14_chexmask.root / "ChestX-Ray8.csv"
    rows = list(csv.reader(table.open()))
    rows[1][6] = "5 3 1"
    with table.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)
    refs = FORMATS.create("chexmask").scan(cxr14_chexmask.root)
    with pytest.raises(DataError, match="ChestX-Ray8.csv:2: a CheXmask row must hold valid RLE"):
        refs[0].load()


def test_zipped_table_gets_a_hint(tmp_path):
    (tmp_path / "ChestX-Ray8.csv.gz").write_bytes(b"")
    with pytest.raises(DataError, match="gunzip"):
        FORMATS.create("chexmask").read(tmp_path)


def test_missing_images_are_named_once(cxr14_chexmask):
    pngs = sorted(cxr14_chexmask.root.rglob("*.png"))
    for p in pngs[:3]:
        p.unlink()
    with pytest.raises(DataError, match=r"Data_Entry_2017.csv: 3 of 18 rows name an image file that is missing"):
        FORMATS.create("chexmask").scan(cxr14_chexmask.root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refs = FORMATS.create("chexmask", missing="skip").scan(cxr14_chexmask.root)
    assert len([w for w in caught if "missing" in str(w.message)]) == 1
    assert {p.stem for p in pngs[:3]}.isdisjoint(r.id for r in refs)
