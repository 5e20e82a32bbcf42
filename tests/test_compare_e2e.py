"""bench compare end to end at the smoke preset, on a real MLflow store: 2 arms x 2 folds x 1 seed, its
MLflow layout and exports; and kill -9 mid-comparison, then --resume without repeating finished runs."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from bench.compare.command import add_parser, run
from bench.errors import ConfigError

SMOKE = ("--task", "xray-heart", "--dimension", "guidance", "--arms", "none,soft_mask", "--seeds", "1", "--folds",
         "2", "--preset", "smoke")


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["compare", *argv])


def _runs(workdir, kind=None):
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/xray-heart")
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    return [r for r in runs if kind is None or r.data.tags.get("bench.kind") == kind]


def test_smoke_comparison_logs_parent_nested_runs_results_and_exports(workdir, capsys):
    assert run(_args(*SMOKE, "--name", "e2e", "--export", str(workdir / "out"), "--resamples", "300")) == 0
    printed = capsys.readouterr().out
    assert "note: --seeds 1 is below 5" in printed  # allowed, and said so: no verdict from 2 runs per arm
    assert "soft_mask: too few runs (2): descriptive only (alpha = 0.05)" in printed

    (parent,) = _runs(workdir, "comparison")
    tags = parent.data.tags
    assert parent.info.status == "FINISHED" and tags["bench.state"] == "COMPLETE"
    assert {k: tags[k] for k in ("comparison", "dimension", "arms", "baseline", "folds", "seeds", "mode")} == {
        "comparison": "e2e", "dimension": "guidance", "arms": "none,soft_mask", "baseline": "none", "folds": "2",
        "seeds": "0", "mode": "fixed"}
    assert len(tags["split_sha256"]) == 64 and tags["commit"] and tags["metric"] == "val_auroc@fold"
    nested = _runs(workdir, "compare")
    assert len(nested) == 4 and all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in nested)
    assert sorted((r.data.tags["arm"], r.data.tags["fold"], r.data.tags["seed"]) for r in nested) == [
        ("none", "0", "0"), ("none", "1", "0"), ("soft_mask", "0", "0"), ("soft_mask", "1", "0")]
    assert {r.data.tags["comparison"] for r in nested} == {"e2e"}
    assert {r.data.params["guidance"] for r in nested} == {"none", "soft_mask"}
    assert {r.data.params["seg_arch"] for r in nested} == {"fpn"}  # everything but the arm is fixed

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    artifacts = {f.path for f in client.list_artifacts(parent.info.run_id)}
    assert {"results.csv", "results.md", "report.html", "forest.png", "arm_configs.yaml"} <= artifacts
    table = pd.read_csv(workdir / "out" / "results.csv")
    primary = table[table["metric"] == "val_auroc@fold"].set_index("arm")
    assert list(primary.index) == ["none", "soft_mask"] and primary.loc["none", "verdict"] == "baseline"
    assert primary.loc["soft_mask", "n"] == primary.loc["none", "n"] > 2  # validation cases of both folds
    assert (primary["trial_hours"] > 0).all()
    assert {"val_auroc", "val_heart_dice", "shift_gap_auroc", "test_auroc"} <= set(table["metric"])
    assert "too few runs (2): descriptive only" in (workdir / "out" / "report.html").read_text()
    assert {"p_case", "sd_fold", "detectable", "run_delta"} <= set(table.columns)

    with pytest.raises(ConfigError, match="must keep the comparison's dimension"):
        run(_args("--task", "xray-heart", "--name", "e2e", "--resume", "--dimension", "seg_loss"))
    with pytest.raises(ConfigError, match="unused name, but 'e2e' exists"):
        run(_args(*SMOKE, "--name", "e2e"))
    with pytest.raises(ConfigError, match="--folds must not exceed the folds of the data's split"):
        run(_args(*SMOKE[:-4], "--folds", "9", "--preset", "smoke", "--name", "too-many"))
    with pytest.raises(ConfigError, match="may add arms but not drop any"):
        run(_args("--task", "xray-heart", "--name", "e2e", "--resume", "--arms", "none,crop"))
    # resuming a finished comparison repeats nothing; a second seed adds one run per arm x fold
    capsys.readouterr()
    assert run(_args("--task", "xray-heart", "--name", "e2e", "--resume", "--seeds", "2", "--resamples", "100",
                     "--export", str(workdir / "out2"))) == 0
    assert len(_runs(workdir, "compare")) == 8 and "4 runs now, 4 finished earlier" in capsys.readouterr().out
    (parent,) = _runs(workdir, "comparison")
    assert parent.data.tags["seeds"] == "0,1" and parent.data.tags["resumed"] == "true"
    again = pd.read_csv(workdir / "out2" / "results.csv").set_index(["metric", "arm"])
    assert again.loc[("val_auroc@fold", "none"), "n"] == primary.loc["none", "n"]  # the same cases, two seeds each


def test_kill_9_mid_comparison_then_resume_repeats_no_finished_run(workdir):
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "bench.compare.command", *SMOKE, "--name", "k"]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:  # "[1/4] none fold 0 seed 0: COMPLETE ...": job 2 starts right after
            if line.startswith("[1/4]"):
                break
        else:
            pytest.fail("the comparison ended before its first job finished")
        deadline = time.time() + 300
        while time.time() < deadline and not [r for r in _runs(workdir, "compare") if r.info.status == "RUNNING"]:
            time.sleep(0.2)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _runs(workdir, "compare")
    finished = {r.info.run_id for r in before if r.info.status == "FINISHED"}
    assert finished and [r for r in before if r.info.status == "RUNNING"]  # the kill left an open run behind

    assert run(_args("--name", "k", "--resume", "--task", "xray-heart", "--resamples", "200")) == 0
    after = _runs(workdir, "compare")
    assert not [r for r in after if r.info.status == "RUNNING"]
    complete = Counter((r.data.tags["arm"], r.data.tags["fold"], r.data.tags["seed"]) for r in after
                       if r.data.tags.get("bench.state") == "COMPLETE")
    assert sorted(complete) == [("none", "0", "0"), ("none", "1", "0"), ("soft_mask", "0", "0"),
                                ("soft_mask", "1", "0")]
    assert set(complete.values()) == {1}  # no job finished twice
    assert finished <= {r.info.run_id for r in after if r.data.tags.get("bench.state") == "COMPLETE"}
    killed = [r for r in after if r.data.tags.get("bench.reason") == "killed"]
    assert len(killed) == 1 and len(after) == 5  # 4 jobs + the one killed run, re-run once
    (parent,) = _runs(workdir, "comparison")
    assert parent.info.status == "FINISHED" and parent.data.tags["resumed"] == "true"
