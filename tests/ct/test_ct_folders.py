"""ct-lung data folders as a new user meets them (issue 20 §6, §7): the format recognised when --format is left
out, MSD label names read from dataset.json, and inspect reading one volume at a time."""

from __future__ import annotations

import gc
import importlib
import json
import shutil
import weakref

import numpy as np
import pytest

from bench.cli import main
from bench.data.case import Case
from bench.data.ct_io import read_nifti, write_nifti
from bench.data.formats import FORMATS
from bench.errors import DataError, RegistryError
from bench.tasks.ct_lung.data import inspect as inspect_ct  # the task hook: resolves --format, then reads

CT_FORMATS = ("ct_dicom", "msd", "nifti", "luna16")


@pytest.mark.parametrize("fmt", CT_FORMATS)
def test_inspect_without_format_recognises_the_folder(fmt, ct_folders, tiny_ct, capsys):
    from bench.tasks import TASKS

    assert TASKS.get("ct-lung").resolve_format(None, ct_folders[fmt]) == fmt
    report = inspect_ct(ct_folders[fmt])
    assert report["format"] == fmt and report["cases"] == len(tiny_ct)
    assert main(["datasets", "inspect", str(ct_folders[fmt]), "--task", "ct-lung", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["format"] == fmt


def test_unrecognisable_or_ambiguous_folder_is_one_line_naming_the_formats(ct_folders, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("scans come next week\n")
    assert main(["datasets", "inspect", str(tmp_path), "--task", "ct-lung"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "Give --format, one of" in err and all(n in err for n in ("ct_dicom", "luna16", "msd", "dicom (= ct_dicom)"))
    both = tmp_path / "both"
    shutil.copytree(ct_folders["msd"], both)
    shutil.copytree(ct_folders["luna16"] / "subset0", both / "subset0")
    with pytest.raises(RegistryError, match=r"it fits several \(luna16, msd\)"):
        inspect_ct(both)


def _relabel(src, dst, labels: dict, value_map=None):
    shutil.copytree(src, dst)
    meta = json.loads((dst / "dataset.json").read_text())
    meta["labels"] = labels
    (dst / "dataset.json").write_text(json.dumps(meta))
    if value_map:
        for p in sorted((dst / "labelsTr").glob("*.nii.gz")):
            label, spacing = read_nifti(p)
            write_nifti(p, value_map(label), spacing)
    return dst


def test_msd_labels_that_are_not_lung_lesions_are_one_error_naming_them(ct_folders, tmp_path, capsys):
    kidney = _relabel(ct_folders["msd"], tmp_path / "Task03_Kidney", {"0": "background", "1": "kidney", "2": "tumour"})
    with pytest.raises(DataError, match=r"dataset.json: ct-lung reads lung lesions.*\"1\": \"kidney\", \"2\": \"tumour\""
                                        r".*1: 'kidney' is neither a lung lesion nor the lung"):
        FORMATS.create("msd").read(kidney)
    assert main(["datasets", "inspect", str(kidney), "--task", "ct-lung", "--format", "msd"]) == 2
    err = capsys.readouterr().err
    assert "kidney" in err and "Traceback" not in err and err.count("\n") == 1
    no_labels = _relabel(ct_folders["msd"], tmp_path / "nolabels", {})
    with pytest.raises(DataError, match="must name its label values"):
        inspect_ct(no_labels, "msd")


def test_msd_label_names_choose_lesion_and_lung_values(ct_folders, tiny_ct, tmp_path):
    task06 = FORMATS.create("msd").read(ct_folders["msd"])  # {"0": "background", "1": "cancer"}
    # the lesion as value 2 and the lungs (from lungsTr) as value 1 in one label map, named that way
    def combined(label):
        return label * 2
    named = _relabel(ct_folders["msd"], tmp_path / "named", {"0": "background", "1": "lung", "2": "Lung nodule"},
                     combined)
    for p in sorted((named / "labelsTr").glob("*.nii.gz")):
        label, spacing = read_nifti(p)
        lung, _ = read_nifti(named / "lungsTr" / p.name)
        write_nifti(p, np.where(label > 0, 2, (lung > 0).astype(np.uint8)).astype(np.uint8), spacing)
    shutil.rmtree(named / "lungsTr")
    cases = FORMATS.create("msd").read(named)
    for old, new in zip(task06, cases):
        np.testing.assert_array_equal(new.masks["lesion"], old.masks["lesion"])
        np.testing.assert_array_equal(new.masks["lung"] > 0, (old.masks["lung"] > 0) & (old.masks["lesion"] == 0))
    stray = _relabel(ct_folders["msd"], tmp_path / "stray", {"0": "background", "1": "cancer"}, lambda m: m * 3)
    with pytest.raises(DataError, match=r"labelsTr/lung_\d+.nii.gz: label values must be among dataset.json's "
                                        r"labels \[0, 1\], but got \[3\]"):
        FORMATS.create("msd").read(stray)


@pytest.mark.parametrize("fmt", CT_FORMATS)
def test_inspect_holds_one_volume_at_a_time(fmt, ct_folders, tiny_ct, monkeypatch):
    """Each new Case first records how many cases read before it are still alive: 0 means streaming."""
    module = importlib.import_module(f"bench.data.formats.{fmt}")
    alive: list[weakref.ref] = []
    seen: list[int] = []

    class Counted(Case):
        def __init__(self, *args, **kwargs):
            gc.collect()
            seen.append(sum(r() is not None for r in alive))
            super().__init__(*args, **kwargs)
            alive.append(weakref.ref(self))

    monkeypatch.setattr(module, "Case", Counted)
    report = inspect_ct(ct_folders[fmt])  # recognised: on ct-lung `--format nifti` names the MSD layout
    assert report["format"] == fmt
    assert report["cases"] == len(seen) == len(tiny_ct) > 2
    assert seen == [0] * len(tiny_ct)


def test_inspect_the_built_in_phantom(capsys):
    """`bench datasets inspect phantom --task ct-lung` (the help offers 'phantom') reports the task's phantom."""
    assert main(["datasets", "inspect", "phantom", "--task", "ct-lung", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "phantom" and report["patients"] == 24 and report["problems"] == []
    assert report["masks"]["lesion"] == report["cases"] and report["cases_with_lesions"] > 0
