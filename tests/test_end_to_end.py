"""The user's day from the README: search (smoke) → leaderboard → replay, through the real CLI."""

import json
import os
import subprocess
import sys

from mlflow.tracking import MlflowClient


def bench(*args, cwd):
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_search_leaderboard_replay(workdir):
    run = bench("search", "--task", "xray-heart", "--preset", "smoke", "--trials", "2", "--seed", "1",
                "--study", "e2e", cwd=workdir)
    assert run.returncode == 0, run.stderr + run.stdout
    assert "mlflow ui" in run.stdout and (workdir / "mlflow.db").exists() and (workdir / "optuna.journal").exists()

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/xray-heart")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "search"]
    trials = [r for r in runs if r.data.tags.get("bench.kind") == "trial"]
    assert len(parents) == 1 and len(trials) == 2
    for t in trials:
        assert t.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert t.info.status == "FINISHED" and t.data.tags["bench.state"] == "COMPLETE"
        assert {"seed", "split_hash", "git_commit", "trial_number"} <= set(t.data.tags)
        # the phantom's classes, in their order; four classes: val_auroc is the macro AUROC, no positive class
        assert t.data.tags["classes"] == "normal,VSD,ASD,TOF" and "positive_class" not in t.data.tags
        assert {"seg_arch", "seg_loss", "guidance", "lr"} <= set(t.data.params)
        assert {"val_auroc", "val_accuracy", "val_heart_dice", "test_auroc", "test_heart_dice"} <= set(t.data.metrics)
        assert {"val_recall_TOF", "test_shifted_auroc", "shift_gap_auroc"} <= set(t.data.metrics)
        steps = {m.step for m in client.get_metric_history(t.info.run_id, "val_auroc")}
        assert steps == {0, 1}  # a point per classifier epoch (the final value is logged at step 0 too)
        assert {a.path for a in client.list_artifacts(t.info.run_id)} >= {"config.yaml", "checkpoint.pt"}
        assert not any("P0" in v for v in list(t.data.params.values()) + list(t.data.tags.values()))
    assert parents[0].info.status == "FINISHED"

    board = bench("leaderboard", "--task", "xray-heart", "--format", "json", cwd=workdir)
    assert board.returncode == 0, board.stderr
    rows = json.loads(board.stdout)
    assert [r["rank"] for r in rows] == [1, 2] and rows[0]["val_auroc"] >= rows[1]["val_auroc"]

    replay = bench("replay", "--task", "xray-heart", cwd=workdir)
    assert replay.returncode == 0, replay.stderr + replay.stdout
    assert "verdict: reproduced" in replay.stdout and "difference 0.00e+00" in replay.stdout
    replays = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("bench.kind") == "replay"]
    assert replays[0].data.tags["replay_of"] == rows[0]["run_id"]


def test_make_phantom_png_and_tasks(workdir):
    out = bench("datasets", "make-phantom", "--task", "xray-heart", "--out", "ph", "--format", "png",
                "--cases", "5", cwd=workdir)
    assert out.returncode == 0, out.stderr
    assert (workdir / "ph" / "labels.csv").exists() and list((workdir / "ph" / "images").glob("*.png"))
    assert "xray-heart" in bench("tasks", cwd=workdir).stdout
    bad = bench("leaderboard", "--task", "xray-heart", cwd=workdir)
    assert bad.returncode == 2 and "bench search --task xray-heart" in bad.stderr
