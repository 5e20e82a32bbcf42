"""Data from the cache in batches (issue 22): rows read by offset, streamed = resident, loader workers end with
the trial, and a data set larger than a memory cap trains."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from bench import runtime
from bench.config import TrialConfig
from bench.data.rows import NpyColumn, Rows
from bench.errors import DataError, TrialPruned
from bench.trial import run_trial


def _ct_smoke() -> dict:
    from bench.tasks import TASKS

    return dict(TASKS.get("ct-lung").preset("smoke").config)


SMOKE = {"task": "xray-heart", "max_train_cases": 16, "seg_epochs": 1, "batch_size": 8,
         "task_params": {"image_size": 32, "cls_epochs": 1}}


def _policy(placement: str, workers: int = 0) -> runtime.Runtime:
    return dataclasses.replace(runtime.Runtime.choose(), data_placement=placement, loader_workers=workers)


def test_rows_read_by_offset_match_the_array_and_survive_pickling(tmp_path):
    array = np.random.default_rng(0).standard_normal((7, 1, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", array)
    column = NpyColumn(tmp_path / "x.npy", [5, 1, 6])
    assert np.array_equal(column.take([2, 0]), array[[6, 5]])
    rows = Rows({"x": column, "y": np.array([0, 1, 2])}, dtypes={"y": torch.float32})
    again = pickle.loads(pickle.dumps(rows))  # what a spawned loader worker receives: a path, not the data
    assert len(pickle.dumps(rows)) < array.nbytes and np.array_equal(again[[1]]["x"].numpy(), array[[1]])
    assert again[[1, 2]]["y"].dtype == torch.float32 and rows.in_memory()[[0]]["x"].equal(rows[[0]]["x"])
    with pytest.raises(DataError, match="per_case reads columns of one value per case"):
        rows.per_case("x")
    (tmp_path / "x.npy").write_bytes((tmp_path / "x.npy").read_bytes()[:-400])  # truncated cache
    with pytest.raises(DataError, match="truncated"):
        column.take([2])


def test_the_policy_places_data_by_measured_size():
    runtime.take_notes()
    assert runtime.place_data(10**6, runtime.Runtime()) == "host"
    assert runtime.place_data(runtime.HOST_RESIDENT_MAX_BYTES + 1, runtime.Runtime()) == "stream"
    assert runtime.place_data(10**6, _policy("stream")) == "stream"
    gpu = runtime.Runtime(device="cuda", resident_data=True)
    assert runtime.place_data(10**6, gpu) == "device"
    assert runtime.take_notes() == {"bench.runtime.data": "device", "bench.runtime.data_bytes": "1000000"}


def test_streamed_and_resident_trials_give_the_same_metrics():
    config = TrialConfig(**SMOKE)
    results = {}
    for placement, workers in (("resident", 0), ("stream", 2)):
        with runtime.using(_policy(placement, workers)):
            results[placement, workers] = run_trial(config)
    assert results["resident", 0].tags["bench.runtime.data"] == "host"
    assert results["stream", 2].tags["bench.runtime.data"] == "stream"
    reference = results["resident", 0].metrics
    for result in results.values():
        assert result.metrics.keys() == reference.keys()
        np.testing.assert_array_equal(np.array(list(result.metrics.values())), np.array(list(reference.values())))


class _PruneAtOnce:
    def log(self, metrics, step):
        pass

    def report(self, objective, step):
        return True


def test_loader_workers_end_with_a_pruned_trial():
    with runtime.using(_policy("stream", 2)), pytest.raises(TrialPruned):
        run_trial(TrialConfig(**SMOKE), _PruneAtOnce())
    assert multiprocessing.active_children() == []


def test_loader_workers_end_with_a_trial_that_fails_mid_epoch(monkeypatch):
    """The step raises while two workers are reading ahead; they are gone as soon as run_trial has raised,
    though the traceback (which references the loader's iterator) is still alive."""
    seen = []

    def failing_step(self, compute):
        seen.append(len(multiprocessing.active_children()))
        raise RuntimeError("step failed on purpose")

    monkeypatch.setattr(runtime.TrainStep, "__call__", failing_step)
    with runtime.using(_policy("stream", 2)), pytest.raises(RuntimeError, match="on purpose") as failed:
        run_trial(TrialConfig(**SMOKE))
    assert seen == [2]  # the workers were running when the trial failed
    assert failed.traceback and multiprocessing.active_children() == []


# Training under a cap on the data segment (RLIMIT_DATA: heap and anonymous mappings; reading the cache by
# offset maps nothing) set 64 MB above what the process holds once torch is imported, on a 256 MB column of
# images: streamed, the loop holds a batch (32 x 64 KB) and a one-layer model; gathered into memory, the column
# alone is four times the cap. A whole trial's memory at scale is measured by `bench perf --suite scale-data`.
_CAPPED = textwrap.dedent("""
    import json, resource, sys
    import numpy as np, torch
    from bench.data.rows import NpyColumn, Rows
    from bench.train import fit
    path, mode = sys.argv[1], sys.argv[2]
    rows = Rows({"image": NpyColumn(path)})
    def train(data):
        torch.manual_seed(0)
        model, losses = torch.nn.Conv2d(1, 1, 3, padding=1), []
        fit(model, lambda m, b: m(b["image"]).square().mean(), data, epochs=1, batch_size=32, lr=1e-3,
            optimiser="sgd", seed=0, on_epoch=lambda epoch, loss: losses.append(loss))
        return losses[0]
    train(Rows({"image": rows[list(range(64))]["image"]}))  # warm-up: lazy imports, thread pools, allocator
    used = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmData:")) * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (used + 64 * 2**20, resource.RLIM_INFINITY))
    try:
        loss = train(rows if mode == "stream" else rows.in_memory())
        print(json.dumps({"ok": True, "loss": loss}))
    except (MemoryError, RuntimeError) as exc:  # numpy: MemoryError; torch: RuntimeError (can't allocate)
        print(json.dumps({"ok": False, "error": str(exc)[:200]}))
""")


def test_a_data_set_larger_than_the_memory_cap_trains(tmp_path):
    path = tmp_path / "image.npy"
    images = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(4096, 1, 128, 128))
    for start in range(0, len(images), 512):  # written in slices: the test itself stays small
        images[start:start + 512] = np.random.default_rng(start).standard_normal((512, 1, 128, 128))
    images.flush()
    del images

    def train(mode: str) -> dict:
        proc = subprocess.run([sys.executable, "-c", _CAPPED, str(path), mode], capture_output=True, text=True,
                              timeout=600, check=False)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return json.loads(proc.stdout.strip().splitlines()[-1])

    assert path.stat().st_size > 4 * 64 * 2**20  # the data set is four times the cap
    streamed = train("stream")
    assert streamed["ok"] and np.isfinite(streamed["loss"]), streamed
    resident = train("memory")
    assert not resident["ok"], resident  # the same set gathered into memory does not fit under the cap


