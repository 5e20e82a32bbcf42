"""Split, phantom and guidance basics the walking skeleton relies on."""

import json

import numpy as np
import pytest
import torch

from bench.data.phantoms.xray import XrayPhantomSpec, generate
from bench.data.sources import standard_split_path
from bench.data.splits import check_split, load_split, make_split, save_split
from bench.errors import SplitError
from bench.guidance import GUIDANCE

SMALL = XrayPhantomSpec(n_patients=40, size=64, seed=3)


@pytest.fixture(scope="module")
def cases():
    return generate(SMALL)


def test_phantom_is_deterministic_and_grouped(cases):
    again = generate(SMALL)
    assert [c.id for c in again] == [c.id for c in cases]
    assert all(np.array_equal(a.image, b.image) and np.array_equal(a.masks["heart"], b.masks["heart"])
               for a, b in zip(cases, again))
    per_patient = {}
    for c in cases:
        per_patient.setdefault(c.patient_id, set()).add(c.labels["class"])
    assert len(per_patient) == 40 and all(len(v) == 1 for v in per_patient.values())
    assert max(sum(c.patient_id == p for c in cases) for p in per_patient) > 1  # follow-up images exist


def test_vsd_hearts_are_wider_than_normal_on_average():
    cases = generate(XrayPhantomSpec(n_patients=80, size=64, seed=0))
    width = {k: np.mean([c.masks["heart"].any(axis=0).sum() for c in cases if c.labels["class"] == k])
             for k in ("normal", "VSD")}
    assert width["VSD"] > width["normal"] * 1.1


def test_split_groups_patients_stratifies_and_hashes_stably(cases, tmp_path):
    split = make_split(cases, task="xray-heart", source="t", n_folds=3, seed=0)
    patient = {c.id: c.patient_id for c in cases}
    test_p = {patient[i] for i in split.test}
    for fold in split.folds:
        assert not ({patient[i] for i in fold["train"]} & {patient[i] for i in fold["val"]})
        assert not ({patient[i] for i in fold["val"]} & test_p)
        assert set(fold["train"]) | set(fold["val"]) | set(split.test) == set(patient)
    label = {c.id: c.labels["class"] for c in cases}
    assert {label[i] for i in split.test} == {"normal", "VSD", "ASD", "TOF"}  # every class in test
    path = save_split(split, tmp_path / "s.json")
    assert load_split(path, patient).sha256 == split.sha256
    assert make_split(cases, task="xray-heart", source="t", n_folds=3, seed=0).sha256 == split.sha256


def test_leakage_and_tampering_are_detected(cases, tmp_path):
    split = make_split(cases, task="xray-heart", source="t", n_folds=3, seed=0)
    patient = {c.id: c.patient_id for c in cases}
    leaky = dict(split.content())
    moved = leaky["folds"][0]["val"][0]
    leaky["test"] = leaky["test"] + [moved]  # a val case (and so its patient) also in test
    (tmp_path / "leaky.json").write_text(json.dumps(leaky))
    with pytest.raises(SplitError, match="one part only"):
        load_split(tmp_path / "leaky.json", patient)
    tampered = dict(split.content(), sha256="0" * 64)
    (tmp_path / "t.json").write_text(json.dumps(tampered))
    with pytest.raises(SplitError, match="sha256"):
        load_split(tmp_path / "t.json")
    with pytest.raises(SplitError, match="must exist"):
        check_split(split, {k: v for k, v in list(patient.items())[1:]})


def test_committed_standard_split_matches_the_phantom():
    from bench.tasks.xray_heart import PHANTOM_SPEC

    cases = generate(PHANTOM_SPEC)
    split = load_split(standard_split_path("xray-heart", "phantom"), {c.id: c.patient_id for c in cases})
    assert split.sha256 == make_split(cases, task="xray-heart", source="phantom").sha256


def test_soft_mask_dims_outside_pixels_to_floor():
    image = torch.full((1, 1, 2, 2), 10.0)
    mask = torch.tensor([[[[1.0, 0.0], [0.5, 0.1]]]])
    out = GUIDANCE.create("soft_mask", floor=0.2).inputs(image, mask)
    assert torch.allclose(out, torch.tensor([[[[10.0, 2.0], [5.0, 2.0]]]]))
    assert torch.equal(GUIDANCE.create("none").inputs(image, mask), image)
