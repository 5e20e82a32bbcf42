import json

import pytest

from bench.data.cache import cache_root
from bench.data.inspect import inspect
from bench.data.sources import write_split


def test_phantom_summary_is_json_and_has_no_patient_ids():
    report = inspect("phantom", "xray-heart")
    text = json.dumps(report)
    assert report["problems"] == [] and report["cases"] > 100 and report["patients"] >= 100
    assert set(report["sites"]) == {"site-A", "site-B", "site-C", "site-D"}
    assert report["masks"]["heart"] == report["cases"]
    assert report["split"]["valid"] and report["split"]["parts"]["test_shifted"]["cases"] > 0
    assert "P0001" not in text and "S0001" not in text


def test_dicom_folder_with_split_and_no_phi(dicom_folder):
    import pydicom

    split, path = write_split(str(dicom_folder), "xray-heart", "dicom", n_folds=2)
    assert path.is_relative_to(cache_root().parent) and split.part("test_shifted")
    report = inspect(dicom_folder, "xray-heart", "dicom")
    text = json.dumps(report)
    assert report["problems"] == [] and report["split"]["sha256"] == split.sha256
    assert report["image_sizes"] == {"64x64": report["cases"]}
    for f in (dicom_folder / "images").glob("*.dcm"):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert str(ds.PatientName) not in text and ds.PatientID not in text


@pytest.mark.parametrize("damage, problem", [
    (lambda d: (d / "labels.csv").write_text("file,label\nimages/none.dcm,normal\n"), "readable DICOM"),
    (lambda d: [p.unlink() for p in d.rglob("*") if p.is_file()], "labels file"),
])
def test_problems_reported_not_raised(dicom_folder, damage, problem):
    damage(dicom_folder)
    report = inspect(dicom_folder, "xray-heart", "dicom")
    assert report["cases"] == 0 and problem in report["problems"][0]


def test_empty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    assert "is empty" in inspect(tmp_path / "d", "xray-heart", "png")["problems"][0]


def test_inspect_scans_the_cases_and_decodes_one_image_at_a_time(cxr14_chexmask, monkeypatch):
    """Counts, labels and patients come from the reader's scan; images are decoded one by one (an archive
    never has to fit in memory), all of them or an even sample."""
    from bench.data import inspect as inspect_module
    from bench.data.stream import scan_cases
    from tests.data.conftest import LiveCases

    live = LiveCases()
    seen = live.seen

    def counting_scan(path, task, classes, fmt, reader_options, formats=()):
        return fmt, [live.wrap(r) for r in scan_cases(str(path), fmt, classes, **reader_options)]

    root = cxr14_chexmask.root
    full = inspect(root, "xray-heart", "chexmask")
    n = full["cases"]
    assert full["problems"] == [] and full["images_decoded"] == n and sum(full["image_sizes"].values()) == n
    sampled = inspect(root, "xray-heart", "chexmask", sample=3)
    assert sampled["images_decoded"] == 3 and sum(sampled["image_sizes"].values()) == 3
    assert {k: sampled[k] for k in ("cases", "patients", "classes", "sites")} == \
        {k: full[k] for k in ("cases", "patients", "classes", "sites")}
    monkeypatch.setattr(inspect_module, "_scan", counting_scan)  # the real scan, its loads counted
    inspect(root, "xray-heart", "chexmask")
    assert len(seen) == n and max(seen) == 0  # the previous case is gone before the next is read


def test_a_folder_without_format_is_read_as_the_format_that_recognises_it(tmp_path, capsys):
    """The NIH box layout with its CheXmask table is chexmask; a folder no format recognises is one problem
    naming the formats to choose from; `bench datasets split` leaves --format out the same way."""
    from bench.cli import main
    from bench.tasks import TASKS
    from tests.data.conftest import write_cxr14

    formats = TASKS.get("xray-heart").formats  # the task's formats, those detection chooses from
    root = write_cxr14(tmp_path / "nih", nih_box=True).root
    report = inspect(root, "xray-heart", formats=formats)
    assert report["format"] == "chexmask" and report["problems"] == [] and report["masks"]["heart"] == report["cases"]
    assert main(["datasets", "split", str(root), "--task", "xray-heart", "--folds", "2"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert inspect(root, "xray-heart", formats=formats)["split"]["valid"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    report = inspect(tmp_path / "other", "xray-heart", formats=formats)
    assert report["format"] is None and report["cases"] == 0
    assert "Give --format, one of chexmask, dicom, jsrt, png" in report["problems"][0]