def test_ct_lung_volumes_mapped_from_the_cache_give_the_metrics_of_volumes_in_memory():
    config = TrialConfig(task="ct-lung", **_ct_smoke())
    results = {}
    for placement in ("resident", "stream"):
        with runtime.using(_policy(placement)):
            results[placement] = run_trial(config)
    assert results["resident"].tags["bench.runtime.data"] == "host"
    assert results["stream"].tags["bench.runtime.data"] == "stream"
    assert json.dumps(results["resident"].metrics, sort_keys=True) == json.dumps(results["stream"].metrics,
                                                                                 sort_keys=True)  # NaN-safe


_KILLED = textwrap.dedent("""
    import dataclasses, multiprocessing, sys, threading
    from bench import runtime
    from bench.config import TrialConfig
    from bench.trial import run_trial
    pids_file = sys.argv[1]

    def step_then_hang(self, compute):  # the first step: workers are reading ahead; say who they are, then wait
        with open(pids_file + ".tmp", "w") as fh:
            fh.write(" ".join(str(p.pid) for p in multiprocessing.active_children()))
        import os
        os.replace(pids_file + ".tmp", pids_file)
        threading.Event().wait()

    runtime.TrainStep.__call__ = step_then_hang
    runtime.activate(dataclasses.replace(runtime.Runtime.choose(), data_placement="stream", loader_workers=2))
    run_trial(TrialConfig(**dict(task="xray-heart", max_train_cases=16, seg_epochs=1, batch_size=8,
                                 task_params={"image_size": 32, "cls_epochs": 1})))
""")


@pytest.mark.slow  # a fresh process imports torch and builds the phantom cache; the workers notice within ~5 s
def test_loader_workers_end_after_kill_9_of_the_trial_process(tmp_path):
    import os
    import signal
    import time

    pids_file = tmp_path / "pids"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED, str(pids_file)], env={**os.environ,
                            "BENCH_CACHE": str(tmp_path / "cache")}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 600
        while not pids_file.exists():  # the trial's own signal, not a guessed delay
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        workers = [int(p) for p in pids_file.read_text().split()]
        assert len(workers) == 2
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

        def alive(pid: int) -> bool:
            try:
                return "Z" not in open(f"/proc/{pid}/stat").read().split(")")[1].split()[0]  # zombies are gone
            except FileNotFoundError:
                return False

        deadline = time.monotonic() + 60  # torch's workers check for their parent every 5 s
        while any(alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(p) for p in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
