"""Contract test over every registered data format, like the loss and model ones: a format is tested the
moment it is registered.

For each format: write a tiny data set in it (its own ``write`` on the phantom of the task its tags name,
or, for read-only formats, the shared fixture in tests/conftest.py that writes that layout), read it back
and check the cases; then truncate its image files and check that reading stops with one BenchError that
names a broken file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.data.formats import FORMATS, resolve_format
from bench.data.labels import CARDIOMEGALY_CLASSES
from bench.data.phantoms.ct import CtPhantomSpec
from bench.data.phantoms.ct import generate as generate_ct
from bench.data.phantoms.xray import CLASSES as XRAY_CLASSES
from bench.errors import BenchError, RegistryError

CT_CLASSES = ("normal", "nodule", "GGO")
# segmentation's cases carry label maps, no class: () means "no class to check"
CLASSES = {"xray-heart": XRAY_CLASSES, "ct-lung": CT_CLASSES, "segmentation": ()}
TINY_CASES = {"xray-heart": "tiny_cases", "ct-lung": "tiny_ct", "segmentation": "tiny_organ"}

# Formats without a writer, read from the shared fixture that writes their layout:
# name -> (fixture, reader parameters, classes, cases the fixture holds).
FIXTURE_FOLDERS = {
    "jsrt": ("jsrt_folder", {"size": 64}, XRAY_CLASSES, 2),
    "chestxray14": ("cxr14_folder", {}, CARDIOMEGALY_CLASSES, 4),
    "chexmask": ("chexmask_folder", {}, CARDIOMEGALY_CLASSES, 2),  # one of three rows fails the quality bar
    "chexpert": ("chexpert_root", {}, CARDIOMEGALY_CLASSES, 8),  # 7 frontal train rows, 1 uncertain; 2 valid
}


@pytest.fixture
def chexpert_root(tmp_path):
    from tests.data.conftest import write_chexpert

    return write_chexpert(tmp_path / "CheXpert-v1.0-small").root
# What a layout cannot carry, so the round trip checks it differently (see the LUNA16 module docstring).
RENAMES_CASES = {"luna16": "LUNA16 names each scan by a series UID and has no patient ids"}
CLASS_FROM_LESIONS = {"luna16": "LUNA16 knows only annotated nodules: class is nodule iff a lesion is present"}
MASKS_REDRAWN = {"luna16": "LUNA16 stores nodules as centre + diameter; masks are redrawn as spheres"}
# Readers that do not yet turn this bad input into a BenchError (strict: a fix makes the test fail until removed).
KNOWN_BAD_INPUT_BUGS: dict[str, str] = {}  # format -> the bug, while a reader still fails this contract


@pytest.fixture(scope="module")
def tiny_ct():
    return generate_ct(CtPhantomSpec(n_patients=2, shape=(8, 24, 24), seed=5))


@pytest.fixture(scope="module")
def tiny_organ():
    from bench.data.phantoms.organ import OrganPhantomSpec, generate_organ

    return list(generate_organ(OrganPhantomSpec(n_patients=2, shape=(8, 16, 16), channels=2, seed=5)))


def formats_of(task: str) -> list[str]:
    from bench.tasks import TASKS

    return sorted(TASKS.get(task).formats)


def _task(name: str) -> str | None:
    tasks = [t for t in CLASSES if name in formats_of(t)]
    return tasks[0] if tasks else None


def _source(name: str, request, tmp_path: Path):
    """(folder, reader parameters, classes, written cases or None, expected count) for format ``name``."""
    if hasattr(FORMATS.get(name), "write") and _task(name):
        task = _task(name)
        cases = request.getfixturevalue(TINY_CASES[task])
        folder = FORMATS.create(name).write(cases, tmp_path / name)
        return folder, {}, CLASSES[task], cases, len(cases)
    if name in FIXTURE_FOLDERS:
        fixture, params, classes, count = FIXTURE_FOLDERS[name]
        return request.getfixturevalue(fixture), params, classes, None, count
    pytest.skip(f"format '{name}' has no writer and no fixture in FIXTURE_FOLDERS writes its layout")


def test_every_format_serves_a_task_or_says_why_not():
    from bench.tasks import TASKS

    served = {fmt for task in TASKS.names() for fmt in TASKS.get(task).formats}
    for entry in FORMATS.entries():
        assert entry.description, entry.name
        assert "tasks" not in entry.tags, f"{entry.name}: a task lists its formats in its spec, not the reverse"
        assert (entry.name in served) != bool(entry.tags.get("why_not")), entry.name
    assert set(served) <= set(FORMATS.names())  # a task lists only registered formats
    assert formats_of("xray-heart") == ["chexmask", "dicom", "jsrt", "png"]
    assert formats_of("ct-lung") == ["ct_dicom", "luna16", "msd", "nifti"]


def test_aliases_point_at_formats_of_their_task_and_unknown_names_fail_once():
    from bench.tasks import TASKS

    for spec in (entry.obj for entry in TASKS.entries()):
        for alias, target in spec.format_aliases.items():
            assert target in spec.formats, (spec.name, alias)
            assert spec.resolve_format(alias) == target
    ct, xray = TASKS.get("ct-lung"), TASKS.get("xray-heart")
    assert ct.resolve_format("nifti") == "nifti" and ct.resolve_format("msd") == "msd"  # one name per layout
    assert xray.resolve_format("dicom") == "dicom" and ct.resolve_format("dicom") == "ct_dicom"
    with pytest.raises(RegistryError, match=r"'dicom' reads data for xray-heart"):
        resolve_format("ct-lung", ct.formats, "dicom", readers={"dicom": ["xray-heart"]})  # aliases: the spec's
    with pytest.raises(RegistryError, match=r"--format for ct-lung must be one of .*dicom \(= ct_dicom\).*but got "
                                            r"'jsrt' \('jsrt' reads data for xray-heart\)"):
        ct.resolve_format("jsrt")
    with pytest.raises(RegistryError, match="but got 'pgn'. Did you mean 'png'"):
        xray.resolve_format("pgn")


@pytest.mark.parametrize("name", FORMATS.names())
def test_format_round_trip(name, request, tmp_path):
    folder, params, classes, written, count = _source(name, request, tmp_path)
    back = FORMATS.create(name, **params).read(folder, classes)
    assert len(back) == count
    ids = [c.id for c in back]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    for case in back:
        assert not classes or case.labels["class"] in classes
        for mask_name, mask in case.masks.items():
            # a multi-channel image has its channels first: the mask matches the spatial axes
            assert mask.shape == case.image.shape[case.image.ndim - mask.ndim:], (case.id, mask_name)
    if written is None:
        return
    if name not in RENAMES_CASES:
        by_id = {c.id: c for c in back}
        assert sorted(by_id) == sorted(c.id for c in written)
        assert len({c.patient_id for c in back}) == len({c.patient_id for c in written})
        pairs = [(c, by_id[c.id]) for c in written]
    else:  # the writer keeps the order of the cases it was given, per subset; match by content instead
        pairs = [(c, min(back, key=lambda b, c=c: float(np.abs(b.image.astype(float) - c.image).mean())))
                 for c in written]
    for original, read in pairs:
        assert read.image.shape == original.image.shape
        assert set(read.masks) == set(original.masks)
        if name in CLASS_FROM_LESIONS:
            assert read.labels["class"] == ("nodule" if original.masks["lesion"].any() else "normal")
        else:
            assert read.labels.get("class") == original.labels.get("class")
        if name not in MASKS_REDRAWN:
            for mask_name, mask in original.masks.items():
                np.testing.assert_array_equal(read.masks[mask_name] > 0, mask > 0, err_msg=mask_name)


def _kind(path: Path) -> str:
    return path.name.rsplit(".", 1)[-1] if "." in path.name else ""


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(strict=True, raises=TypeError, reason=KNOWN_BAD_INPUT_BUGS[n]))
    if n in KNOWN_BAD_INPUT_BUGS else n for n in FORMATS.names()])
def test_truncated_image_files_raise_one_error_naming_a_file(name, request, tmp_path):
    folder, params, classes, _, _ = _source(name, request, tmp_path)
    broken = shutil.copytree(folder, tmp_path / f"{name}-broken")
    files = [p for p in broken.rglob("*") if p.is_file()]
    largest = max(files, key=lambda p: p.stat().st_size)  # images (or their raw data); CheXmask: its RLE table
    victims = [p for p in files if _kind(p) == _kind(largest)]
    for victim in victims:
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(BenchError) as error:
        FORMATS.create(name, **params).read(broken, classes)
    # the file itself, or its header beside it (a LUNA16 .raw is read through its .mhd)
    assert any(v.name.rsplit(".", 1)[0] in str(error.value) for v in victims), str(error.value)


@pytest.mark.parametrize("name", sorted({n for task in CLASSES for n in formats_of(task)}))
def test_every_format_of_a_task_recognises_its_own_folder_and_only_it(name, request, tmp_path):
    """`--format` may be left out: the folder a format writes (or its fixture) is recognised as that format by
    exactly it among the task's formats, so detection is never a guess."""
    from bench.data.formats import detect_format

    folder, *_ = _source(name, request, tmp_path)
    task = _task(name)
    assert hasattr(FORMATS.get(name), "recognise"), f"format '{name}' of {task} cannot be recognised"
    assert detect_format(task, formats_of(task), folder) == name
