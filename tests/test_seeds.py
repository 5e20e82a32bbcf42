"""`bench search --objectives/--seeds` on the smoke preset, and `bench leaderboard --seeds/--pareto`."""

from __future__ import annotations

import numpy as np
import optuna
import pytest

from bench.cases import CASE_FILE, load_cases
from bench.leaderboard import leaderboard, seed_summary
from bench.metrics import macro_auroc
from bench.pareto import pareto_table
from bench.search.optuna_backend import SearchSettings, make_storage, run_search
from bench.search.seeds import REPEAT_TAG, repeat_top
from bench.tracking import KIND_TAG, Tracker


def test_multi_objective_search_then_seed_repeats(workdir, capsys):
    settings = SearchSettings(task="xray-heart", preset="smoke", trials=2, sampler="nsga2", study="mo",
                              objectives=("val_auroc", "n_weights"))
    summary = run_search(settings)
    assert summary.n_complete == 2 and summary.pareto_run_ids
    study = optuna.load_study(study_name="mo", storage=make_storage(summary.storage))
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    tracker = Tracker("xray-heart")
    parent = tracker.client.get_run(summary.parent_run_id)
    assert parent.data.tags["search.pruner"] == "none"  # Optuna cannot prune multi-objective trials
    table = leaderboard("xray-heart", study="mo")
    assert {"n_weights", "trial_seconds"} <= set(table.columns) and (table["n_weights"] > 0).all()
    for row in table.itertuples():  # the study's values are the logged metrics
        trial = next(t for t in study.trials if t.user_attrs["mlflow_run_id"] == row.run_id)
        assert trial.values == [pytest.approx(row.val_auroc), pytest.approx(row.n_weights)]
    assert set(pareto_table(table, ["val_auroc", "n_weights"])["run_id"]) == set(summary.pareto_run_ids)

    # seed repeats: top 1 config on seeds 0 (original) + 1, 2
    repeats = repeat_top("xray-heart", "mo", summary.parent_run_id, seeds=3, top=1)
    assert [r.seed for r in repeats] == [1, 2] and {r.state for r in repeats} == {"COMPLETE"}
    best = table.iloc[0]
    for r in repeats:
        run = tracker.client.get_run(r.run_id)
        assert run.data.tags[KIND_TAG] == "repeat" and run.data.tags[REPEAT_TAG] == best["run_id"]
        assert run.data.tags["mlflow.parentRunId"] == summary.parent_run_id and run.data.params["seed"] == str(r.seed)
    assert len(leaderboard("xray-heart", study="mo")) == 2  # repeats stay out of the trial ranking

    summary_table = seed_summary("xray-heart", study="mo", resamples=300)
    (row,) = summary_table.itertuples()
    assert row.run_id == best["run_id"] and row.n_seeds == 3 and row.seeds == "0,1,2"
    sets = [load_cases(tracker.read_artifact(rid, CASE_FILE)) for rid in [best["run_id"]] +
            [r.run_id for r in repeats]]
    logged = [best["val_auroc"]] + [r.objective for r in repeats]
    for cases, value in zip(sets, logged):  # val_cases.json recomputes the logged objective exactly
        assert cases.value() == pytest.approx(value, abs=1e-12)
        # scores, labels, per-case heart Dice and anonymous patient numbers (0, 1, ... in order), no identifiers
        assert set(cases.fields) == {"probs", "labels", "val_heart_dice", "groups"}
        groups = cases.fields["groups"]
        assert groups.dtype.kind == "i" and groups[0] == 0 and (np.diff(np.maximum.accumulate(groups)) <= 1).all()
        assert cases.per_case_dice()[0] == "val_heart_dice" and np.all((cases.per_case_dice()[1] >= 0) &
                                                                        (cases.per_case_dice()[1] <= 1))
    assert row.mean == pytest.approx(np.mean(logged)) and row.n_cases == sets[0].n
    # reference: the pooled formula with sklearn-based macro AUROC, resample by resample
    from bench.cases import stratified_draws

    idx = stratified_draws(sets[0].fields["labels"], 300, 0)  # cases drawn within their class
    theta = np.array([np.mean([macro_auroc(c.fields["probs"][i], c.fields["labels"][i]) for c in sets])
                      for i in idx])
    lo, hi = np.quantile(theta[np.isfinite(theta)], [0.025, 0.975])
    assert (row.ci95_low, row.ci95_high) == (pytest.approx(lo), pytest.approx(hi))

    from bench.cli import main

    capsys.readouterr()
    assert main(["leaderboard", "--task", "xray-heart", "--seeds", "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("rank,config,run_id,n_seeds,seeds,mean,ci95_low,ci95_high")
    assert main(["leaderboard", "--task", "xray-heart", "--pareto", "val_auroc,n_weights", "--format", "csv"]) == 0
    assert best["run_id"] in capsys.readouterr().out
