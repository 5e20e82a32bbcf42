"""Segmentation data sets: nnU-Net v2 raw folders and MSD task folders read case for case as written, the
organ phantom, and bench's writers read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.data.phantoms.organ import ORGAN_LABELS, OrganPhantomSpec, generate_organ
from bench.data.seg_dataset import open_seg_dataset, write_msd, write_nnunet
from bench.errors import ConfigError, DataError
from tests.seg_files import LABELS, SHAPE, SPACING, write_msd_folder, write_nnunet_folder, write_png_folder


def _same_case(ds, written):
    assert ds.case_ids == tuple(sorted(written.images))
    for case_id, image in written.images.items():
        case = ds.load(case_id)
        assert case.image.dtype == np.float32 and case.image.shape == image.shape
        np.testing.assert_allclose(case.image, image, rtol=0, atol=1e-4)
        np.testing.assert_array_equal(case.masks["label"], written.labels[case_id])
        assert case.patient_id == case_id


def test_nnunet_multichannel_folder_is_read_case_for_case_in_zyx_order(tmp_path):
    written = write_nnunet_folder(tmp_path / "Dataset503_Kidney", n=3, channels=2)
    ds = open_seg_dataset(written.root)
    assert (ds.layout, ds.channels, ds.labels, ds.dims, ds.file_ending) == (
        "nnunet", ("CT", "PET"), LABELS, 3, ".nii.gz")
    assert ds.num_training == 3 and ds.test_ids == ()
    _same_case(ds, written)  # the ._* files beside the volumes were skipped
    case = ds.load(ds.case_ids[0])
    assert case.image.shape == (2, *SHAPE) and case.spacing == pytest.approx(SPACING)


def test_a_parent_folder_with_one_dataset_inside_is_read_as_that_dataset(tmp_path):
    written = write_nnunet_folder(tmp_path / "raw" / "Dataset503_Kidney", n=2, channels=1)
    assert open_seg_dataset(tmp_path / "raw").root == written.root


def test_msd_4d_multimodal_volumes_are_split_into_channels_and_mac_files_skipped(tmp_path):
    written = write_msd_folder(tmp_path / "Task05_Prostate", n=3, channels=2)
    ds = open_seg_dataset(written.root)
    assert (ds.layout, ds.channels, ds.labels, ds.dims) == ("msd", ("T2", "ADC"), LABELS, 3)
    _same_case(ds, written)
    assert ds.load("prostate_01").spacing == pytest.approx(SPACING)


def test_msd_single_channel_volumes(tmp_path):
    written = write_msd_folder(tmp_path / "Task09_Spleen", n=2, channels=1, mac_files=False)
    ds = open_seg_dataset(written.root)
    assert ds.channels == ("T2",)
    _same_case(ds, written)


def test_nnunet_2d_png_layout_reads_one_grayscale_png_per_channel(tmp_path):
    written = write_png_folder(tmp_path / "Dataset120_Roads", n=3, channels=2)
    ds = open_seg_dataset(written.root)
    assert ds.dims == 2 and ds.file_ending == ".png" and ds.channels == ("c0", "c1")
    _same_case(ds, written)
    assert ds.load(ds.case_ids[0]).spacing is None  # PNG says nothing about mm: unknown, never 1 mm


def test_labelled_test_cases_are_listed_and_unlabelled_ones_never(tmp_path):
    written = write_nnunet_folder(tmp_path / "Dataset503_Kidney", n=3, channels=1, test=2, unlabelled_test=1)
    ds = open_seg_dataset(written.root)
    assert len(ds.case_ids) == 3 and ds.test_ids == ("kid_003", "kid_004")
    refs = ds.refs()
    assert [r.meta.get("split_part") for r in refs] == ["trainval"] * 3 + ["test"] * 2
    np.testing.assert_array_equal(refs[-1].load().masks["label"], written.labels["kid_004"])


def test_patient_regex_groups_cases_and_a_bad_one_says_why(tmp_path):
    written = write_nnunet_folder(tmp_path / "Dataset503_Kidney", n=3, channels=1, mac_files=False)
    ds = open_seg_dataset(written.root, patient_regex=r"^(kid)_")
    assert {r.patient_id for r in ds.refs()} == {"kid"} and ds.load("kid_001").patient_id == "kid"
    with pytest.raises(DataError, match="exactly one group"):
        open_seg_dataset(written.root, patient_regex=r"kid_\d+")
    with pytest.raises(DataError, match="must match every case id, but it does not match 'kid_000'"):
        open_seg_dataset(written.root, patient_regex=r"^(P\d+)")


def test_a_folder_without_dataset_json_or_of_an_unknown_kind_is_one_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="must contain dataset.json"):
        open_seg_dataset(tmp_path / "empty")
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "dataset.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(DataError, match="nnU-Net v2's .* or the Decathlon's"):
        open_seg_dataset(tmp_path / "odd")


@pytest.mark.parametrize("dims", [3, 2])
def test_organ_phantom_lesions_lie_inside_the_organ_and_some_cases_have_none(dims):
    spec = OrganPhantomSpec(n_patients=8, dims=dims, shape=(12, 24, 24) if dims == 3 else (48, 48))
    cases = list(generate_organ(spec))
    assert [c.image.shape for c in cases] == [(1, *spec.grid)] * 8
    with_lesion = [bool((c.masks["label"] == 2).any()) for c in cases]
    assert 0 < with_lesion.count(False) <= 3 and with_lesion.count(True) >= 5
    again = next(generate_organ(spec))
    np.testing.assert_array_equal(again.image, cases[0].image)  # deterministic from the seed
    for case in cases:
        assert set(np.unique(case.masks["label"]).tolist()) <= set(ORGAN_LABELS.values())
        assert 0.0 <= case.image.min() and case.image.max() <= 255.0
    other = next(generate_organ(OrganPhantomSpec(n_patients=1, dims=dims, shape=spec.grid, seed=1)))
    assert not np.array_equal(other.image, cases[0].image)
    with pytest.raises(ConfigError, match="dims 2 or 3"):
        OrganPhantomSpec(dims=4)


def test_organ_phantom_channels_show_lesions_with_opposite_contrast():
    case = next(generate_organ(OrganPhantomSpec(n_patients=1, channels=2)))
    label = case.masks["label"]
    t1, t2 = case.image
    assert t1[label == 2].mean() < t1[label == 1].mean() and t2[label == 2].mean() > t2[label == 1].mean()


@pytest.mark.parametrize("layout", ["nnunet", "nnunet-png", "msd"])
def test_writers_round_trip_the_phantom(layout, tmp_path):
    dims, channels = (2, 2) if layout == "nnunet-png" else (3, 2)
    spec = OrganPhantomSpec(n_patients=3, dims=dims, channels=channels,
                            shape=(8, 16, 16) if dims == 3 else (32, 32))
    out = tmp_path / "out"
    if layout == "msd":
        write_msd(generate_organ(spec), out, spec.channel_names, ORGAN_LABELS)
    else:
        write_nnunet(generate_organ(spec), out, spec.channel_names, ORGAN_LABELS,
                     ".png" if dims == 2 else ".nii.gz")
    ds = open_seg_dataset(out)
    assert ds.layout == layout.split("-")[0] and ds.dims == dims and ds.labels == ORGAN_LABELS
    assert ds.channels == spec.channel_names and ds.num_training == 3
    for original in generate_organ(spec):
        back = ds.load(original.id)
        np.testing.assert_array_equal(back.masks["label"], original.masks["label"])
        np.testing.assert_allclose(back.image, np.round(original.image) if dims == 2 else original.image, atol=1e-4)
        assert back.spacing == (None if dims == 2 else pytest.approx(spec.spacing))
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left beside it


def test_a_writer_that_fails_leaves_nothing_behind(tmp_path):
    spec = OrganPhantomSpec(n_patients=2, shape=(8, 16, 16))
    cases = list(generate_organ(spec))
    cases[1].masks["label"][0, 0, 0] = 7  # a value the labels do not name
    with pytest.raises(DataError, match="label values must be among the labels"):
        write_nnunet(iter(cases), tmp_path / "out", spec.channel_names, ORGAN_LABELS)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="must have 1 channel"):
        write_msd(generate_organ(OrganPhantomSpec(n_patients=1, shape=(8, 16, 16), channels=2)), tmp_path / "m",
                  ("T1",), ORGAN_LABELS)
