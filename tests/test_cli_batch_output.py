"""Running without a terminal and when trials fail (issue 32, part 3): a search in a log file prints one flushed
line per step and per finished trial, a failed trial is one line (its traceback only with -v), a closed pipe is
silent, a store URI MLflow cannot take and an unknown cache stage are one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.cli.search import short_reason

ROOT = Path(__file__).resolve().parents[1]
BAD_SPACE = "params:\n  seg_loss_params.bogus: {type: float, low: 0.1, high: 0.9}\n"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "BENCH_VERBOSE")}
    return {**env, "PYTHONPATH": str(ROOT), "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}


def test_a_search_into_a_log_prints_flushed_lines_and_one_line_per_failed_trial(tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD_SPACE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cli", "search", "--task", "xray-heart", "--preset", "smoke",
         "--space", "bad.yaml", "--trials", "2"],
        cwd=tmp_path, env={**_env(), "BENCH_CACHE": str(tmp_path / "cache")}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        still_running = proc.poll() is None  # the line came while the search runs, not at its end
        rest, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert first.startswith("search xray-heart 0:") and "[0/2]" in first, first
    assert still_running
    lines = [first, *rest.splitlines()]
    assert any("preparing data" in line for line in lines), lines  # the data step, as the progress line shows it
    for number in ("t000", "t001"):
        failed = [line for line in lines if f"{number} failed:" in line]
        assert len(failed) == 1 and "segmentation loss 'dice' takes parameters" in failed[0], lines
    assert "bench.errors" not in rest and "\x1b[" not in rest  # no module paths, no terminal control codes
    assert proc.returncode == 1
    assert "Traceback" not in err and "failed with parameters" not in err, err


@pytest.mark.slow  # a second search process with -v, only to see the traceback come back
def test_the_failed_trials_traceback_comes_with_verbose(tmp_path):
    (tmp_path / "bad.yaml").write_text(BAD_SPACE)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "-v", "search", "--task", "xray-heart", "--preset", "smoke",
         "--space", "bad.yaml", "--trials", "1"],
        cwd=tmp_path, env={**_env(), "BENCH_CACHE": str(tmp_path / "cache")}, capture_output=True, text=True,
        timeout=300, check=False)
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_a_reader_that_goes_away_is_silence(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "tasks", "--reference"], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # `| head` that has read what it wanted, here before anything was written
    err = proc.stderr.read()
    proc.wait(timeout=120)
    assert err == "" and proc.returncode == 141


@pytest.mark.parametrize("command", [["leaderboard", "--task", "xray-heart"], ["ui"]])
def test_a_store_uri_mlflow_cannot_take_is_one_line(workdir, monkeypatch, capsys, command):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://x")
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bogus://x" in err[0] and "sqlite" in err[0], err
    assert list(workdir.iterdir()) == []


def test_an_unknown_cache_stage_names_the_stages(workdir, capsys):
    assert main(["cache", "prune", "--stage", "bogus"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'bogus'" in err and "segmenter (xray-heart)" in err and "lung (ct-lung)" in err, err
    assert main(["cache", "prune", "--stage", "lung"]) == 0  # a declared stage with no entries: nothing to do


def test_a_failed_trials_reason_reads_without_module_paths():
    assert short_reason("bench.errors.RegistryError: loss 'dice' takes\n parameters") == "loss 'dice' takes parameters"
    assert short_reason("torch.OutOfMemoryError: CUDA out of memory") == "OutOfMemoryError: CUDA out of memory"
    assert short_reason("interrupted") == "interrupted"
