import numpy as np
import pytest

from bench.data.phantoms.xray import CLASSES, SITE_STYLES, XrayPhantomSpec, export, generate
from bench.errors import ConfigError, DataError


def test_same_spec_same_bytes(tiny_cases):
    again = generate(XrayPhantomSpec(n_patients=6, n_shifted_patients=3, size=64, seed=3))
    assert [c.id for c in again] == [c.id for c in tiny_cases]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, tiny_cases))


def test_ground_truth_and_patients(tiny_cases):
    for c in tiny_cases:
        assert c.image.shape == (64, 64) and c.image.dtype == np.float32
        assert 0.0 <= c.image.min() and c.image.max() <= 1.0
        assert set(c.masks) == {"heart", "lung_left", "lung_right"}
        assert c.masks["heart"].sum() > 0 and not (c.masks["heart"] & c.masks["lung_left"]).any()
        assert c.labels["class"] in CLASSES and 0.3 < c.labels["ctr"] < 0.75
        assert c.site in SITE_STYLES
    per_patient = {}
    for c in tiny_cases:
        per_patient.setdefault(c.patient_id, []).append(c)
    assert all(1 <= len(v) <= 3 for v in per_patient.values())
    assert all(len({c.labels["class"] for c in v}) == 1 and len({c.site for c in v}) == 1
               for v in per_patient.values())
    shifted = {c.patient_id for c in tiny_cases if c.meta.get("split_part") == "test_shifted"}
    assert len(shifted) == 3 and all(p.startswith("S") for p in shifted)


def test_class_signs_without_overlap():
    """At difficulty 0 the textbook signs hold: normal CTR 0.42-0.50, VSD/ASD larger, TOF has fewer vessels."""
    cases = generate(XrayPhantomSpec(n_patients=40, n_shifted_patients=0, size=128, difficulty=0.0,
                                     max_images_per_patient=1))
    ctr = {k: np.array([c.labels["ctr"] for c in cases if c.labels["class"] == k]) for k in CLASSES}
    assert ctr["normal"].min() >= 0.40 and ctr["normal"].max() <= 0.51
    assert np.median(ctr["VSD"]) > ctr["normal"].max() - 0.01
    assert np.median(ctr["ASD"]) > np.median(ctr["normal"])

    def right_extent(c):  # how far the heart reaches to the image-left of the midline
        cols = np.flatnonzero(c.masks["heart"].any(0))
        return 64 - cols[0]

    asd = np.median([right_extent(c) for c in cases if c.labels["class"] == "ASD"])
    vsd = np.median([right_extent(c) for c in cases if c.labels["class"] == "VSD"])
    assert asd > vsd  # ASD bulges the right border, VSD the left


def test_site_mix_is_confounded_and_shift_breaks_it():
    cases = generate(XrayPhantomSpec(n_patients=90, n_shifted_patients=60, size=32, max_images_per_patient=1))
    def normal_share(site, shifted):
        sel = [c for c in cases if c.site == site and bool(c.meta.get("split_part")) == shifted]
        return np.mean([c.labels["class"] == "normal" for c in sel])
    assert normal_share("site-A", False) > normal_share("site-B", False) + 0.3
    assert normal_share("site-A", True) + 0.3 < normal_share("site-B", True)
    assert {c.site for c in cases if c.meta.get("split_part")} >= {"site-D"}
    assert "site-D" not in {c.site for c in cases if not c.meta.get("split_part")}


@pytest.mark.parametrize("kwargs", [{"size": 16}, {"size": 2048}, {"difficulty": 1.5}, {"n_patients": 0}])
def test_spec_is_validated(kwargs):
    with pytest.raises(ConfigError):
        XrayPhantomSpec(**kwargs)


@pytest.mark.parametrize("fmt", ["png", "dicom"])
def test_export_round_trip(tmp_path, tiny_cases, fmt):
    from bench.data.formats import FORMATS

    back = FORMATS.create(fmt).read(export(tiny_cases, tmp_path / fmt, fmt), CLASSES)
    by_id = {c.id: c for c in back}
    assert set(by_id) == {c.id for c in tiny_cases}
    for c in tiny_cases:
        b = by_id[c.id]
        assert b.patient_id == c.patient_id and b.labels["class"] == c.labels["class"]
        assert np.abs(b.image - c.image).max() <= 1 / 4095 + 1e-6  # 12-bit (dicom) / 16-bit (png) quantisation
        for m in c.masks:
            assert np.array_equal(b.masks[m], c.masks[m])
        assert b.meta.get("split_part", "") == c.meta.get("split_part", "")


def test_export_refuses_read_only_format(tmp_path, tiny_cases):
    with pytest.raises(DataError, match="export format"):
        export(tiny_cases, tmp_path / "x", "jsrt")


def test_phantom_keeps_its_four_classes_and_committed_split():
    """The phantom's class list is the four CHD classes in their order, and its split the committed one."""
    from bench.config import TrialConfig
    from bench.data.splits import load_split, standard_split_path
    from bench.tasks.xray_heart import prepare

    data = prepare(TrialConfig(task="xray-heart", task_params={"image_size": 32}))
    assert data.classes == CLASSES == ("normal", "VSD", "ASD", "TOF")
    assert data.split_hash == load_split(standard_split_path("xray-heart", "phantom")).sha256
    assert "test_shifted" in data.parts
    same = prepare(TrialConfig(task="xray-heart", task_params={"image_size": 32}, classes=list(CLASSES)))
    assert same.split_hash == data.split_hash and same.classes == data.classes


@pytest.mark.parametrize("fmt", ["png", "dicom"])
def test_make_phantom_writes_one_case_at_a_time_and_the_files_of_the_whole_list(tmp_path, monkeypatch, fmt):
    """`bench datasets make-phantom` generates and writes case by case (issue 22: 64k patients must not be
    held at once), and writes byte for byte what the writer makes of the whole list of cases."""
    import gc
    import weakref

    from bench.data.phantoms import xray

    spec = {"n_patients": 5, "n_shifted_patients": 2, "size": 64, "seed": 3}
    refs: list[weakref.ref] = []  # Case is unhashable (a dataclass with __eq__): plain weak references
    most = []
    made = xray.iter_cases

    def counted(s):
        for case in made(s):
            gc.collect()
            refs.append(weakref.ref(case))
            most.append(sum(r() is not None for r in refs))
            yield case

    cases = generate(XrayPhantomSpec(**spec))  # made before counting: a list holds them all
    whole = export(cases, tmp_path / "whole", fmt)
    n, cases = len(cases), None
    monkeypatch.setattr(xray, "iter_cases", counted)
    streamed = xray.make_phantom(tmp_path / "streamed", fmt, **spec)
    assert len(most) == n > 7 and max(most) <= 2  # the case being written and the one just made
    files = sorted(p.relative_to(streamed) for p in streamed.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(whole) for p in whole.rglob("*") if p.is_file())
    assert all((streamed / f).read_bytes() == (whole / f).read_bytes() for f in files)
