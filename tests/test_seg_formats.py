"""The segmentation formats in the FORMATS registry (recognised, reachable as --format nnunet|msd) and the
ct-lung phantom exported as an nnU-Net folder for --task segmentation with ct-lung's own folds."""

from __future__ import annotations

import pytest

from bench.data.formats import FORMATS, detect_format
from bench.data.seg_dataset import open_seg_dataset
from bench.data.seg_splits import read_splits_final
from bench.data.splits import make_split
from bench.errors import DataError, RegistryError
from tests.seg_files import write_msd_folder, write_nnunet_folder, write_png_folder


def test_both_layouts_are_recognised_for_segmentation_without_format(tmp_path):
    nnunet = write_nnunet_folder(tmp_path / "Dataset503_Kidney").root
    png = write_png_folder(tmp_path / "Dataset120_Roads").root
    msd = write_msd_folder(tmp_path / "Task05_Prostate").root
    from bench.tasks import TASKS

    formats = TASKS.get("segmentation").formats
    assert sorted(formats) == ["msd_seg", "nnunet"]
    assert detect_format("segmentation", formats, nnunet) == "nnunet"
    assert detect_format("segmentation", formats, png) == "nnunet"
    assert detect_format("segmentation", formats, msd) == "msd_seg"
    assert detect_format("segmentation", formats, tmp_path / "Task05_Prostate") == "msd_seg"
    with pytest.raises(RegistryError, match="none of them recognises it"):
        detect_format("segmentation", formats, tmp_path)  # two data sets side by side: name one


def test_format_msd_means_the_generic_reader_on_segmentation_and_task06_on_ct_lung():
    from bench.tasks import TASKS

    seg, ct = TASKS.get("segmentation"), TASKS.get("ct-lung")
    assert seg.resolve_format("msd") == "msd_seg"  # the task's format_aliases
    assert ct.resolve_format("msd") == "msd" and seg.resolve_format("nnunet") == "nnunet"
    with pytest.raises(RegistryError, match=r"for segmentation must be one of .*msd \(= msd_seg\), but got 'jsrt'"):
        seg.resolve_format("jsrt")


def test_format_readers_scan_refs_with_patients_from_the_regex(tmp_path):
    root = write_nnunet_folder(tmp_path / "Dataset503_Kidney", n=3, channels=1).root
    refs = FORMATS.create("nnunet", patient_regex=r"^(\w+?)_").scan(root)
    assert [r.id for r in refs] == ["kid_000", "kid_001", "kid_002"] and {r.patient_id for r in refs} == {"kid"}
    assert refs[0].load().masks["label"].shape == refs[0].load().image.shape[1:]
    with pytest.raises(DataError, match="Use --format nnunet"):
        FORMATS.create("msd_seg").scan(root)


def test_ct_lung_phantom_exports_as_nnunet_with_lesions_inside_the_lung_and_ct_lungs_folds(tmp_path):
    from bench.data.phantoms.ct import CtPhantomSpec, generate
    from bench.data.seg_splits import nnunet_folds
    from bench.data.splits import load_split, standard_split_path
    from bench.tasks.ct_lung.data import export_nnunet

    # the standard phantom's cases (ids do not depend on the volume shape), drawn small to stay fast
    out = export_nnunet(generate(CtPhantomSpec(shape=(8, 16, 16))), tmp_path / "Dataset600_Lung")
    ds = open_seg_dataset(out, patient_regex=r"^(P\d+)-")
    assert ds.channels == ("CT",) and ds.labels == {"background": 0, "lung": 1, "lesion": 2}
    lesion_voxels = 0
    for case_id in ds.case_ids[:6]:
        label = ds.load(case_id).masks["label"]
        assert (label == 1).any()
        lesion_voxels += int((label == 2).sum())
    assert lesion_voxels > 0
    folds = read_splits_final(out)
    standard = load_split(standard_split_path("ct-lung", "phantom"))
    assert folds == nnunet_folds(standard)  # the same folds as --task ct-lung on its phantom
    split = make_split(ds.refs(), "segmentation", "x", n_folds=len(folds))
    assert [{"train": list(f["train"]), "val": list(f["val"])} for f in split.folds] == folds
    assert split.test == standard.test  # the cases outside the folds are the test part


def test_make_phantom_writes_nnunet_for_ct_lung_and_a_small_export_goes_without_folds(tmp_path):
    from bench.tasks.ct_lung.data import make_phantom

    out = make_phantom(tmp_path / "Dataset600_Lung", "nnunet", cases=3)
    assert read_splits_final(out) is None and len(open_seg_dataset(out).case_ids) == 3
