"""--resume: a killed search continues to exactly --trials finished trials, its dead runs closed FAILED."""

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
from mlflow.tracking import MlflowClient

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.search.optuna_backend import (
    SearchSettings,
    base_config,
    count_finished,
    is_killed,
    make_storage,
    run_search,
)
from bench.tracking import Tracker


def _runs(workdir):
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/xray-heart")
    return client.search_runs([exp.experiment_id], max_results=1000)


def _fake_killed_trial(workdir, study_name):
    """What kill -9 leaves behind: an Optuna trial RUNNING and its MLflow run RUNNING, plus the parent."""
    study = optuna.load_study(study_name=study_name, storage=make_storage(str(workdir / "optuna.journal")))
    trial = study.ask()
    tracker = Tracker("xray-heart")
    parent = tracker.start_search("search dead", {"study": study_name})
    tracker.set_tags(parent, {"study": study_name})
    config = TrialConfig.from_flat(base_config(SearchSettings(task="xray-heart", preset="smoke")).flat())
    run_id = tracker.start_trial(parent, "dead", config, {"trial_number": trial.number, "study": study_name})
    return trial.number, run_id, parent


def test_resume_closes_killed_runs_and_runs_only_the_remainder(workdir):
    first = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, study="r", pruner="none"))
    assert first.n_complete == 1
    number, dead_run, dead_parent = _fake_killed_trial(workdir, "r")

    resumed = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, study="r", resume=True,
                                        pruner="none"))
    study = optuna.load_study(study_name="r", storage=make_storage(str(workdir / "optuna.journal")))
    trials = study.get_trials()
    assert count_finished(study) == 2 and len(trials) == 3  # 1 before + 1 killed + exactly 1 more
    killed = [t for t in trials if is_killed(t)]
    assert [t.number for t in killed] == [number] and killed[0].state == optuna.trial.TrialState.FAIL
    runs = {r.info.run_id: r for r in _runs(workdir)}
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]
    for rid in (dead_run, dead_parent):
        assert runs[rid].info.status == "FAILED" and runs[rid].data.tags["bench.reason"] == "killed"
    numbers = [r.data.tags["trial_number"] for r in runs.values() if r.data.tags.get("bench.kind") == "trial"]
    assert len(numbers) == len(set(numbers)) == 3  # no trial ran twice
    assert resumed.n_complete == 2


def test_resume_of_a_finished_study_runs_nothing_and_new_names_must_be_unused(workdir):
    run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, study="done", pruner="none"))
    again = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, study="done", resume=True))
    assert again.n_complete == 1 and len([r for r in _runs(workdir) if r.data.tags.get("bench.kind") == "trial"]) == 1
    with pytest.raises(ConfigError, match="unused study name, but 'done' exists"):
        run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, study="done"))


def _bench(*args, cwd):
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return [sys.executable, "-m", "bench.cli", "search", "--task", "xray-heart", "--preset", "smoke",
            "--pruner", "none", "--study", "k", *args], env


def test_kill_9_then_resume(workdir):
    cmd, env = _bench("--trials", "50", cwd=workdir)
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    storage = str(workdir / "optuna.journal")
    deadline = time.time() + 600
    try:
        while time.time() < deadline:  # wait for one finished trial and a second one under way
            if os.path.exists(storage):
                try:
                    trials = optuna.load_study(study_name="k", storage=make_storage(storage)).get_trials()
                except KeyError:
                    trials = []
                states = [t.state for t in trials]
                running = [str(t.number) for t in trials if t.state == optuna.trial.TrialState.RUNNING]
                # kill only once the running trial's MLflow run exists: Optuna creates the trial a moment
                # before the lifecycle opens its run, and a kill in between leaves a trial with no run
                if optuna.trial.TrialState.COMPLETE in states and running and any(
                        r.info.status == "RUNNING" and r.data.tags.get("trial_number") in running
                        for r in _runs(workdir)):
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the search never finished a trial")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert [r for r in _runs(workdir) if r.info.status == "RUNNING"]  # the kill left open runs behind

    cmd, env = _bench("--trials", "3", "--resume", cwd=workdir)
    done = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr + done.stdout
    study = optuna.load_study(study_name="k", storage=make_storage(storage))
    assert count_finished(study) == 3 and sum(map(is_killed, study.get_trials())) == 1
    runs = _runs(workdir)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    trial_runs = [r for r in runs if r.data.tags.get("bench.kind") == "trial"]
    numbers = [r.data.tags["trial_number"] for r in trial_runs]
    assert len(numbers) == len(set(numbers)) == 4  # 1 done + 1 killed + 2 more, none twice
    assert [r.data.tags["bench.reason"] for r in trial_runs if r.info.status == "FAILED"] == ["killed"]


def test_rdb_storage_records_heartbeats(workdir):
    from optuna.storages._heartbeat import is_heartbeat_enabled

    assert is_heartbeat_enabled(make_storage(f"sqlite:///{workdir / 'optuna.db'}"))
    assert not is_heartbeat_enabled(make_storage(str(workdir / "j.journal")))  # Optuna 5: no journal heartbeat


def test_sigterm_closes_open_runs(workdir):
    """A plain `kill` (SIGTERM) of a search closes its trial and parent runs instead of leaving them RUNNING."""
    cmd, env = _bench("--trials", "50", cwd=workdir)
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    storage = str(workdir / "optuna.journal")
    deadline = time.time() + 600
    try:
        # Poll the study, not MLflow: opening the MLflow store here while the search creates it races.
        while time.time() < deadline:
            assert proc.poll() is None, f"the search exited early: {proc.stderr.read()[-2000:]}"
            if os.path.exists(storage):
                try:
                    trials = optuna.load_study(study_name="k", storage=make_storage(storage)).get_trials()
                except KeyError:
                    trials = []
                if any(t.state == optuna.trial.TrialState.RUNNING for t in trials):
                    time.sleep(2)  # the trial's MLflow run opens right after the Optuna trial starts
                    break
            time.sleep(0.5)
        else:
            pytest.fail("the search never started a trial")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    runs = _runs(workdir)
    assert [r for r in runs if r.data.tags.get("bench.kind") == "trial"]
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert {r.data.tags.get("bench.reason") for r in runs if r.data.tags.get("bench.kind") == "trial"
            and r.info.status == "FAILED"} <= {"interrupted"}
