"""Cross-validated searches (`bench search --folds K`): one trial run whose objective is the mean of its K
fold runs, per-fold values logged, WilcoxonPruner judging fold scores, refusals, and replay of such a trial.

Real Optuna journal storage and a real MLflow sqlite store in the test's folder; xray-heart smoke preset.
"""

from __future__ import annotations

import statistics

import optuna
import pytest
from mlflow.tracking import MlflowClient

from bench.cli import main
from bench.errors import BenchError, ConfigError
from bench.search.backends import check_supported
from bench.search.driver import SearchSettings, prepare_search
from bench.search.optuna_backend import default_storage, make_storage, run_search
from bench.search.samplers import make_pruner
from bench.tracking import Tracker
from bench.trial import FOLD_KIND, FOLD_OF_TAG, fold_metric


def _runs(kind: str) -> list:
    tracker = Tracker("xray-heart")
    return tracker.client.search_runs([tracker.experiment_id], f"tags.`bench.kind` = '{kind}'",
                                      order_by=["attributes.start_time ASC"])


def _fold_values(client: MlflowClient, run_id: str, metric: str = "val_auroc") -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, fold_metric(metric))}


def test_two_fold_search_logs_each_fold_and_their_mean_and_replays_all_folds(workdir):
    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, folds=2, study="cv2"))
    assert summary.n_complete == 2
    client = Tracker("xray-heart").client
    trials, folds = _runs("trial"), _runs(FOLD_KIND)
    assert len(trials) == 2 and len(folds) == 4  # one run per trial, K fold runs nested under each
    parent = client.get_run(summary.parent_run_id)
    assert parent.data.tags["search.folds"] == "2"
    study = optuna.load_study(study_name="cv2", storage=make_storage(default_storage()))
    by_run = {t.user_attrs["mlflow_run_id"]: t for t in study.trials}
    for run in trials:
        run_id = run.info.run_id
        assert run.data.tags["folds"] == "2" and run.data.tags["bench.state"] == "COMPLETE"
        assert run.data.tags["mlflow.parentRunId"] == summary.parent_run_id
        per_fold = _fold_values(client, run_id)
        mine = sorted((r for r in folds if r.data.tags[FOLD_OF_TAG] == run_id), key=lambda r: r.data.tags["fold"])
        assert [r.data.tags["fold"] for r in mine] == ["0", "1"]
        assert all(r.data.tags["mlflow.parentRunId"] == run_id and r.info.status == "FINISHED" for r in mine)
        assert {"checkpoint.pt", "val_cases.json"} <= {a.path for a in client.list_artifacts(mine[0].info.run_id)}
        # the trial keeps every fold's cases with the fold id: `leaderboard --seeds` can bootstrap it (issue 20 §7)
        from bench.cases import load_cases

        trial_cases = load_cases(Tracker("xray-heart").read_artifact(run_id, "val_cases.json"))
        assert sorted(set(trial_cases.folds.tolist())) == [0, 1]
        assert trial_cases.value() == pytest.approx(run.data.metrics["val_auroc"], abs=1e-9)
        # the per-fold series is the fold runs' own objective, and the trial's objective is their mean
        assert per_fold == {int(r.data.tags["fold"]): r.data.metrics["val_auroc"] for r in mine}
        assert run.data.metrics["val_auroc"] == pytest.approx(statistics.fmean(per_fold.values()), rel=1e-12)
        assert run.data.metrics["val_heart_dice"] == pytest.approx(
            statistics.fmean(r.data.metrics["val_heart_dice"] for r in mine), rel=1e-12)
        assert by_run[run_id].value == pytest.approx(run.data.metrics["val_auroc"], rel=1e-12)
        # Optuna's steps are folds, not epochs: fold 0 reported to the pruner, the last fold never judged
        assert by_run[run_id].intermediate_values == {0: per_fold[0]}
    from bench.leaderboard import leaderboard

    assert len(leaderboard("xray-heart", study="cv2")) == 2  # fold runs are not trials

    from bench.replay import replay

    with pytest.raises(BenchError, match="cross-validated over 2 folds"):
        replay("xray-heart", run_id=summary.best_run_id, checkpoint=True)
    verdict = replay("xray-heart", run_id=summary.best_run_id)
    assert verdict.reproduced and verdict.difference == 0.0 and verdict.mode == "retrain"
    replayed = client.get_run(verdict.replay_run_id)
    assert replayed.data.tags["folds"] == "2" and replayed.data.metrics["val_auroc"] == verdict.replayed
    assert _fold_values(client, verdict.replay_run_id) == _fold_values(client, summary.best_run_id)
    assert len([r for r in _runs(FOLD_KIND) if r.data.tags[FOLD_OF_TAG] == verdict.replay_run_id]) == 2


