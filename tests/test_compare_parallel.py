"""bench compare --workers N and --backend ray: every job once, the same runs and the same results table as
one after another; a driver killed with -9 stops its workers, and --resume repeats no finished run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from bench.compare import compare
from bench.compare.parallel import Execution, plan_execution
from bench.errors import ConfigError
from bench.search.workers import plan_workers

SMOKE = {"task": "xray-heart", "dimension": "guidance", "arms": ["none", "soft_mask"], "folds": 2, "seeds": 1,
         "preset": "smoke", "resamples": 300}
JOBS = [("none", "0", "0"), ("none", "1", "0"), ("soft_mask", "0", "0"), ("soft_mask", "1", "0")]
# Torch threads of each of 2 workers here: the one-after-another reference uses the same count, because a
# different thread count may change float sums (and so the metrics) in the last digits.
THREADS = plan_workers(2, None).threads


def _runs(folder, kind="compare"):
    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/xray-heart")
    runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
    return [r for r in runs if r.data.tags.get("bench.kind") == kind]


def _metrics_by_job(folder) -> dict[tuple[str, str, str], dict[str, float]]:
    """Each job's metrics, wall-clock timings left out (they are the only values allowed to differ)."""
    runs = _runs(folder)
    assert sorted(Counter((r.data.tags["arm"], r.data.tags["fold"], r.data.tags["seed"]) for r in runs).items()) == [
        (job, 1) for job in JOBS]  # every job ran exactly once
    return {(r.data.tags["arm"], r.data.tags["fold"], r.data.tags["seed"]):
            {k: v for k, v in r.data.metrics.items() if not k.endswith("seconds")} for r in runs}


def _table(result) -> pd.DataFrame:
    return result.table.drop(columns=[c for c in result.table.columns if "hours" in c or "seconds" in c])


def _comparison(folder, **options):
    """The smoke comparison in its own store (``folder``); returns its result and progress reports."""
    folder.mkdir()
    saved = os.getcwd()
    os.chdir(folder)
    progress = []
    try:
        result = compare(**SMOKE, name="p", on_progress=progress.append, **options)
    finally:
        os.chdir(saved)
    return result, progress


@pytest.fixture(scope="module")
def one_after_another(tmp_path_factory):
    """The reference: the smoke comparison run one job after another, at the workers' thread count."""
    root = tmp_path_factory.mktemp("sequential")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.setenv("BENCH_CACHE", str(root / "cache"))
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        threads = torch.get_num_threads()
        torch.set_num_threads(THREADS)
        try:
            result, _ = _comparison(root / "store")
        finally:
            torch.set_num_threads(threads)
    return result, _metrics_by_job(root / "store")


@pytest.mark.parametrize(("options", "message"), [
    ({"workers": 0}, "--workers must be at least 1, but got 0"),
    ({"workers": 2, "backend": "ray"}, "--workers N runs local processes, but got --workers 2 with --backend ray"),
    ({"backend": "dask"}, "--backend must be one of"),
    ({"address": "127.0.0.1:6379"}, "--address size Ray tasks, but got them without --backend ray"),
    ({"workers": 2, "gpus_per_trial": 1.0}, "--gpus-per-trial size Ray tasks"),
    ({"backend": "ray", "cpus_per_trial": 0.0}, "--cpus-per-trial must be > 0"),
])
def test_bad_parallel_options_are_one_clear_error(options, message):
    with pytest.raises(ConfigError, match=message):
        plan_execution(**options)


def test_parallel_options_choose_where_the_jobs_run():
    assert plan_execution() == Execution() and not Execution().parallel
    assert plan_execution(workers=1) == Execution() and plan_execution(workers=3).parallel
    ray = plan_execution(backend="ray", cpus_per_trial=2.0)
    assert ray.parallel and (ray.backend, ray.address, ray.cpus_per_trial, ray.gpus_per_trial) == ("ray", None, 2.0, 0.0)


def test_a_bad_combination_stops_compare_before_any_run(workdir):
    with pytest.raises(ConfigError, match="--workers must be at least 1"):
        compare(**SMOKE, name="bad", workers=0)
    assert not (workdir / "mlflow.db").exists() or not _runs(workdir, "comparison")


