"""Tracking artifacts of a finished trial: the predictions overlay PNG (and what else a trial run carries)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from bench.errors import BenchError
from bench.report import overlay_png
from bench.tracking import Tracker


def test_overlay_png_draws_masks_and_saliency():
    rng = np.random.default_rng(0)
    images = rng.standard_normal((4, 1, 32, 32))
    truth = np.zeros((4, 1, 32, 32))
    truth[:, :, 8:20, 8:20] = 1
    pred = np.zeros((4, 1, 32, 32))
    pred[:, :, 10:22, 9:21] = 1
    with_saliency = Image.open(io.BytesIO(overlay_png(images, truth, pred, np.abs(images), ["a", "b", "c", "d"])))
    without = Image.open(io.BytesIO(overlay_png(images, truth, pred)))
    assert with_saliency.format == "PNG" and with_saliency.size[1] > without.size[1]  # second row of heat maps
    with pytest.raises(BenchError, match="same non-zero number"):
        overlay_png(images, truth[:3], pred)


@pytest.fixture
def smoke_search(workdir):
    from bench.search.optuna_backend import SearchSettings, run_search

    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, seed=1, study="tr"))
    assert summary.n_complete == 1
    return summary


def test_finished_trial_logs_overlay_png(smoke_search):
    tracker = Tracker("xray-heart")
    run_id = smoke_search.best_run_id
    assert "overlay.png" in [a.path for a in tracker.client.list_artifacts(run_id)]
    png = Image.open(io.BytesIO(tracker.read_artifact(run_id, "overlay.png")))
    png.verify()
    assert png.format == "PNG" and png.size[0] > 0 and png.size[1] > 0


def test_reading_artifacts_leaves_no_downloaded_copy(smoke_search, tmp_path, monkeypatch):
    """A leaderboard or comparison reads one artifact per run and replay a checkpoint of tens of MB: none of
    the downloaded copies may stay behind in the temp folder."""
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    tracker = Tracker("xray-heart")
    run_id = smoke_search.best_run_id
    assert tracker.read_artifact(run_id, "checkpoint.pt")[:2] == b"PK"  # torch.save writes a zip
    tracker.load_config(run_id)
    assert list(scratch.iterdir()) == []


def test_trial_run_carries_its_dataset_input(smoke_search):
    tracker = Tracker("xray-heart")
    run = tracker.client.get_run(smoke_search.best_run_id)
    (found,) = run.inputs.dataset_inputs
    split = run.data.tags["split_hash"]
    assert found.dataset.name == "phantom" and found.dataset.digest == split[:36]
    assert "builtin:phantom" in found.dataset.source
    tags = {t.key: t.value for t in found.tags}
    assert tags["mlflow.data.context"] == "train" and tags["bench.split_sha256"] == split


def test_log_dataset_of_a_folder_and_without_split(workdir):
    from bench.config import TrialConfig
    from bench.tracking import KIND_TAG

    tracker = Tracker("xray-heart")
    run_id = tracker.start_run("t", {KIND_TAG: "trial"})
    config = TrialConfig(task="xray-heart", task_params={"image_size": 32})
    assert not tracker.log_dataset(run_id, config)  # no split known yet: nothing to record
    folder = workdir / "jsrt-export"
    folder.mkdir()
    assert tracker.log_dataset(run_id, config.replace(data=str(folder), data_format="png", split_hash="ab" * 32))
    (found,) = tracker.client.get_run(run_id).inputs.dataset_inputs
    assert found.dataset.name == "jsrt-export" and found.dataset.digest == ("ab" * 32)[:36]
    assert str(folder) in found.dataset.source


def test_finished_trial_logs_epochs_trained(smoke_search):
    tracker = Tracker("xray-heart")
    run = tracker.client.get_run(smoke_search.best_run_id)
    # smoke preset: 1 segmentation epoch + 2 classifier epochs, each reported once
    assert run.data.metrics["epochs_trained"] == 3


def test_end_logs_the_epochs_a_pruned_run_reported(workdir):
    from bench.tracking import MlflowReporter

    tracker = Tracker("xray-heart")
    run_id = tracker.start_run("t000", {})
    reporter = MlflowReporter(tracker, run_id)
    for epoch in range(2):
        reporter.log({"val_auroc": 0.5 + epoch / 10}, step=epoch)
    tracker.end(run_id, "PRUNED", "pruned at epoch 1")
    run = tracker.client.get_run(run_id)
    assert run.data.metrics["epochs_trained"] == 2 and run.info.status == "KILLED"
    quiet = tracker.start_run("t001", {})
    tracker.end(quiet, "FAIL", "failed before its first epoch")
    assert "epochs_trained" not in tracker.client.get_run(quiet).data.metrics


@pytest.mark.parametrize(("state", "reason", "finished"), [
    ("COMPLETE", None, True), ("PRUNED", "median pruner", True), ("FAIL", "loss is NaN", True),
    ("FAIL", None, False), ("FAIL", "", False), ("FAIL", "killed", False), ("FAIL", "interrupted", False),
    ("RUNNING", None, False), (None, None, False),
])
def test_one_rule_for_a_finished_run(state, reason, finished):
    from bench.tracking import ended_on_its_own

    assert ended_on_its_own(state, reason) is finished


def test_close_open_sweeps_only_open_runs_that_no_live_process_owns(workdir):
    tracker = Tracker("xray-heart")
    ids = {name: tracker.start_run(name, {"study": "s", "bench.kind": "trial"}) for name in ("dead", "alive", "done")}
    other = tracker.start_run("elsewhere", {"study": "t", "bench.kind": "trial"})
    tracker.end(ids["done"], "COMPLETE")
    closed = tracker.close_open("tags.study = 's'", alive=lambda run: run.info.run_id == ids["alive"])
    assert [r.info.run_id for r in closed] == [ids["dead"]]
    status = {n: tracker.client.get_run(i) for n, i in {**ids, "elsewhere": other}.items()}
    assert status["dead"].info.status == "FAILED" and status["dead"].data.tags["bench.reason"] == "killed"
    assert status["done"].info.status == "FINISHED" and status["done"].data.tags["bench.state"] == "COMPLETE"
    assert status["alive"].info.status == status["elsewhere"].info.status == "RUNNING"


def test_closing_never_leaves_a_run_open(workdir):
    tracker = Tracker("xray-heart")

    def closed(body) -> tuple[str, str, str]:
        run_id = tracker.start_run("parent", {"bench.kind": "search"})
        try:
            with tracker.closing(run_id):
                body(run_id)
        except (ValueError, KeyboardInterrupt):
            pass
        run = tracker.client.get_run(run_id)
        return run.info.status, run.data.tags.get("bench.state"), run.data.tags.get("bench.reason")

    def fails(_):
        raise ValueError("bad value")

    def stopped(_):
        raise KeyboardInterrupt

    assert closed(lambda _: None) == ("FINISHED", "COMPLETE", None)
    assert closed(fails) == ("FAILED", "FAIL", "ValueError: bad value")
    assert closed(stopped) == ("FAILED", "FAIL", "interrupted")
    assert closed(lambda run_id: tracker.end(run_id, "FAIL", "no trial finished")) == (
        "FAILED", "FAIL", "no trial finished")
    # every run kind closes by this rule: a pruned trial ends PRUNED, a Ray trial its scheduler stops by its state
    from bench.errors import TrialPruned

    def pruned(_):
        raise TrialPruned("pruned at epoch 2")

    def closed_as(body, **options) -> tuple[str, str, str]:
        run_id = tracker.start_run("trial", {"bench.kind": "trial"})
        with pytest.raises((TrialPruned, KeyboardInterrupt)), tracker.closing(run_id, **options):
            body(run_id)
        run = tracker.client.get_run(run_id)
        return run.info.status, run.data.tags.get("bench.state"), run.data.tags.get("bench.reason")

    assert closed_as(pruned) == ("KILLED", "PRUNED", "pruned at epoch 2")
    assert closed_as(stopped, interrupted=("PRUNED", "stopped")) == ("KILLED", "PRUNED", "stopped")


def test_a_complete_close_the_store_refuses_is_tried_as_fail(workdir, monkeypatch):
    tracker = Tracker("xray-heart")
    run_id = tracker.start_run("trial", {"bench.kind": "trial"})
    end = Tracker.end

    def refuses_complete(self, run, state, reason=None):
        if state == "COMPLETE":
            raise OSError("store is read-only")
        end(self, run, state, reason)

    monkeypatch.setattr(Tracker, "end", refuses_complete)
    with pytest.raises(OSError), tracker.closing(run_id):
        pass
    run = tracker.client.get_run(run_id)
    assert (run.info.status, run.data.tags["bench.state"]) == ("FAILED", "FAIL")
    assert run.data.tags["bench.reason"] == "OSError: store is read-only"
