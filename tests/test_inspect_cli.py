"""`bench datasets inspect` and `split` (issue 32, part 2): one contract for every task (0 clean, 1 problems
listed one per line, 2 unreadable in one line, JSON with --json either way), what a search would refuse is a
problem, --task found from the folder, --format checked, no Python reprs, a folder's own folds said to win."""

from __future__ import annotations

import csv
import json
import re

import pytest

from bench.cli import main
from bench.cli._report import report_lines
from bench.tasks import TASKS

REPR = re.compile(r"\{'|\['|\bNone\b|Error\(|\(\)")  # a dict, a list, None or an exception's repr


def _phantom(task: str, out: str, fmt: str | None = None, cases: str = "2") -> None:
    flags = ["--format", fmt] if fmt else []
    assert main(["datasets", "make-phantom", "--task", task, "--out", out, "--cases", cases, *flags]) == 0


@pytest.mark.parametrize("task", TASKS.names())
@pytest.mark.parametrize("as_json", [False, True])
def test_an_unreadable_folder_is_one_line_exit_2_for_every_task(workdir, capsys, task, as_json):
    (workdir / "empty").mkdir()
    for path in ("nowhere", "empty"):
        code = main(["datasets", "inspect", path, "--task", task, *(["--json"] if as_json else [])])
        out, err = capsys.readouterr()
        assert code == 2, (path, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bench datasets inspect: error: ") and path in lines[0]
        assert not REPR.search(lines[0]), lines[0]
        if as_json:
            assert json.loads(out)["error"] in lines[0]
        else:
            assert out == ""


def test_a_png_folder_without_heart_masks_is_a_problem_as_a_search_would_refuse_it(workdir, capsys):
    _phantom("xray-heart", "xr", cases="20")
    table = workdir / "xr" / "labels.csv"
    rows = list(csv.DictReader(table.open()))
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, [k for k in rows[0] if k != "mask_heart"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert main(["datasets", "inspect", "xr"]) == 1  # no --task: only xray-heart reads a PNG folder
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-2] == "problems: 1" and "every image needs a heart mask" in out[-1], out[-3:]
    assert not any(REPR.search(line) for line in out), out


def test_a_data_set_a_search_cannot_split_is_a_problem(workdir, capsys):
    _phantom("xray-heart", "few", cases="2")
    capsys.readouterr()
    assert main(["datasets", "inspect", "few", "--task", "xray-heart"]) == 1
    out = capsys.readouterr().out
    assert "a search splits the data first, but it cannot" in out and "{'" not in out


def test_segmentation_lists_every_problem_and_exits_1(workdir, capsys):
    _phantom("segmentation", "seg", cases="3")
    labels = sorted((workdir / "seg" / "labelsTr").iterdir())
    labels[0].unlink()
    labels[1].unlink()
    capsys.readouterr()
    assert main(["datasets", "inspect", "seg"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert "problems: 2" in out, out
    assert sum(line.startswith("  - ") for line in out[out.index("problems: 2"):]) == 2


def test_format_is_checked_against_the_folder(workdir, capsys):
    _phantom("segmentation", "seg")
    capsys.readouterr()
    assert main(["datasets", "inspect", "seg", "--task", "segmentation", "--format", "png"]) == 2
    assert "--format for segmentation must be one of" in capsys.readouterr().err
    assert main(["datasets", "inspect", "seg", "--task", "segmentation", "--format", "msd"]) == 2
    err = capsys.readouterr().err
    assert "reads the msd layout, but this folder is nnunet's" in err
    assert main(["datasets", "inspect", "seg", "--task", "segmentation", "--format", "nnunet"]) == 0


def test_without_task_a_folder_two_tasks_read_names_both(workdir, capsys):
    _phantom("segmentation", "msdseg", fmt="msd_seg")
    capsys.readouterr()
    assert main(["datasets", "inspect", "msdseg"]) == 2
    err = capsys.readouterr().err
    assert "ct-lung (as msd)" in err and "segmentation (as msd_seg)" in err and "Give --task" in err
    assert main(["datasets", "inspect", "phantom"]) == 2
    assert "--task must be given for the built-in phantom" in capsys.readouterr().err


def test_reader_errors_name_the_file_without_python_reprs(workdir, capsys):
    _phantom("segmentation", "seg", fmt="msd_seg")
    table = workdir / "seg" / "dataset.json"
    meta = json.loads(table.read_text())
    meta.pop("training")
    table.write_text(json.dumps(meta))
    capsys.readouterr()
    for task in ("segmentation", "ct-lung"):
        assert main(["datasets", "inspect", "seg", "--task", task, "--format", "msd"]) == 2
        err = capsys.readouterr().err.strip()
        assert "dataset.json" in err and not REPR.search(err), err
    table.write_text('{"channel_names": {"0": "CT"}, ')
    assert main(["datasets", "inspect", "seg", "--task", "segmentation"]) == 2
    err = capsys.readouterr().err.strip()
    assert "must be readable JSON" in err and "JSONDecodeError" not in err


def test_report_lines_show_no_python_values():
    report = {"format": None, "spacing_mm": {"min": [2.8, 2.8], "max": [2.8, 2.8]}, "labels": ["class"],
              "enclosed": [{"inner": "lesion", "outer": "organ", "share": 1.0}], "split": None,
              "problems": [{"case": "c1", "problem": "mask 'lesion' shape (1, 2) != image (2, 2)"}]}
    lines = report_lines(report)
    assert lines[:3] == ["format: none", "spacing_mm: min 2.8 x 2.8, max 2.8 x 2.8", "labels: class"]
    assert "  - inner lesion, outer organ, share 1" in lines
    assert lines[-2:] == ["problems: 1", "  - case c1: mask 'lesion' shape (1, 2) != image (2, 2)"]


def test_split_says_the_folders_own_folds_win(workdir, capsys):
    _phantom("segmentation", "seg", cases="12")
    assert main(["datasets", "split", "seg", "--export-nnunet", "seg", "--out", "a.json"]) == 0
    capsys.readouterr()
    assert main(["datasets", "split", "seg", "--folds", "3", "--out", "b.json"]) == 0
    out = capsys.readouterr().out
    assert "5 folds; the folder's own 5 folds win over --folds 3" in out
    assert len(json.loads((workdir / "b.json").read_text())["folds"]) == 5
