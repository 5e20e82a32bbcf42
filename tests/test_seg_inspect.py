"""`inspect_seg`: what a segmentation folder holds, containment between labels, and each problem as one line
naming its file (a DataError, which the CLI prints as one line with exit 2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.data.phantoms.organ import ORGAN_LABELS, OrganPhantomSpec, generate_organ
from bench.data.seg_dataset import open_seg_dataset, write_nnunet
from bench.data.seg_inspect import containment, filled_region, inspect_seg
from bench.errors import DataError
from tests.seg_files import SHAPE, nifti, write_msd_folder, write_nnunet_folder, write_png_folder


@pytest.fixture
def kidney(tmp_path):
    return write_nnunet_folder(tmp_path / "Dataset503_Kidney", n=3, channels=2).root


def _one_problem(root, *needles):
    with pytest.raises(DataError) as error:
        inspect_seg(root)
    message = str(error.value)
    assert len(message.splitlines()) == 1, message
    for needle in needles:
        assert needle in message, message
    assert inspect_seg(root, strict=False)["problems"] == [message]
    return message


def test_report_of_a_clean_multichannel_folder(kidney):
    report = inspect_seg(kidney)
    assert report["problems"] == [] and report["layout"] == "nnunet" and report["dims"] == 3
    assert report["channels"] == ["CT", "PET"] and report["cases"] == 3 and report["patients"] == 3
    assert report["shape"] == {a: {"min": n, "max": n} for a, n in zip("zyx", SHAPE)}
    assert report["spacing_mm"]["z"] == {"min": 2.5, "max": 2.5}
    ds = open_seg_dataset(kidney)
    total = {name: sum(int((ds.load(c).masks["label"] == v).sum()) for c in ds.case_ids)
             for name, v in ds.labels.items()}
    assert report["label_voxels"] == total and report["cases_with_label"]["tumour"] == 3
    assert report["containment"]["tumour in kidney"] == 1.0  # the tumour replaces kidney voxels: still inside
    assert report["containment"]["kidney in tumour"] < 0.2
    assert report["enclosed"] == [{"inner": "tumour", "outer": "kidney", "share": 1.0}]
    assert json.dumps(report)  # JSON-able as the CLI prints it


def test_report_of_msd_and_2d_folders(tmp_path):
    msd = inspect_seg(write_msd_folder(tmp_path / "Task05_Prostate").root)
    assert msd["layout"] == "msd" and msd["channels"] == ["T2", "ADC"] and msd["cases"] == 3
    png = inspect_seg(write_png_folder(tmp_path / "Dataset120_Roads").root)
    assert png["dims"] == 2 and png["spacing_mm"] == "unknown" and set(png["shape"]) == {"y", "x"}


def test_containment_of_the_organ_phantom_lesions_is_complete(tmp_path):
    spec = OrganPhantomSpec(n_patients=4, shape=(12, 24, 24))
    root = write_nnunet(generate_organ(spec), tmp_path / "Dataset501_Organ", spec.channel_names, ORGAN_LABELS)
    ds = open_seg_dataset(root)
    assert containment(ds, 2, 1) == 1.0 and containment(ds, 1, 2) < 0.5
    assert inspect_seg(root)["enclosed"] == [{"inner": "lesion", "outer": "organ", "share": 1.0}]


def test_containment_counts_what_lies_outside():
    label = np.zeros((5, 9, 9), np.uint8)
    label[1:4, 1:8, 1:8] = 1
    label[2, 4, 4] = 2  # a hole in the organ, filled by a lesion: inside
    label[2, 0, 0] = 2  # outside the organ
    region = filled_region(label == 1)
    assert region[2, 4, 4] and not region[2, 0, 0]


def test_missing_label_file_is_one_line_naming_it(kidney):
    (kidney / "labelsTr" / "kid_001.nii.gz").unlink()
    _one_problem(kidney, "labelsTr/kid_001.nii.gz", "must have its label file")


def test_missing_channel_file_is_one_line_naming_it(kidney):
    (kidney / "imagesTr" / "kid_002_0001.nii.gz").unlink()
    _one_problem(kidney, "imagesTr/kid_002_0001.nii.gz", "channel 1 (PET)", "missing")


def test_a_channel_of_another_shape_is_one_line_naming_it(kidney):
    nifti(kidney / "imagesTr" / "kid_001_0001.nii.gz", np.zeros((4, 6, 7), np.float32))
    _one_problem(kidney, "imagesTr/kid_001_0001.nii.gz", "shape of channel 0 (4, 6, 8)", "(4, 6, 7)")


def test_a_label_of_another_shape_is_one_line_naming_it(kidney):
    nifti(kidney / "labelsTr" / "kid_000.nii.gz", np.zeros((3, 6, 8), np.uint8))
    _one_problem(kidney, "labelsTr/kid_000.nii.gz", "must match its image", "(3, 6, 8)")


def test_a_label_value_dataset_json_does_not_name_is_one_line(kidney):
    nifti(kidney / "labelsTr" / "kid_000.nii.gz", np.full(SHAPE, 3, np.uint8))
    _one_problem(kidney, "labelsTr/kid_000.nii.gz", "must be among dataset.json's labels [0, 1, 2], but got [3]")


def test_num_training_disagreeing_with_the_files_is_one_line_naming_dataset_json(kidney):
    meta = json.loads((kidney / "dataset.json").read_text())
    (kidney / "dataset.json").write_text(json.dumps({**meta, "numTraining": 5}))
    _one_problem(kidney, "dataset.json", "'numTraining' must equal", "(3), but it says 5")


def test_region_based_labels_without_their_class_order_are_one_line_naming_dataset_json(tmp_path):
    root = write_nnunet_folder(tmp_path / "Dataset137_BraTS", n=2, channels=1,
                               labels={"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                                       "enhancing tumor": 3}).root
    _one_problem(root, "dataset.json", "region-based", "regions_class_order")


def test_msd_missing_label_file_is_one_line_naming_it(tmp_path):
    root = write_msd_folder(tmp_path / "Task05_Prostate", mac_files=False).root
    (root / "labelsTr" / "prostate_01.nii.gz").unlink()
    _one_problem(root, "labelsTr/prostate_01.nii.gz", "must have its label file")


def test_several_problems_are_one_line_each(kidney):
    (kidney / "labelsTr" / "kid_001.nii.gz").unlink()
    nifti(kidney / "imagesTr" / "kid_002_0001.nii.gz", np.zeros((4, 6, 7), np.float32))
    with pytest.raises(DataError) as error:
        inspect_seg(kidney)
    lines = str(error.value).splitlines()
    assert len(lines) == 2 and "kid_001.nii.gz" in lines[0] and "kid_002_0001.nii.gz" in lines[1]


def test_a_corrupt_splits_final_is_a_problem(kidney):
    (kidney / "splits_final.json").write_text(json.dumps([{"train": ["kid_000", "nobody"], "val": ["kid_001"]}]))
    _one_problem(kidney, "splits_final.json", "must be a labelled training case", "nobody")
