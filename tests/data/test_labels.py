"""Label schemes resolved from the data: phantom, fixed public schemes, a folder's own labels, explicit lists."""

import random

import pytest

from bench.data.formats import FORMATS
from bench.data.labels import (
    CARDIOMEGALY_CLASSES,
    CHD_CLASSES,
    order_classes,
    positive_class,
    resolve_classes,
)
from bench.data.phantoms.xray import CLASSES
from bench.errors import DataError


def test_phantom_scheme_is_the_phantoms_classes():
    assert CHD_CLASSES == CLASSES
    assert resolve_classes("phantom", "dicom") == CLASSES
    assert resolve_classes("phantom", "dicom", phantom_classes=("normal", "nodule", "GGO")) == ("normal", "nodule", "GGO")
    assert resolve_classes("phantom", "dicom", ["TOF", "ASD", "VSD", "normal"]) == ("TOF", "ASD", "VSD", "normal")
    with pytest.raises(DataError, match=r"the phantom: every label must be one of the given classes.*'TOF'"):
        resolve_classes("phantom", "dicom", ["normal", "VSD", "ASD"])


def test_public_sets_are_binary_cardiomegaly(cxr14_chexmask, chexpert_folder):
    assert resolve_classes(str(cxr14_chexmask.root), "chestxray14") == CARDIOMEGALY_CLASSES
    assert resolve_classes(str(cxr14_chexmask.root), "chexmask") == CARDIOMEGALY_CLASSES
    assert resolve_classes(str(chexpert_folder.root), "chexpert") == CARDIOMEGALY_CLASSES
    assert positive_class(CARDIOMEGALY_CLASSES) == "cardiomegaly" and positive_class(CHD_CLASSES) is None
    flipped = resolve_classes(str(cxr14_chexmask.root), "chestxray14", ["cardiomegaly", "no_cardiomegaly"])
    assert flipped == ("cardiomegaly", "no_cardiomegaly")
    with pytest.raises(DataError, match=r"Data_Entry_2017.csv: every label must be one of the given classes "
                                        r"\['cardiomegaly', 'other'\], but the data also has 'no_cardiomegaly' \(\d+ rows\)"):
        resolve_classes(str(cxr14_chexmask.root), "chestxray14", ["cardiomegaly", "other"])


def test_folder_scheme_comes_from_its_labels(cardiomegaly_dicom):
    root = str(cardiomegaly_dicom.root)
    assert resolve_classes(root, "dicom") == ("no_finding", "cardiomegaly")
    cases = FORMATS.create("dicom").read(root)  # no class list: the data's own labels are accepted
    assert {c.id: c.labels["class"] for c in cases} == cardiomegaly_dicom.label
    assert {c.id: c.patient_id for c in cases} == cardiomegaly_dicom.patient
    assert resolve_classes(root, "dicom", ["cardiomegaly", "no_finding"]) == ("cardiomegaly", "no_finding")
    with pytest.raises(DataError, match=r"labels.csv: every label must be one of the given classes \['no_finding', "
                                        r"'effusion'\], but the data also has 'cardiomegaly' \(\d+ rows\)"):
        resolve_classes(root, "dicom", ["no_finding", "effusion"])
    with pytest.raises(DataError, match="at least two distinct"):
        resolve_classes(root, "dicom", ["cardiomegaly", "cardiomegaly"])


def test_reader_given_classes_refuses_all_unknown_labels_in_one_error(cardiomegaly_dicom):
    with pytest.raises(DataError, match=r"labels.csv:\d+: the label must be one of the task's classes \(normal, "
                                        r"VSD, ASD, TOF\), but got '\w+'\. \d+ rows in all have labels outside "
                                        r"them: cardiomegaly, no_finding\."):
        FORMATS.create("dicom").read(cardiomegaly_dicom.root, CLASSES)


def test_png_folder_scheme(tmp_path, tiny_cases):
    from dataclasses import replace

    from bench.data.phantoms.xray import export

    cases = [replace(c, labels={**c.labels, "class": ["b-line", "Normal", "a-line"][i % 3]}) for i, c in enumerate(tiny_cases)]
    root = export(cases, tmp_path / "png", "png")
    assert resolve_classes(str(root), "png") == ("Normal", "a-line", "b-line")
    assert {c.labels["class"] for c in FORMATS.create("png").read(root)} == {"Normal", "a-line", "b-line"}


def test_order_is_independent_of_row_order():
    labels = ["effusion", "no_finding", "cardiomegaly", "atelectasis"] * 3
    orders = {order_classes(random.Random(seed).sample(labels, len(labels))) for seed in range(5)}
    assert orders == {("no_finding", "atelectasis", "cardiomegaly", "effusion")}
    assert order_classes(["VSD", "TOF", "normal", "ASD"]) == CHD_CLASSES
    assert order_classes(["cardiomegaly", "no_cardiomegaly"]) == CARDIOMEGALY_CLASSES
