"""nnU-Net's splits_final.json: read as the folds (one for one), written in nnU-Net's format (round trip), and
the patient-grouped split of a folder without it (patients from --patient-regex), through the CLI too."""

from __future__ import annotations

import json

import pytest

from bench.data.case import Case
from bench.data.phantoms.organ import ORGAN_LABELS, OrganPhantomSpec, generate_organ
from bench.data.seg_dataset import open_seg_dataset, read_splits_final, write_nnunet, write_splits_final
from bench.data.seg_splits import nnunet_folds, split_from_splits_final
from bench.data.sources import write_split
from bench.data.splits import make_split
from bench.errors import SplitError
from tests.seg_files import write_nnunet_folder

# nnU-Net's own file for 6 cases in 3 folds (nnUNetTrainer.do_split writes this shape, indent 4)
NNUNET_SPLITS = [
    {"train": ["kid_002", "kid_003", "kid_004", "kid_005"], "val": ["kid_000", "kid_001"]},
    {"train": ["kid_000", "kid_001", "kid_004", "kid_005"], "val": ["kid_002", "kid_003"]},
    {"train": ["kid_000", "kid_001", "kid_002", "kid_003"], "val": ["kid_004", "kid_005"]},
]


@pytest.fixture
def kidney(tmp_path):
    return write_nnunet_folder(tmp_path / "Dataset503_Kidney", n=6, channels=1, mac_files=False).root


def _folds(split):
    return [{"train": list(f["train"]), "val": list(f["val"])} for f in split.folds]


def test_splits_final_json_folds_are_the_folds(kidney):
    (kidney / "splits_final.json").write_text(json.dumps(NNUNET_SPLITS, indent=4))
    assert read_splits_final(kidney) == NNUNET_SPLITS
    ds = open_seg_dataset(kidney)
    split = split_from_splits_final(ds, "segmentation", "kidney")
    assert _folds(split) == NNUNET_SPLITS and split.test == ()
    refs_split = make_split(ds.refs(), "segmentation", "kidney")  # what resolve_split does: the same folds
    assert _folds(refs_split) == NNUNET_SPLITS
    folder_split, _ = write_split(str(kidney), "segmentation", "nnunet", out=kidney.parent / "s.json")
    assert _folds(folder_split) == NNUNET_SPLITS  # and `bench datasets split` through the format reader


def test_training_cases_outside_splits_final_are_the_test_part(kidney):
    folds = [{"train": ["kid_002", "kid_003"], "val": ["kid_000", "kid_001"]},
             {"train": ["kid_000", "kid_001"], "val": ["kid_002", "kid_003"]}]
    write_splits_final(folds, kidney)
    split = split_from_splits_final(open_seg_dataset(kidney), "segmentation", "kidney")
    assert _folds(split) == folds and split.test == ("kid_004", "kid_005")


def test_written_splits_final_is_nnunets_format_and_reads_back(tmp_path):
    path = write_splits_final(NNUNET_SPLITS, tmp_path / "splits_final.json")
    data = json.loads(path.read_text())
    assert isinstance(data, list) and all(set(f) == {"train", "val"} for f in data) and data == NNUNET_SPLITS
    assert read_splits_final(path) == NNUNET_SPLITS and read_splits_final(tmp_path / "nowhere") is None


@pytest.mark.parametrize("bad, message", [
    ({"train": []}, "must be a list of folds"),
    ([{"train": ["kid_000"]}], "fold 0 is not"),
])
def test_a_malformed_splits_final_is_one_error(kidney, bad, message):
    (kidney / "splits_final.json").write_text(json.dumps(bad))
    with pytest.raises(SplitError, match=message):
        read_splits_final(kidney)


def test_splits_final_that_is_no_partition_or_names_unknown_cases_is_refused(kidney):
    twice = [{"train": ["kid_002"], "val": ["kid_000", "kid_001"]}, {"train": ["kid_002"], "val": ["kid_001"]}]
    write_splits_final(twice, kidney)
    with pytest.raises(SplitError, match="'kid_001' is in folds 0 and 1"):
        open_seg_dataset(kidney).refs()
    write_splits_final([{"train": ["kid_000"], "val": ["kid_099"]}], kidney)
    with pytest.raises(SplitError, match=r"must be a labelled training case.*kid_099"):
        open_seg_dataset(kidney).refs()


def _follow_ups(tmp_path, patients=12):
    """An nnU-Net folder whose case ids P00-0, P00-1, ... name two scans per patient."""
    spec = OrganPhantomSpec(n_patients=2 * patients, shape=(6, 12, 12))
    cases = (Case(id=f"P{i // 2:02d}-{i % 2}", patient_id="", image=c.image, spacing=c.spacing, masks=c.masks,
                  meta=c.meta) for i, c in enumerate(generate_organ(spec)))
    return write_nnunet(cases, tmp_path / "Dataset504_FollowUp", spec.channel_names, ORGAN_LABELS)


def test_without_splits_final_the_split_is_grouped_by_the_patient_regex(tmp_path):
    root = _follow_ups(tmp_path)
    split, _ = write_split(str(root), "segmentation", "nnunet", out=tmp_path / "s.json", patient_regex=r"^(P\d+)-")
    patient = {c: c.split("-")[0] for c in open_seg_dataset(root).case_ids}
    parts = [set(split.test)] + [set(f["val"]) for f in split.folds]
    for a in parts:  # both scans of a patient sit in the same part
        assert {patient[c] for c in a}.isdisjoint({patient[c] for b in parts if b is not a for c in b})
    assert split.test and len(split.folds) == 5


def test_an_exported_split_read_back_is_the_same_split(tmp_path):
    root = _follow_ups(tmp_path)
    ds = open_seg_dataset(root, patient_regex=r"^(P\d+)-")
    split = make_split(ds.refs(), "segmentation", "followup")
    write_splits_final(nnunet_folds(split), root)
    again = split_from_splits_final(open_seg_dataset(root, patient_regex=r"^(P\d+)-"), "segmentation", "followup")
    assert again.folds == split.folds and again.test == split.test


def test_cli_split_exports_nnunet_folds_and_refuses_a_patient_regex_where_no_reader_takes_it(tmp_path, capsys):
    from bench.cli import main

    out, exported = tmp_path / "split.json", tmp_path / "nnunet"
    exported.mkdir()
    assert main(["datasets", "split", "phantom", "--task", "xray-heart", "--out", str(out),
                 "--export-nnunet", str(exported)]) == 0
    ours = json.loads(out.read_text())
    assert read_splits_final(exported) == [{"train": sorted(f["train"]), "val": sorted(f["val"])}
                                           for f in ours["folds"]]
    assert main(["datasets", "split", "phantom", "--task", "xray-heart", "--patient-regex", "(x)"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--grouping-regex applies to the data formats" in err[0] and "nnunet" in err[0]


def test_cli_split_with_patient_regex_on_a_segmentation_folder(tmp_path):
    from bench.cli import main

    root = _follow_ups(tmp_path)
    out = tmp_path / "split.json"
    assert main(["datasets", "split", str(root), "--task", "segmentation", "--patient-regex", r"^(P\d+)-",
                 "--out", str(out), "--export-nnunet", str(root)]) == 0
    written = json.loads(out.read_text())
    assert read_splits_final(root) == [{"train": sorted(f["train"]), "val": sorted(f["val"])}
                                       for f in written["folds"]]
    for fold in written["folds"]:
        assert {c.split("-")[0] for c in fold["train"]}.isdisjoint({c.split("-")[0] for c in fold["val"]})
