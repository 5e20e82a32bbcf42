"""Ray Tune backend: the same space through OptunaSearch, trials nested under one parent MLflow run."""

import pytest
from mlflow.tracking import MlflowClient

from bench.errors import ConfigError
from bench.search.optuna_backend import SearchSettings


def test_scheduler_lets_a_trial_reach_its_final_report():
    from bench.search.ray_backend import make_scheduler

    assert make_scheduler("asha", "val_auroc", "max", 2)._max_t == 3  # 2 epochs + the final evaluation


def test_bad_scheduler_and_resume_are_config_errors():
    from bench.search.ray_backend import make_scheduler, run_search

    with pytest.raises(ConfigError, match="scheduler must be one of"):
        make_scheduler("fifo", "val_auroc", "max", 2)
    with pytest.raises(ConfigError, match="--resume works with the optuna backend"):
        run_search(SearchSettings(task="xray-heart", backend="ray", study="x", resume=True))


def test_ray_search_nests_trials_and_closes_every_run(workdir):
    import threading

    from bench.leaderboard import leaderboard
    from bench.search.ray_backend import run_search

    finished, lock = [], threading.RLock()  # the CLI's progress callback holds a lock: Tune must not pickle it

    def on_trial(study, trial):
        with lock:
            finished.append((trial.number, trial.state.name))

    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, study="ray", backend="ray",
                                        scheduler="asha", cpus_per_trial=1), on_trial=on_trial)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/xray-heart")
    runs = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("bench.kind") == "search"]
    trials = [r for r in runs if r.data.tags.get("bench.kind") == "trial"]
    assert parent.data.tags["search.backend"] == "ray" and parent.info.status in ("FINISHED", "FAILED")
    assert len(trials) == 2 and {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert all(r.data.tags["study"] == "ray" and r.data.tags["backend"] == "ray" for r in trials)
    expected = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for r in trials:
        assert r.info.status == expected[r.data.tags["bench.state"]]  # none left RUNNING
    assert summary.n_complete + summary.n_pruned + summary.n_failed == 2
    # unique names numbered as the Optuna backend numbers them (Tune's ids are random hex, once all "t000")
    assert sorted(r.info.run_name.split(" ")[0] for r in trials) == ["t000", "t001"]
    assert sorted(r.data.tags["trial_number"] for r in trials) == ["0", "1"]
    # the progress line is told of every finished trial, with the state its run ended in
    by_number = {int(r.data.tags["trial_number"]): r.data.tags["bench.state"] for r in trials}
    assert sorted(finished) == sorted(by_number.items())
    assert summary.n_complete >= 1  # ASHA never stops the first trial of a rung, nor one at its last epoch
    if summary.n_complete:
        board = leaderboard("xray-heart", study="ray")
        assert len(board) == 2 and board.iloc[0]["state"] == "COMPLETE"


def test_a_relative_data_folder_reaches_trials_as_an_absolute_path(workdir):
    """Tune runs each trial with its own folder as working directory, so the base config every trial is built
    from names the data folder absolutely; the phantom keeps its name."""
    from bench.search.driver import base_config

    (workdir / "mydata").mkdir()
    config = base_config(SearchSettings(task="xray-heart", preset="smoke", data="mydata", data_format="png"))
    assert config.data == str(workdir / "mydata")
    assert base_config(SearchSettings(task="xray-heart", preset="smoke")).data == "phantom"
