"""The stage cache through the real lifecycle: comparisons and replays on a real MLflow store, cache on vs
off, value for value (every final metric, every per-epoch curve, the results table), and how the stages
were scheduled (bench.stage.* tags, the comparison's count of trainings saved)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from bench.compare import compare
from bench.compare.plan import Job, StageQueue, plan_jobs, stage_order
from bench.config import TrialConfig
from bench.tasks import TASKS

TIME_DEPENDENT = {"trial_seconds"}  # the real time: the one metric that may differ


def test_stage_order_puts_one_trainer_per_shared_stage_first():
    spec = TASKS.get("ct-lung")
    base = TrialConfig(task="ct-lung", **spec.preset("smoke").config)
    arms = {"dice_ce": base.replace(seg_loss="dice_ce"), "dice_focal": base.replace(seg_loss="dice_focal"),
            "small": base.replace(seg_loss="dice_ce", batch_size=2)}  # batch_size is a declared field of the lung stage
    jobs = plan_jobs(list(arms), 2, [0, 1])

    def config_of(job: Job) -> TrialConfig:
        return arms[job.arm].replace(fold=job.fold, seed=job.seed)

    ordered, saved = stage_order(jobs, config_of, spec.stages)
    assert sorted(ordered, key=jobs.index) == jobs  # the same jobs, reordered
    first = ordered[:8]  # 2 folds x 2 seeds x {the dice arms' shared stage, the small-batch arm's own}
    assert {(j.fold, j.seed) for j in first if j.arm == "dice_ce"} == {(0, 0), (1, 0), (0, 1), (1, 1)}
    assert {j.arm for j in first} == {"dice_ce", "small"} and saved == 4  # every dice_focal job loads
    assert [j.arm for j in ordered[8:]] == ["dice_focal"] * 4
    assert stage_order(jobs, config_of, ()) == (jobs, 0)  # a task without stages keeps the plan's order
    jobs_left = StageQueue(ordered, config_of, spec.stages)
    assert [jobs_left.take(wait=False) for _ in range(8)] == first  # every stage trains at once
    assert jobs_left.take(wait=False) is None  # each dice_focal job waits for its dice_ce job's lung stage
    jobs_left.done(Job("dice_ce", 1, 1))
    assert jobs_left.take(wait=False) == Job("dice_focal", 1, 1)


def _runs(uri: str, name: str) -> dict[tuple[str, str, str], object]:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("bench/ct-lung")
    found = client.search_runs([exp.experiment_id], f"tags.comparison = '{name}' AND tags.`bench.kind` = 'compare'",
                               max_results=1000)
    return {(r.data.tags["arm"], r.data.tags["fold"], r.data.tags["seed"]): r for r in found}


def _curves(uri: str, run) -> dict[str, list[tuple[int, float]]]:
    client = MlflowClient(uri)
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            for key in run.data.metrics if key not in TIME_DEPENDENT}


def _finals(run) -> dict[str, float]:
    return {k: v for k, v in run.data.metrics.items() if k not in TIME_DEPENDENT}


def _table(result) -> pd.DataFrame:
    return result.table.drop(columns=[c for c in result.table.columns if "hour" in c or "second" in c])


@pytest.mark.slow  # 16 ct-lung smoke trials: about 4 min on a loaded 2-core box
def test_ct_lung_seg_loss_comparison_is_the_same_with_the_stage_cache_on_and_off(workdir):
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    common = {"task": "ct-lung", "dimension": "seg_loss", "arms": ["dice_ce", "dice_focal"], "baseline": "dice_ce",
              "folds": 2, "seeds": 2, "preset": "smoke", "resamples": 200}
    on = compare(**common, name="cache-on")
    off = compare(**common, name="cache-off", stage_cache=False)
    assert (on.stages_trained, on.stages_loaded) == (4, 4)  # one lung stage per fold x seed, loaded by the other arm
    assert (off.stages_trained, off.stages_loaded) == (8, 0)
    runs_on, runs_off = _runs(uri, "cache-on"), _runs(uri, "cache-off")
    assert set(runs_on) == set(runs_off) and len(runs_on) == 8
    for key, run in runs_on.items():
        other = runs_off[key]
        assert run.data.tags["bench.stage.lung"] == ("trained" if key[0] == "dice_ce" else "loaded")
        assert other.data.tags["bench.stage.lung"] == "trained"
        assert _finals(run) == _finals(other), key  # every metric, epochs_trained included, value for value
        assert _curves(uri, run) == _curves(uri, other), key  # the lung curve is replayed into loading runs
        assert run.data.params == other.data.params
    pd.testing.assert_frame_equal(_table(on), _table(off))  # every arm's value, difference, CI, p, verdict
    assert on.verdicts == off.verdicts


@pytest.mark.slow  # 4 ct-lung smoke trials in 2 worker processes
def test_two_workers_train_each_shared_stage_once(workdir):
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result = compare(task="ct-lung", dimension="seg_loss", arms=["dice_ce", "dice_focal"], baseline="dice_ce", folds=2,
                     seeds=1, preset="smoke", resamples=100, workers=2, name="two-workers")
    assert (result.stages_trained, result.stages_loaded) == (2, 2)
    tags = {k: r.data.tags["bench.stage.lung"] for k, r in _runs(uri, "two-workers").items()}
    assert sorted(tags.values()) == ["loaded", "loaded", "trained", "trained"]
    assert {k[1] for k, v in tags.items() if v == "trained"} == {"0", "1"}  # one per fold


@pytest.mark.slow  # 3 ct-lung smoke trials
def test_replay_trains_every_stage_unless_told(workdir):
    from bench.replay import replay
    from bench.tracking import Tracker
    from bench.trial import tracked_trial

    tracker = Tracker("ct-lung")
    config = TrialConfig(task="ct-lung", **TASKS.get("ct-lung").preset("smoke").config)
    original = tracked_trial(tracker, config, name="original", parent_run_id=None, tags={})
    assert original.result.tags["bench.stage.lung"] == "trained"
    default = replay("ct-lung", run_id=original.run_id)
    reused = replay("ct-lung", run_id=original.run_id, stage_cache=True)
    client = MlflowClient(tracker.uri)
    assert client.get_run(default.replay_run_id).data.tags["bench.stage.lung"] == "trained"
    assert client.get_run(reused.replay_run_id).data.tags["bench.stage.lung"] == "loaded"
    assert default.reproduced and reused.reproduced and default.difference == reused.difference == 0.0


@pytest.mark.slow  # a local Ray (~20 s) and 4 ct-lung smoke trials
def test_ray_holds_the_reusers_until_their_stage_is_trained(workdir):
    uri = f"sqlite:///{workdir / 'mlflow.db'}"
    result = compare(task="ct-lung", dimension="seg_loss", arms=["dice_ce", "dice_focal"], baseline="dice_ce", folds=2,
                     seeds=1, preset="smoke", resamples=100, backend="ray", cpus_per_trial=1.0, name="on-ray")
    assert (result.stages_trained, result.stages_loaded) == (2, 2)
    runs = _runs(uri, "on-ray")
    assert {k: r.data.tags["bench.stage.lung"] for k, r in runs.items()} == {
        ("dice_ce", "0", "0"): "trained", ("dice_ce", "1", "0"): "trained",
        ("dice_focal", "0", "0"): "loaded", ("dice_focal", "1", "0"): "loaded"}
    for fold in "01":  # each reuser started after its trainer ended: it never held a Ray slot on the lock
        trainer, reuser = runs[("dice_ce", fold, "0")], runs[("dice_focal", fold, "0")]
        assert reuser.info.start_time >= trainer.info.end_time


@pytest.mark.slow  # two 2-trial ct-lung smoke searches
def test_search_loads_the_shared_stage_unless_told_not_to(workdir):
    from bench.cli import main

    assert main(["search", "--task", "ct-lung", "--preset", "smoke", "--trials", "2", "--study", "on"]) == 0
    assert main(["search", "--task", "ct-lung", "--preset", "smoke", "--trials", "2", "--study", "off",
                 "--stage-cache", "off"]) == 0
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/ct-lung")
    tags = {}
    for study in ("on", "off"):
        runs = client.search_runs([exp.experiment_id], f"tags.`bench.kind` = 'trial' AND tags.study = '{study}'")
        tags[study] = sorted(r.data.tags.get("bench.stage.lung") for r in runs)
    # The second study's trials train the stage although the first study stored it.
    assert tags == {"on": ["loaded", "trained"], "off": ["trained", "trained"]}


@pytest.mark.slow  # 6 xray-heart smoke trials: 4 min on a loaded 2-core box
def test_xray_heart_guidance_arms_share_the_segmenter_value_for_value(workdir):
    import json

    from bench import stages
    from bench.trial import run_trial

    class Logs:
        def __init__(self):
            self.logged = []

        def log(self, metrics, step):
            self.logged.append((step, dict(metrics)))

        def report(self, objective, step):
            return False

    base = TrialConfig(task="xray-heart", **{**TASKS.get("xray-heart").preset("smoke").config, "max_train_cases": 12})
    arms = ("none", "soft_mask", "channel")  # unguided, guided by the mask, mask as an extra input channel
    on, off = {}, {}
    for arm in arms:
        logs = Logs()
        on[arm] = (run_trial(base.replace(guidance=arm), logs), logs.logged)
    with stages.switched(False):
        for arm in reversed(arms):
            logs = Logs()
            off[arm] = (run_trial(base.replace(guidance=arm), logs), logs.logged)
    assert [on[a][0].tags["bench.stage.segmenter"] for a in arms] == ["trained", "loaded", "loaded"]
    assert {off[a][0].tags["bench.stage.segmenter"] for a in arms} == {"trained"}
    for arm in arms:
        (a, logs_a), (b, logs_b) = on[arm], off[arm]
        assert json.dumps(a.metrics, sort_keys=True) == json.dumps(b.metrics, sort_keys=True), arm  # NaN-safe
        assert a.history == b.history and logs_a == logs_b, arm  # the segmenter's epochs replayed into the run
        for name, sd in a.state_dicts.items():
            assert all(torch.equal(v, b.state_dicts[name][k]) for k, v in sd.items()), (arm, name)
