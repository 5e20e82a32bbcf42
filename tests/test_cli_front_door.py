"""What a person meets first (issue 20, parts 4 and 5): bad counts and dead stores refused in one line before
anything is created, `bench --version`, plurals written as a person writes them."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.cli import main


@pytest.mark.parametrize("flags", [["--trials", "0"], ["--trials", "-1"], ["--timeout", "-5"], ["--timeout", "0"]])
def test_impossible_budgets_are_refused_before_anything_is_created(workdir, capsys, flags):
    code = main(["search", "--task", "xray-heart", "--preset", "smoke", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("bench search: error: --t"), err
    assert sorted(p.name for p in workdir.iterdir()) == []  # no mlflow.db, no journal, no cache


def test_a_tracking_server_that_is_not_there_is_one_line_at_once(tmp_path):
    """Before: 254 s of MLflow retries, then its traceback. The subprocess limit makes the old behaviour a
    failure, not a hang; the assertion is on what is printed, not on how fast."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    for command in (["search", "--task", "xray-heart", "--preset", "smoke"],
                    ["compare", "--task", "xray-heart", "--dimension", "guidance"]):
        proc = subprocess.run([sys.executable, "-m", "bench.cli", *command], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120, check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert len(lines) == 1 and "http://127.0.0.1:9" in lines[0] and "could not be reached" in lines[0], lines
        assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_sqlite_store_in_a_missing_folder_is_refused(workdir, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'nowhere' / 'mlflow.db'}")
    assert main(["search", "--task", "xray-heart", "--preset", "smoke"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (workdir / "nowhere").exists()


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    from importlib import metadata

    assert capsys.readouterr().out.strip() == f"bench {metadata.version('bench')}"


def test_registry_plurals_read_as_written():
    from bench.guidance.base import GUIDANCE, LESION_GUIDANCE
    from bench.models import SEG_MODELS

    assert GUIDANCE.plural == "guidance strategies"
    assert LESION_GUIDANCE.plural == "lesion guidance strategies"
    assert SEG_MODELS.plural == "segmentation models"


def test_a_space_naming_an_unknown_strategy_says_strategies():
    from bench.errors import ConfigError
    from bench.search.space import parse_space

    with pytest.raises(ConfigError) as exc:
        parse_space({"params": {"guidance": {"type": "categorical", "choices": ["soft_mask", "not_a_strategy"]}}})
    assert "registered guidance strategies" in str(exc.value)
    assert "strategys" not in str(exc.value)


def test_bench_warnings_are_one_line_and_library_warnings_stay_quiet(tmp_path):
    """A class with one patient (a split warning) reads `bench: warning: ...`, without Python's category,
    file name and source line; a library's warning is not shown unless -v."""
    probe = (
        "import warnings\n"
        "from bench.cli import main\n"
        "from bench.logs import quiet_libraries\n"
        "import numpy as np\n"
        "from bench.data.splits import _need_class_patients\n"
        "quiet_libraries()\n"
        "groups = np.array([f'p{i}' for i in range(13)]); strata = np.array(['a'] * 12 + ['b'])\n"
        "_need_class_patients(groups, strata, 3, 'class', 'the train part', warn=True)\n"
        "warnings.warn('from a library', FutureWarning)\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False, env={k: v for k, v in os.environ.items() if k != "BENCH_VERBOSE"})
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert lines and all(line.startswith("bench: warning: ") for line in lines), lines
    assert "UserWarning" not in proc.stderr and "from a library" not in proc.stderr


def test_search_without_format_reads_the_folder_as_the_format_that_recognises_it(workdir):
    from bench.cli import build_parser
    from bench.cli.search import settings_from
    from bench.errors import BenchError

    assert main(["datasets", "make-phantom", "--task", "xray-heart", "--out", "xr", "--format", "dicom",
                 "--cases", "6"]) == 0
    args = build_parser().parse_args(["search", "--task", "xray-heart", "--data", "xr"])
    assert settings_from(args).data_format == "dicom"  # before: png, whatever the folder held
    (workdir / "empty").mkdir()
    with pytest.raises(BenchError, match="--format"):
        settings_from(build_parser().parse_args(["search", "--task", "xray-heart", "--data", "empty"]))