@pytest.mark.slow  # four smoke fold trainings: 165 s on the shared 2-core box (the wiring of fold steps to
# Optuna is checked by the two-fold test's intermediate values; the refusals below are fast)
def test_wilcoxon_prunes_a_trial_worse_than_the_best_on_every_fold(workdir):
    """The study's best trial scored AUROC 1.0 on every fold; a smoke trial scores below it on each, so after
    its fourth fold the one-sided Wilcoxon p-value is 1/16 < 0.1 and it is pruned before its fifth."""
    study = optuna.create_study(study_name="wx", storage=make_storage(default_storage()), direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=1.0, intermediate_values={k: 1.0 for k in range(5)}))
    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, folds=5, pruner="wilcoxon",
                                        study="wx", resume=True))
    assert summary.n_pruned == 1 and summary.n_complete == 1  # the seeded best trial and the pruned one
    client = Tracker("xray-heart").client
    (run,) = _runs("trial")
    assert run.info.status == "KILLED" and run.data.tags["bench.state"] == "PRUNED"
    assert "pruned after fold 3 of 5" in run.data.tags["bench.reason"]
    per_fold = _fold_values(client, run.info.run_id)
    assert sorted(per_fold) == [0, 1, 2, 3] and max(per_fold.values()) < 1.0  # the folds it ran are logged
    folds = _runs(FOLD_KIND)
    assert sorted(int(r.data.tags["fold"]) for r in folds) == [0, 1, 2, 3]
    assert {r.data.tags["bench.state"] for r in folds} == {"COMPLETE"}
    pruned = optuna.load_study(study_name="wx", storage=make_storage(default_storage())).trials[1]
    assert pruned.state == optuna.trial.TrialState.PRUNED and pruned.intermediate_values == per_fold
    assert client.get_run(summary.parent_run_id).data.tags["search.pruner"] == "wilcoxon"
    assert isinstance(make_pruner("wilcoxon", 5), optuna.pruners.WilcoxonPruner)


@pytest.mark.parametrize("options, message", [
    ({"folds": 0}, "--folds must be 1"),
    ({"folds": 2, "backend": "ray"}, "needs a backend that runs cross-validated trials"),
    ({"folds": 2, "fold": 1}, "--fold picks the one validation fold"),
    ({"pruner": "wilcoxon"}, "needs --folds 5 or more, but got --folds 1"),
    ({"pruner": "wilcoxon", "folds": 3}, "needs --folds 5 or more, but got --folds 3"),
    ({"pruner": "wilcoxon", "folds": 5, "objectives": ("val_auroc", "n_weights")}, "judges one objective"),
])
def test_bad_fold_combinations_are_refused_before_any_trial(workdir, options, message):
    settings = SearchSettings(task="xray-heart", preset="smoke", **options)
    with pytest.raises(ConfigError, match=message):
        check_supported(settings)
    assert not (workdir / "mlflow.db").exists() and not (workdir / ".bench").exists()


def test_more_folds_than_the_split_has_is_one_clear_error(workdir, capsys):
    with pytest.raises(ConfigError, match="--folds must not exceed the folds of the data's split, but got 6"):
        prepare_search(SearchSettings(task="xray-heart", preset="smoke", folds=6))
    argv = ["search", "--task", "xray-heart", "--preset", "smoke", "--pruner", "wilcoxon", "--folds", "2"]
    assert main(argv) == 2
    assert "needs --folds 5 or more" in capsys.readouterr().err
