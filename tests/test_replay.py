"""Replay: the environment difference report, checkpoint loading, and an end-to-end replay of a smoke search."""

from __future__ import annotations

import io
import json

import pytest
import torch

from bench.config import TrialConfig
from bench.errors import BenchError
from bench.replay import Difference, check_loads, diff_table, environment_diff, fresh_models, replay
from bench.tracking import environment_tags


def test_environment_diff_reports_only_what_changed():
    original = {"git_commit": "abc", "version.torch": "2.3.0", "version.mlflow": "3.1", "device": "cpu",
                "torch_threads": "2", "split_hash": "s1", "python": "3.11.9", "seed": "0"}
    now = {**original, "git_commit": "def-dirty", "version.torch": "2.4.0", "torch_threads": "4",
           "version.monai": "1.4", "seed": "1"}
    diff = environment_diff(original, now)
    assert diff == [Difference("git_commit", "abc", "def-dirty"), Difference("torch_threads", "2", "4"),
                    Difference("version.monai", "(absent)", "1.4"), Difference("version.torch", "2.3.0", "2.4.0")]
    assert environment_diff(original, dict(original)) == []
    table = diff_table(diff)
    assert "git_commit" in table and "2.3.0 -> 2.4.0" in table and "seed" not in table
    assert diff_table([]).startswith("environment: same")


def test_environment_tags_cover_the_compared_keys():
    tags = environment_tags()
    assert {"git_commit", "python", "device", "torch_threads", "version.torch", "bench.runtime.precision"} <= set(tags)


def test_checkpoint_state_dicts_load_into_fresh_models():
    config = TrialConfig(task="xray-heart", seg_arch="unet", guidance="soft_mask", task_params={"image_size": 32})
    saved = {k: m.state_dict() for k, m in fresh_models(config).items()}
    # round trip through the same safe loader replay uses
    buffer = io.BytesIO()
    torch.save(saved, buffer)
    buffer.seek(0)
    check_loads(config, torch.load(buffer, weights_only=True))
    with pytest.raises(BenchError, match="must match the config's architecture"):
        check_loads(config.replace(seg_arch="fpn"), saved)
    with pytest.raises(BenchError, match="must hold models"):
        check_loads(config, {"segmenter": saved["segmenter"]})


def test_replay_of_a_smoke_search_retrain_and_checkpoint(workdir):
    from bench.search.optuna_backend import SearchSettings, run_search

    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, seed=3, study="rp"))
    assert summary.n_complete == 1

    rescored = replay("xray-heart", checkpoint=True, register="heart-best")
    # re-scoring the logged weights needs no training and gives back the logged objective exactly
    assert rescored.mode == "checkpoint" and rescored.reproduced and rescored.difference == 0.0
    assert rescored.registered == "heart-best version 1" and rescored.seed_spread is None
    # only a reproduced replay registers: a tolerance nothing meets says why and registers nothing
    refused = replay("xray-heart", checkpoint=True, register="never", tolerance=-1.0)
    assert not refused.reproduced and refused.registered is None and "not registered" in refused.not_registered
    from bench.tracking import Tracker as _Tracker

    assert _Tracker("xray-heart").client.search_registered_models("name='never'") == []

    verdict = replay("xray-heart", run_id=summary.best_run_id)
    assert verdict.reproduced and verdict.difference == 0.0 and verdict.mode == "retrain"
    # same machine and data as the search: only git_commit (dirty worktree) or versions may differ
    assert all(d.key not in ("split_hash", "device", "python") for d in verdict.differences)

    from bench.tracking import Tracker

    tracker = Tracker("xray-heart")
    run = tracker.client.get_run(verdict.replay_run_id)
    assert run.data.tags["replay_of"] == summary.best_run_id and run.data.tags["replay_mode"] == "retrain"
    logged = json.loads(tracker.read_artifact(verdict.replay_run_id, "environment_diff.json"))
    assert logged == [d.__dict__ for d in verdict.differences]
    (version,) = tracker.client.search_model_versions("name='heart-best'")
    # the registered model is the trial's pyfunc model, logged on its run, tagged with the replay's verdict
    assert version.run_id == summary.best_run_id and version.source.endswith("/model")
    assert version.tags["replay_verdict"] == "reproduced" and version.tags["split_hash"]

    # The trial recorded its runtime policy, and replay applies the recorded one (re-scored: no retraining).
    tags = tracker.client.get_run(summary.best_run_id).data.tags
    assert tags["bench.runtime.precision"] == "fp32" and tags["bench.runtime.deterministic"] == "True"
    assert verdict.runtime == "cpu fp32, deterministic"
    tracker.set_tags(summary.best_run_id, {"bench.runtime.precision": "bf16", "bench.runtime.deterministic": "False"})
    as_recorded = replay("xray-heart", run_id=summary.best_run_id, checkpoint=True)
    assert as_recorded.runtime == "cpu bf16"
    assert tracker.client.get_run(as_recorded.replay_run_id).data.tags["bench.runtime.precision"] == "bf16"
    assert not [d for d in as_recorded.differences if d.key.startswith("bench.runtime.")]
    forced = replay("xray-heart", run_id=summary.best_run_id, checkpoint=True, deterministic=True)
    changed = {d.key: (d.original, d.now) for d in forced.differences}
    assert changed["bench.runtime.precision"] == ("bf16", "fp32")
    assert changed["bench.runtime.deterministic"] == ("False", "True") and forced.runtime == "cpu fp32, deterministic"


