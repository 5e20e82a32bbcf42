"""Worker planning (threads, GPU pinning, exact trial shares) and a real two-worker search."""

import pytest
from mlflow.tracking import MlflowClient

from bench.errors import ConfigError
from bench.search.optuna_backend import SearchSettings, run_search
from bench.search.workers import plan_workers, split_trials


def test_threads_are_shared_out_and_gpus_pinned_round_robin():
    plan = plan_workers(2, None, cores=2, gpus=0)
    assert (plan.workers, plan.threads, plan.gpu(0), plan.gpu(1)) == (2, 1, None, None)
    assert plan_workers(3, None, cores=2, gpus=0).threads == 1  # never zero threads
    gpu = plan_workers(None, 2, cores=16, gpus=4)
    assert gpu.workers == 8 and gpu.threads == 2 and [gpu.gpu(i) for i in range(8)] == list("01230123")
    assert plan_workers(None, 2, cores=2, gpus=0).workers == 1  # trials-per-gpu is harmless without a GPU


def test_bad_worker_counts_are_config_errors():
    with pytest.raises(ConfigError, match="--workers must be at least 1, but got 0"):
        plan_workers(0, None)
    with pytest.raises(ConfigError, match="--trials-per-gpu"):
        plan_workers(1, 0)


@pytest.mark.parametrize("total,workers", [(6, 2), (7, 3), (1, 4), (0, 2)])
def test_trial_shares_add_up_exactly(total, workers):
    shares = split_trials(total, workers)
    assert sum(shares) == total and len(shares) == workers and max(shares) - min(shares) <= 1


def _trial_runs(workdir):
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/xray-heart")
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("bench.kind") in ("trial", "search")]


def test_nan_loss_fails_the_trial_with_its_reason_and_the_search_goes_on(workdir, monkeypatch):
    from bench.tasks.xray_heart import pipeline as xray_heart

    real_fit = xray_heart.fit

    def nan_fit(model, loss_fn, tensors, **kw):  # every loss becomes NaN: run_trial raises FloatingPointError
        return real_fit(model, lambda m, b: loss_fn(m, b) * float("nan"), tensors, **kw)

    monkeypatch.setattr(xray_heart, "fit", nan_fit)
    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, study="nan"))
    assert (summary.n_failed, summary.n_complete) == (2, 0)  # the first failure did not stop the search
    trials = [r for r in _trial_runs(workdir) if r.data.tags["bench.kind"] == "trial"]
    assert len(trials) == 2
    for run in trials:
        assert run.info.status == "FAILED" and run.data.tags["bench.state"] == "FAIL"
        assert "FloatingPointError" in run.data.tags["bench.reason"] and "nan" in run.data.tags["bench.reason"]


@pytest.mark.slow  # two spawned workers each import torch and train: minutes on a shared 2-core box
def test_two_workers_share_one_study_and_one_parent_run(workdir):
    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=3, study="pool", workers=2,
                                        pruner="none"))
    assert summary.n_complete + summary.n_pruned + summary.n_failed == 3
    runs = _trial_runs(workdir)
    (parent,) = [r for r in runs if r.data.tags["bench.kind"] == "search"]
    trials = [r for r in runs if r.data.tags["bench.kind"] == "trial"]
    assert len(trials) == 3 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert sorted(int(r.data.tags["trial_number"]) for r in trials) == [0, 1, 2]  # no duplicate
    assert {r.data.tags["worker"] for r in trials} == {"0", "1"}
    assert {r.data.tags["torch_threads"] for r in trials} == {str(max(1, optuna_backend_cores() // 2))}
    assert all(r.info.status != "RUNNING" for r in runs)


def optuna_backend_cores():
    from bench.search.workers import cpu_count

    return cpu_count()


