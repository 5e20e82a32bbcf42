"""Pruned and failed trials close their MLflow runs with the right status; the search goes on."""

import optuna
from mlflow.tracking import MlflowClient

from bench.search import optuna_backend
from bench.search.optuna_backend import SearchSettings, run_search


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial):
        return True


def _trial_runs():
    client = MlflowClient(optuna_backend.Tracker("xray-heart").uri)
    exp = client.get_experiment_by_name("bench/xray-heart")
    return [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("bench.kind") == "trial"]


def test_pruned_trials_end_killed(workdir, monkeypatch):
    monkeypatch.setattr(optuna_backend, "make_pruner", lambda name, epochs: AlwaysPrune())
    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2))
    assert summary.n_pruned == 2 and summary.n_complete == 0
    runs = _trial_runs()
    assert {r.info.status for r in runs} == {"KILLED"} and {r.data.tags["bench.state"] for r in runs} == {"PRUNED"}


def test_failed_trial_ends_failed_with_reason(workdir):
    space = workdir / "bad.yaml"
    space.write_text("params:\n  seg_loss_params.bogus: {type: float, low: 0.1, high: 0.9}\n")
    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, space=str(space)))
    assert summary.n_failed == 1
    (run,) = _trial_runs()
    assert run.info.status == "FAILED" and "bogus" in run.data.tags["bench.reason"]
