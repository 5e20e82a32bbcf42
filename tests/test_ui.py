"""`bench ui`: MLflow UI over the working folder's store, reachable on 127.0.0.1 only."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.tracking import KIND_TAG, Tracker


def _load_ui_check():
    """scripts/check_ui_browser.py (not a package): its port, wait and stop helpers serve this test too."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "check_ui_browser.py"
    spec = importlib.util.spec_from_file_location("check_ui_browser", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


UI_CHECK = _load_ui_check()


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses (hex, as in /proc/net/tcp) with a LISTEN socket on ``port``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A = TCP_LISTEN
            found.add(address)
    return found


@pytest.mark.slow
def test_bench_ui_serves_the_store_on_loopback(workdir):
    tracker = Tracker("xray-heart")
    tracker.start_run("t000", {KIND_TAG: "trial"})
    port = UI_CHECK.free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # Own session, so the UI and the server workers it spawns are stopped together by group id.
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "ui", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        UI_CHECK.wait_http(f"http://127.0.0.1:{port}/", 60.0)
        if Path("/proc/net/tcp").exists():
            assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0
        request = urllib.request.Request(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                                         data=b'{"max_results": 10}', headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert b"bench/xray-heart" in response.read()
    finally:
        out = UI_CHECK.stop_process_group(proc)
    assert f"http://127.0.0.1:{port}" in out


def test_publish_view_writes_the_leaderboard_view_of_the_latest_search(workdir):
    import json

    from bench.cli.ui import KIND_TAG as EXPERIMENT_KIND
    from bench.cli.ui import NOTE_TAG, VIEW_KEY, VIEW_TAG, publish_view, publish_views

    tracker = Tracker("xray-heart")
    assert publish_view("ct-lung") is None  # no experiment for that task: none is created
    assert tracker.client.get_experiment_by_name("bench/ct-lung") is None
    tracker.start_run("search old", {KIND_TAG: "search", "study": "old", "search.searched": "lr"})
    time.sleep(0.01)
    parent = tracker.start_run("search new", {KIND_TAG: "search", "study": "new",
                                              "search.searched": "seg_arch,guidance"})
    view = publish_views()
    assert (view.task, view.study, view.parent_run_id) == ("xray-heart", "new", parent)
    assert view.url("http://127.0.0.1:5000") == (f"http://127.0.0.1:5000/#/experiments/{tracker.experiment_id}"
                                                 f"/runs?viewStateShareKey={VIEW_KEY}")
    tags = tracker.client.get_experiment(tracker.experiment_id).tags
    state = json.loads(tags[VIEW_TAG + VIEW_KEY])
    assert state["searchFilter"] == "tags.`bench.kind` = 'trial' AND tags.study = 'new'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`val_auroc`", False)  # higher is better
    assert state["selectedColumns"][:2] == ["metrics.`val_auroc`", "metrics.`val_heart_dice`"]
    assert "params.`seg_arch`" in state["selectedColumns"] and "params.`lr`" not in state["selectedColumns"]
    assert tags[EXPERIMENT_KIND] == "custom_model_development"
    assert "study **new**" in tags[NOTE_TAG] and f"runs/{parent}" in tags[NOTE_TAG]
    tracker.client.set_experiment_tag(tracker.experiment_id, NOTE_TAG, "my own notes")
    publish_views()
    assert tracker.client.get_experiment(tracker.experiment_id).tags[NOTE_TAG] == "my own notes"


def test_search_status_reads_running_trials_stage_and_epoch_from_the_store(workdir):
    from mlflow.entities import Metric

    from bench.cli.search import running_trials_text

    since = int(time.time() * 1000) - 1
    assert running_trials_text("xray-heart", since) == ""  # no experiment yet
    tracker = Tracker("xray-heart")
    first = tracker.start_run("t004 unet/dice/none", {KIND_TAG: "trial"})
    tracker.log_params(first, {"seg_epochs": 3})
    now = int(time.time() * 1000)
    tracker.client.log_batch(first, metrics=[Metric("seg_train_loss", 0.9, now, 0),
                                             Metric("seg_train_loss", 0.7, now + 1, 1)])
    second = tracker.start_run("t005 fpn/dice/crop", {KIND_TAG: "trial"})
    done = tracker.start_run("t003 fpn/dice/crop", {KIND_TAG: "trial"})
    tracker.end(done, "COMPLETE")
    assert running_trials_text("xray-heart", since) == "running: t004 seg epoch 2/3, t005 starting"
    tracker.end(first, "COMPLETE")
    tracker.end(second, "PRUNED")
    # a cross-validated trial trains in its fold runs: the running fold is shown, not the trial's own run
    crossed = tracker.start_run("t006 fpn/dice/gate", {KIND_TAG: "trial", "folds": "3"})
    fold = tracker.start_run("t006 fpn/dice/gate fold 1", {KIND_TAG: "fold", "fold": "1"}, parent_id=crossed)
    tracker.log_params(fold, {"cls_epochs": 5})
    tracker.client.log_batch(fold, metrics=[Metric("cls_train_loss", 0.5, int(time.time() * 1000), 3)])
    assert running_trials_text("xray-heart", since) == "running: t006 fold 1 cls epoch 4/5"
    tracker.end(fold, "COMPLETE")
    tracker.end(crossed, "COMPLETE")
    assert running_trials_text("xray-heart", since) == ""


def test_prepare_search_says_what_the_data_step_does(workdir):
    from bench.search.driver import SearchSettings, prepare_search

    said: list[str] = []
    prepare_search(SearchSettings(task="xray-heart", preset="smoke"), on_stage=said.append)
    assert said[0] == "preparing data: xray-heart phantom (generated once, then cached)"
    assert said[1].startswith("data built and cached in ")
    said.clear()
    search = prepare_search(SearchSettings(task="xray-heart", preset="smoke"), on_stage=said.append)
    assert said[1].startswith("data read from the cache in ") and search.base.split_hash[:8] in said[1]