def test_two_workers_run_each_job_once_with_the_same_values_and_table(workdir, one_after_another):
    reference, reference_metrics = one_after_another
    result, progress = _comparison(workdir / "workers", workers=2)
    assert _metrics_by_job(workdir / "workers") == reference_metrics  # bit for bit: same seeds, same threads
    pd.testing.assert_frame_equal(_table(result), _table(reference))
    assert result.verdicts == reference.verdicts and (result.n_ran, result.n_skipped, result.n_failed) == (4, 0, 0)
    # progress reached the driver as each job finished, one report per job
    assert [p.done for p in progress] == [1, 2, 3, 4] and all(p.outcome.state == "COMPLETE" for p in progress)
    assert sorted((p.job.arm, str(p.job.fold), str(p.job.seed)) for p in progress) == JOBS
    runs = _runs(workdir / "workers")
    (parent,) = _runs(workdir / "workers", "comparison")
    assert {r.data.tags["mlflow.parentRunId"] for r in runs} == {parent.info.run_id}
    assert {r.data.tags["workers"] for r in runs} == {"2"} and {r.data.tags["torch_threads"] for r in runs} == {
        str(THREADS)}
    assert parent.info.status == "FINISHED"

    # resuming with workers finds nothing left to run
    again, progress = _comparison_resume(workdir / "workers", workers=2)
    assert (again.n_ran, again.n_skipped) == (0, 4) and [p.outcome for p in progress] == [None] * 4


def _comparison_resume(folder, name="p", **options):
    saved = os.getcwd()
    os.chdir(folder)
    progress = []
    try:
        return compare("xray-heart", name=name, resume=True, resamples=300, on_progress=progress.append,
                       **options), progress
    finally:
        os.chdir(saved)


def test_kill_9_of_the_driver_stops_its_workers_and_resume_repeats_no_finished_run(workdir):
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "bench.compare.command", "--task", "xray-heart", "--dimension", "guidance", "--arms",
           "none,soft_mask", "--folds", "2", "--seeds", "1", "--preset", "smoke", "--name", "k", "--workers", "2"]
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)  # its own process group: the driver and its workers
    try:
        for line in proc.stdout:  # the first job is done; the other worker is training
            if line.startswith("[1/4]"):
                break
        else:
            pytest.fail("the comparison ended before its first job finished")
        deadline = time.time() + 300
        while time.time() < deadline and not [r for r in _runs(workdir) if r.info.status == "RUNNING"]:
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must notice and stop
        proc.wait()
        before_stop = {r.info.run_id for r in _runs(workdir) if r.info.status == "FINISHED"}
        deadline = time.time() + 120
        while time.time() < deadline and _group_alive(proc.pid):
            time.sleep(0.5)
        assert not _group_alive(proc.pid), "a worker kept running after its driver was killed"
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    before = _runs(workdir)
    finished = {r.info.run_id for r in before if r.info.status == "FINISHED"}
    assert before_stop and before_stop <= finished
    # The workers stopped instead of training the rest of the queue: a job is left unfinished. A worker closes
    # its open run "interrupted" itself; one killed while it was still opening the run leaves it RUNNING.
    stopped = [r for r in before if r.info.status != "FINISHED"]
    assert stopped and all(r.data.tags.get("bench.reason") == "interrupted" or r.info.status == "RUNNING"
                           for r in stopped)

    result, _ = _comparison_resume(workdir, "k", workers=2)
    after = _runs(workdir)
    assert not [r for r in after if r.info.status == "RUNNING"]
    complete = Counter((r.data.tags["arm"], r.data.tags["fold"], r.data.tags["seed"]) for r in after
                       if r.data.tags.get("bench.state") == "COMPLETE")
    assert sorted(complete) == JOBS and set(complete.values()) == {1}  # no job finished twice
    assert finished <= {r.info.run_id for r in after if r.data.tags.get("bench.state") == "COMPLETE"}
    assert result.n_skipped == len(finished) and result.n_ran == 4 - len(finished)
    # RUNNING leftovers are closed "killed" by --resume, as one after another, and their jobs re-run
    assert result.killed_closed == sum(r.info.status == "RUNNING" for r in stopped)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow  # a local Ray starts in ~20 s here, then the four jobs: over a minute on a 2-core box
def test_ray_backend_runs_each_job_once_with_the_same_values_and_table(workdir, one_after_another):
    reference, reference_metrics = one_after_another
    result, progress = _comparison(workdir / "ray", backend="ray", cpus_per_trial=float(THREADS))
    assert _metrics_by_job(workdir / "ray") == reference_metrics
    pd.testing.assert_frame_equal(_table(result), _table(reference))
    assert [p.done for p in progress] == [1, 2, 3, 4] and all(p.outcome.state == "COMPLETE" for p in progress)
    assert {r.data.tags["backend"] for r in _runs(workdir / "ray")} == {"ray"}
    import ray

    assert not ray.is_initialized()  # the local Ray it started is shut down
