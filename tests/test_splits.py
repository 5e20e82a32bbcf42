import json
from dataclasses import replace

import pytest

from bench.data.phantoms.xray import XrayPhantomSpec, generate
from bench.data.sources import standard_split_path
from bench.data.splits import Split, check_split, load_split, make_split, save_split
from bench.errors import SplitError


@pytest.fixture(scope="module")
def cases():
    return generate(XrayPhantomSpec(n_patients=30, n_shifted_patients=6, size=32))


def test_parts_are_patient_disjoint_and_shifted_part_held_out(cases):
    split = make_split(cases, "xray-heart", "phantom", n_folds=3)
    patient = {c.id: c.patient_id for c in cases}
    assert split.part_names == ("train", "val", "test", "test_shifted")
    shifted = {c.id for c in cases if c.meta.get("split_part") == "test_shifted"}
    assert set(split.part("test_shifted")) == shifted
    for k in range(3):
        parts = [{patient[i] for i in split.part(p, k)} for p in split.part_names]
        assert all(not (a & b) for i, a in enumerate(parts) for b in parts[i + 1 :])
        assert set().union(*(set(split.part(p, k)) for p in split.part_names)) == set(patient)


def test_round_trip_and_hash(tmp_path, cases):
    split = make_split(cases, "xray-heart", "phantom", n_folds=3)
    path = save_split(split, tmp_path / "s.json")
    data = json.loads(path.read_text())
    assert "test_shifted" in data and data["sha256"] == split.sha256
    assert load_split(path, {c.id: c.patient_id for c in cases}) == split
    data["test_shifted"] = data["test_shifted"][1:]
    path.write_text(json.dumps(data))
    with pytest.raises(SplitError, match="sha256 must match"):
        load_split(path)


def test_hash_without_extra_parts_is_unchanged():
    """Older split files (no test_shifted) keep their sha256: extra parts enter the content only if present."""
    split = Split("t", "s", 0, "class", ("a",), ({"train": ("b",), "val": ("c",)},))
    assert "test_shifted" not in split.content()
    assert replace(split, extra={"test_shifted": ("d",)}).sha256 != split.sha256


def test_leak_into_shifted_part_is_caught(cases):
    split = make_split(cases, "xray-heart", "phantom", n_folds=3)
    patient = {c.id: c.patient_id for c in cases}
    leaked = replace(split, extra={"test_shifted": split.extra["test_shifted"] + (split.folds[0]["train"][0],)})
    with pytest.raises(SplitError, match=r"fold 0 shares 1 patient\(s\) between train and test_shifted"):
        check_split(leaked, patient)
    with pytest.raises(SplitError, match="split part must be one of"):
        split.part("holdout")


def test_official_test_part_is_honoured(cases):
    chosen = [c for c in cases if c.patient_id in ("P0000", "P0001", "P0002")]
    for c in chosen:
        c.meta["split_part"] = "test"
    try:
        split = make_split(cases, "xray-heart", "x", n_folds=2)
        assert set(split.test) == {c.id for c in chosen}
        chosen[0].meta["split_part"] = "trainval"  # one image of a test patient elsewhere: a leak
        with pytest.raises(SplitError, match="between train and test|between val and test"):
            make_split(cases, "xray-heart", "x", n_folds=2)
    finally:
        for c in chosen:
            c.meta.pop("split_part")


def test_too_few_patients(cases):
    with pytest.raises(SplitError, match="needs? at least 5 patients"):
        make_split(cases[:3], "xray-heart", "x")


def test_committed_standard_split_matches_default_phantom():
    from bench.tasks.xray_heart import PHANTOM_SPEC

    cases = generate(PHANTOM_SPEC)
    split = load_split(standard_split_path("xray-heart", "phantom"), {c.id: c.patient_id for c in cases})
    assert split == make_split(cases, "xray-heart", "phantom")
    assert len(split.part("test_shifted")) > 0
