"""`bench datasets make-phantom` (issue 32, part 1): every format a task offers writes a folder that `inspect`
reads back; a task offers only what it writes, defaults to its own format, refuses --cases below 1, and a folder
named `phantom` is a folder."""

from __future__ import annotations

import pytest

from bench.cli import main
from bench.tasks import TASKS


def _offered() -> list[tuple[str, str]]:
    return [(spec.name, fmt) for spec in (e.obj for e in TASKS.entries()) for fmt in spec.phantom_formats]


def _reader_task(task: str, fmt: str) -> str:
    """The task that reads ``fmt``: the writing task when it lists it, else the one task that does
    (``nnunet_2d`` is the ``nnunet`` layout in 2D PNG slices, read by the ``nnunet`` reader)."""
    fmt = fmt.removesuffix("_2d")
    if fmt in TASKS.get(task).formats:
        return task
    readers = [e.name for e in TASKS.entries() if fmt in e.obj.formats]
    assert len(readers) == 1, (fmt, readers)
    return readers[0]


def test_every_task_offers_formats_only_registered_readers_take_back():
    for task, fmt in _offered():
        assert _reader_task(task, fmt)  # a format nobody reads is not offered (xray-heart: no luna16, no nifti)
    assert TASKS.get("xray-heart").phantom_formats == ("png", "dicom")


@pytest.mark.parametrize(("task", "fmt"), _offered())
def test_each_offered_format_writes_a_folder_inspect_reads(workdir, capsys, task, fmt):
    cases = "20" if task == "xray-heart" else "2"  # 2D and quick; inspect checks a search could split it
    assert main(["datasets", "make-phantom", "--task", task, "--format", fmt, "--out", "out", "--cases", cases]) == 0
    assert capsys.readouterr().out.strip() == f"wrote the {task} phantom as {fmt} to out"
    assert any((workdir / "out").rglob("*.*"))  # not an empty folder
    code = main(["datasets", "inspect", "out", "--task", _reader_task(task, fmt)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert out.rstrip().endswith("problems: none")


@pytest.mark.parametrize("task", TASKS.names())
def test_a_format_the_task_does_not_write_lists_the_ones_it_does(workdir, capsys, task):
    spec = TASKS.get(task)
    assert main(["datasets", "make-phantom", "--task", task, "--format", "bogus", "--out", "o"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"--format for {task} must be one of {spec.phantom_format_names()}, but got 'bogus'." in err[0]
    assert all(fmt in spec.phantom_format_names() for fmt in spec.phantom_formats)
    assert not (workdir / "o").exists()


def test_mhd_on_xray_heart_suggests_nothing_it_cannot_write(workdir, capsys):
    assert main(["datasets", "make-phantom", "--task", "xray-heart", "--format", "mhd", "--out", "o"]) == 2
    err = capsys.readouterr().err
    assert "msd" not in err and "png (default), dicom" in err


def test_the_default_format_is_the_tasks_own(workdir, capsys):
    assert main(["datasets", "make-phantom", "--task", "segmentation", "--out", "seg", "--cases", "1"]) == 0
    assert "as nnunet" in capsys.readouterr().out
    assert (workdir / "seg" / "dataset.json").is_file()


@pytest.mark.parametrize("cases", ["0", "-2", "two"])
def test_cases_below_one_are_refused(workdir, capsys, cases):
    with pytest.raises(SystemExit) as exc:
        main(["datasets", "make-phantom", "--task", "xray-heart", "--out", "o", "--cases", cases])
    assert exc.value.code == 2
    assert f"--cases: must be a whole number >= 1, but got '{cases}'" in capsys.readouterr().err
    assert not (workdir / "o").exists()


def test_cases_counts_patients_and_the_help_says_what_is_written(workdir, capsys):
    import csv

    with pytest.raises(SystemExit):
        main(["datasets", "make-phantom", "--help"])
    help_ = " ".join(capsys.readouterr().out.split())
    for spec in (e.obj for e in TASKS.entries()):
        assert f"{spec.name}: {spec.phantom_format_names()}" in help_
        assert " ".join(spec.phantom_cases_help.split()) in help_
    assert main(["datasets", "make-phantom", "--task", "xray-heart", "--out", "xr", "--cases", "5"]) == 0
    with (workdir / "xr" / "labels.csv").open() as fh:
        patients = {row["patient_id"] for row in csv.DictReader(fh)}
    assert len(patients) == 5 + 2  # 5 patients plus 30 % as many, rounded up, from the shifted site


def test_a_folder_named_phantom_is_a_folder(workdir, capsys):
    assert main(["datasets", "make-phantom", "--task", "xray-heart", "--out", "phantom", "--cases", "20"]) == 0
    capsys.readouterr()
    assert main(["datasets", "inspect", "phantom", "--task", "xray-heart", "--format", "png"]) == 0
    out = capsys.readouterr().out
    assert "format: png" in out and "format: phantom" not in out
    from bench.cli import build_parser
    from bench.cli.search import settings_from

    settings = settings_from(build_parser().parse_args(["search", "--task", "xray-heart", "--data", "phantom"]))
    assert settings.data == str(workdir / "phantom") and settings.data_format == "png"  # the folder, not the built-in


def test_the_luna16_writer_writes_scans_or_refuses(tmp_path):
    """Before: xray-heart's phantom (a generator of 2D images) as luna16 wrote an empty folder and an
    annotations.csv, exit 0."""
    from bench.data.formats import FORMATS
    from bench.data.phantoms.xray import XrayPhantomSpec, iter_cases
    from bench.errors import DataError

    with pytest.raises(DataError, match="must be a 3D volume"):
        FORMATS.create("luna16").write(iter_cases(XrayPhantomSpec(n_patients=2, n_shifted_patients=0)),
                                       tmp_path / "flat")
    assert not (tmp_path / "flat").exists()
