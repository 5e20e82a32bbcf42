"""CheXpert reader: Path column, frontal views, patient from the path, uncertain-label policy, valid.csv = test."""

import warnings

import numpy as np
import pytest

from bench.data.formats import FORMATS
from bench.data.splits import make_split
from bench.errors import DataError


def test_frontal_labels_patients_and_official_test(chexpert_folder):
    cases = FORMATS.create("chexpert").read(chexpert_folder.root, ("no_cardiomegaly", "cardiomegaly"))
    expected = {i for i, label in chexpert_folder.label.items() if label != "uncertain" and "lateral" not in i}
    assert {c.id for c in cases} == expected
    for c in cases:
        assert c.patient_id == chexpert_folder.patient[c.id] and c.labels["class"] == chexpert_folder.label[c.id]
        assert c.meta["split_part"] == chexpert_folder.part[c.id]
        assert c.image.shape == (24, 32) and c.spacing is None and c.masks == {}
        np.testing.assert_allclose(c.image, chexpert_folder.image[c.id], atol=0.05)  # JPEG at quality 95
    blank = {c.id: c.labels["class"] for c in cases}["train/patient00002/study1/view1_frontal"]
    assert blank == "no_cardiomegaly"  # blank = not mentioned in the report
    split = make_split(cases, "xray-heart", "chexpert", n_folds=2)
    assert set(split.test) == {i for i in expected if i.startswith("valid/")}


@pytest.mark.parametrize("policy, expected", [("ignore", None), ("ones", "cardiomegaly"), ("zeros", "no_cardiomegaly")])
def test_uncertain_policy(chexpert_folder, policy, expected):
    refs = FORMATS.create("chexpert", uncertain=policy).scan(chexpert_folder.root)
    labels = {r.id: r.labels["class"] for r in refs}
    assert labels.get("train/patient00003/study1/view1_frontal") == expected


def test_all_views_and_bad_options(chexpert_folder):
    refs = FORMATS.create("chexpert", views="all").scan(chexpert_folder.root)
    assert "train/patient00001/study2/view2_lateral" in {r.id for r in refs}
    with pytest.raises(DataError, match="uncertain must be one of"):
        FORMATS.create("chexpert", uncertain="maybe")


def test_missing_jpegs_are_listed_once(chexpert_folder):
    gone = [chexpert_folder.root / f"train/patient0000{p}/study1/view1_frontal.jpg" for p in (4, 5)]
    for f in gone:
        f.unlink()
    with pytest.raises(DataError, match=r"2 of 8 rows name an image file that is missing \(train.csv:7 "
                                        r"train/patient00004.*train.csv:8 train/patient00005"):
        FORMATS.create("chexpert").scan(chexpert_folder.root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refs = FORMATS.create("chexpert", missing="skip").scan(chexpert_folder.root)
    assert len(caught) == 1 and "left out" in str(caught[0].message) and len(refs) == 6


def test_bad_value_and_path(chexpert_folder):
    table = chexpert_folder.root / "train.csv"
    table.write_text(table.read_text().replace(",1.0,1.0\n", ",yes,1.0\n", 1))
    with pytest.raises(DataError, match=r"train.csv:2: Cardiomegaly must be 1, 0, -1 or blank, but got 'yes'"):
        FORMATS.create("chexpert").scan(chexpert_folder.root)
    table.write_text("Path,Cardiomegaly,Frontal/Lateral\nCheXpert-v1.0-small/train/p1/view1.jpg,1.0,Frontal\n")
    with pytest.raises(DataError, match="train.csv:2: a Path must contain the patient folder"):
        FORMATS.create("chexpert").scan(chexpert_folder.root)


def test_labels_outside_given_classes_are_one_error(chexpert_folder):
    with pytest.raises(DataError, match=r"train.csv:2: the label must be one of .*\(normal.*but got 'cardiomegaly'"
                                        r"\. 6 rows in all .*: cardiomegaly, no_cardiomegaly\."):
        FORMATS.create("chexpert").scan(chexpert_folder.root, ("normal", "VSD", "ASD", "TOF"))


def test_unknown_spacing_is_reported_unknown_and_the_heart_distance_is_named_in_pixels(chexpert_folder):
    """CheXpert JPEGs carry no pixel spacing: inspect says "unknown" (not 1 mm), and the task's heart HD95 is
    registered and reported as pixels (heart_hd95_px), never under a name that reads as millimetres."""
    from bench.data.inspect import inspect
    from bench.metrics import METRICS, higher_is_better
    from bench.tasks import TASKS

    report = inspect(chexpert_folder.root, "xray-heart", "chexmask")
    # a folder this small is only too small to split (what a search would say first); it reads cleanly
    assert all(p.startswith("a search splits the data first") for p in report["problems"])
    assert report["images_decoded"] > 0
    assert report["spacing_mm"] == "unknown"
    metrics = TASKS.get("xray-heart").metrics
    assert "heart_hd95_px" in metrics and "heart_hd95" not in metrics
    assert "heart_hd95_px" in METRICS and not higher_is_better("val_heart_hd95_px")
    assert "not mm" in METRICS.get("heart_hd95_px").description