@pytest.mark.slow  # a search and two retrains: about 90 s on 2 cores
def test_replay_seeds_spread_and_register_from_the_cli(workdir, capsys):
    """``--seeds 2`` retrains on seeds 4 and 5 of a seed-3 trial; ``--register`` adds a registry version."""
    from bench.cli import main
    from bench.search.optuna_backend import SearchSettings, run_search
    from bench.tracking import Tracker

    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, seed=3, study="rs"))
    assert summary.n_complete == 1
    code = main(["replay", "--task", "xray-heart", "--checkpoint", "--seeds", "2", "--register", "heart-best"])
    out = capsys.readouterr().out
    assert code == 0, out  # exit code still from the same-seed (here checkpoint) replay
    assert "other seeds 4, 5: val_auroc mean" in out and "[min, max]" in out
    assert "registered the model of run" in out and "heart-best version 1" in out

    tracker = Tracker("xray-heart")
    (replay_run,) = tracker.client.search_runs([tracker.experiment_id], "tags.replay_of != ''")
    metrics, tags = replay_run.data.metrics, replay_run.data.tags
    assert metrics["seeds_min"] <= metrics["seeds_mean"] <= metrics["seeds_max"]
    assert tags["replay_seeds"] == "4,5" and tags["replay_original_within_seeds"] in ("True", "False")
    within = metrics["seeds_min"] <= summary.best_value <= metrics["seeds_max"]
    assert tags["replay_original_within_seeds"] == str(within)
    history = tracker.client.get_metric_history(replay_run.info.run_id, "seed_val_auroc")
    assert sorted(m.step for m in history) == [4, 5]

    (version,) = tracker.client.search_model_versions("name='heart-best'")
    # the registered model is the trial's pyfunc model, logged on its run, tagged with the replay's verdict
    assert version.run_id == summary.best_run_id and version.source.endswith("/model")
    assert version.tags["replay_verdict"] == "reproduced" and version.tags["split_hash"]


def test_replay_rejects_negative_seeds_and_register_without_checkpoint(workdir):
    from bench.predict.register import register
    from bench.tracking import KIND_TAG, Tracker

    with pytest.raises(BenchError, match="--seeds must be 0 or more, but got -1"):
        replay("xray-heart", run_id="x", seeds=-1)
    tracker = Tracker("xray-heart")
    run_id = tracker.start_run("t", {KIND_TAG: "trial"})
    with pytest.raises(BenchError, match="must have logged checkpoint.pt"):
        register("xray-heart", "m", run_id=run_id)


def test_environment_diff_leaves_out_what_happened_under_the_policy():
    original = {"bench.runtime.precision": "fp32", "bench.runtime.data": "host", "bench.runtime.data_bytes": "123"}
    now = {"bench.runtime.precision": "fp32"}  # a re-scored checkpoint places no data
    assert environment_diff(original, now) == []
    assert environment_diff(original, {**now, "bench.runtime.precision": "bf16"}) == [
        Difference("bench.runtime.precision", "fp32", "bf16")]
