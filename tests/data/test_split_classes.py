"""Classes too small for stratified folds: one clear SplitError naming them and their counts, not sklearn's traceback."""

import warnings

import numpy as np
import pytest

from bench.data.case import Case
from bench.data.splits import make_split
from bench.errors import SplitError


def _cases(per_class: dict[str, int], images_per_patient: int = 1, part: str = "") -> list[Case]:
    out = []
    for label, n in per_class.items():
        for p in range(n):
            for k in range(images_per_patient):
                out.append(Case(id=f"{label}-{p}-{k}", patient_id=f"{label}-{p}", image=np.zeros((2, 2)),
                                labels={"class": label}, meta={"split_part": part} if part else {}))
    return out


def test_every_class_below_the_folds_is_one_clear_error():
    cases = _cases({"no_cardiomegaly": 3, "cardiomegaly": 2}, part="trainval")
    with pytest.raises(SplitError, match=r"at least 5 images in the train/val pool to stratify 5 folds, but "
                                         r"cardiomegaly has 2 patients \(2 images\), no_cardiomegaly has 3 "
                                         r"patients \(3 images\)"):
        make_split(cases, "xray-heart", "x", n_folds=5)


def test_too_small_before_the_test_part_is_drawn():
    with pytest.raises(SplitError, match=r"before the held-out test part is drawn.*\ba has 3 patients"):
        make_split(_cases({"a": 3, "b": 3}), "xray-heart", "x", n_folds=2)


def test_one_small_class_is_one_warning_naming_it():
    cases = _cases({"no_cardiomegaly": 12, "cardiomegaly": 2}, part="trainval")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        split = make_split(cases, "xray-heart", "x", n_folds=3)
    assert [str(w.message) for w in caught] == [
        ("the train/val pool: cardiomegaly has 2 patients (2 images), fewer than the 3 folds, so some "
         "validation folds will lack it (patients per class: cardiomegaly 2, no_cardiomegaly 12).")]
    assert len(split.folds) == 3
