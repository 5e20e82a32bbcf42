"""The stage cache (bench.stages) on a tiny real stage: a torch network trained a few steps, its predictions
and per-epoch losses. Real files, real locks, real processes; no mocks."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import stages
from bench.config import TrialConfig
from bench.errors import BenchWarning, ConfigError

STAGE = stages.Stage("xray-heart", "toy", "1", fields=("lr", "batch_size"), task_params=("width",))


def config(**changes) -> TrialConfig:
    return TrialConfig(task="xray-heart", **{"seed": 3, "fold": 1, "lr": 0.01, **changes})


class Recorder:
    def __init__(self):
        self.logged: list[tuple[int, dict]] = []

    def log(self, metrics, step):
        self.logged.append((step, dict(metrics)))

    def report(self, objective, step):
        return False


def toy_train(counter: Path | None = None):
    """A stage that draws from every global stream (torch init and dropout, NumPy, Python) like real ones."""

    def train(log):
        if counter is not None:
            with counter.open("a") as fh:
                fh.write(f"{os.getpid()}\n")
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 1))
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        x = torch.randn(16, 4)
        for epoch in range(3):
            loss = net(x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            log({"toy_loss": loss.item()}, epoch)
        np.random.rand(int(random.random() * 5) + 1)
        with torch.no_grad():
            pred = (net.eval()(x) > 0).numpy().astype(np.uint8)
        return {"net": net.state_dict()}, {"pred.val": pred}

    return train


def run(cfg=None, counter=None, reporter=None, data_key="data-1"):
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    reporter = reporter or Recorder()
    result = stages.run_stage(STAGE, cfg or config(), data_key=data_key, split_hash="split-1", reporter=reporter,
                              train=toy_train(counter), params={"width": 8})
    after = (torch.rand(3).tolist(), np.random.rand(2).tolist(), random.random())  # what a later stage draws
    return result, reporter, after, stages.take_outcomes()


def same(a: stages.StageResult, b: stages.StageResult) -> None:
    assert set(a.weights) == set(b.weights)
    for name in a.weights:
        for k, v in a.weights[name].items():
            assert torch.equal(v, b.weights[name][k]), k
    assert set(a.arrays) == set(b.arrays) and all(np.array_equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    assert a.epochs == b.epochs


def test_trained_then_loaded_value_for_value(workdir):
    first, logs1, after1, tags1 = run()
    second, logs2, after2, tags2 = run()
    assert tags1 == {"bench.stage.toy": "trained"} and tags2 == {"bench.stage.toy": "loaded"}
    assert not first.loaded and second.loaded and first.key == second.key
    same(first, second)
    assert logs1.logged == logs2.logged and len(logs1.logged) == 3  # the epochs are replayed into the run
    assert after1 == after2  # the random state after the stage is restored: later stages draw the same numbers
    with stages.switched(False):
        off, logs3, after3, tags3 = run()
    assert tags3 == {"bench.stage.toy": "trained"} and not off.loaded
    same(first, off)
    assert after3 == after1 and logs3.logged == logs1.logged
    assert len(stages.entries()) == 1  # the cache off stores nothing


def test_key_covers_declared_fields_data_and_random_state(workdir):
    base, *_ = run()
    assert run(config(lr=0.02))[0].loaded is False
    assert run(config(fold=2))[0].loaded is False
    assert run(data_key="data-2")[0].loaded is False
    assert run(config(task_params={"cls_lr": 0.5}))[0].loaded is True  # not declared by the stage: shared
    torch.manual_seed(1)  # a different random state at the stage's start: not shared (it would not be exact)
    moved = stages.run_stage(STAGE, config(), data_key="data-1", split_hash="split-1", reporter=Recorder(),
                             train=toy_train(), params={"width": 8})
    assert not moved.loaded and moved.key != base.key
    assert STAGE.share_key(config()) == STAGE.share_key(config(task_params={"cls_lr": 0.5})) != STAGE.share_key(config(seed=4))


@pytest.mark.parametrize("damage", ["truncate", "flip", "meta"])
def test_corrupt_entry_is_one_warning_and_trained_again(workdir, damage):
    first, *_ = run()
    (entry,) = stages.entries()
    if damage == "truncate":
        path = entry.path / "weights.pt"
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "flip":
        path = entry.path / "arrays" / "pred.val.npy"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        (entry.path / "meta.json").write_text('{"format": 1, "fil')
    counter = workdir / "trained.txt"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, _, _, tags = run(counter=counter)
    ours = [w for w in caught if issubclass(w.category, BenchWarning)]
    assert len(ours) == 1 and "training the stage again" in str(ours[0].message)
    assert tags == {"bench.stage.toy": "trained"} and counter.read_text().count("\n") == 1
    same(first, again)
    assert run()[0].loaded  # the entry written again loads


def test_a_killed_writer_leaves_nothing_that_loads(workdir):
    class Killed(BaseException):
        pass

    def dies(log):
        log({"toy_loss": 1.0}, 0)
        raise Killed

    with pytest.raises(Killed):
        stages.run_stage(STAGE, config(), data_key="d", split_hash="s", reporter=Recorder(), train=dies)
    assert stages.entries() == []
    assert not [p for p in stages.root().rglob("*") if p.is_dir() and ".tmp-" in p.name]
    # A temporary folder a killed writer left mid-write is never read as an entry.
    _first, *_ = run()
    (entry,) = stages.entries()
    partial = entry.path.parent / f".{entry.key}.tmp-killed"
    partial.mkdir()
    (partial / "weights.pt").write_bytes(b"half")
    stages.prune()
    assert not entry.path.exists() and partial.exists()  # pruning all keeps a fresh temp folder
    assert not run()[0].loaded


def _race(cache: str, role: str, counter: str, events: dict, out: str) -> None:
    """One of two processes asking for the same stage. The trainer holds its training until the other has
    missed the entry and reached the lock, so the second must wait on the lock and then load."""
    os.environ["BENCH_CACHE"] = cache
    from bench import stages as st

    real_locked = st._locked

    def locked(path, blocking=True):
        if role == "waiter" and blocking:
            events["waiter_at_lock"].set()
        return real_locked(path, blocking)

    st._locked = locked
    inner = toy_train(Path(counter))

    def train(log):
        events["trainer_training"].set()
        assert events["release"].wait(60)
        return inner(log)

    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    result = st.run_stage(STAGE, config(), data_key="data-1", split_hash="split-1", reporter=Recorder(),
                          train=train, params={"width": 8})
    Path(out).write_text(json.dumps({"loaded": result.loaded, "tags": st.take_outcomes(),
                                     "pred": result.arrays["pred.val"].tolist(),
                                     "after": torch.rand(2).tolist()}))


def test_two_processes_train_one_stage_once(tmp_path):
    ctx = mp.get_context("spawn")
    events = {name: ctx.Event() for name in ("trainer_training", "waiter_at_lock", "release")}
    cache, counter = str(tmp_path / "cache"), str(tmp_path / "trained.txt")
    trainer = ctx.Process(target=_race, args=(cache, "trainer", counter, events, str(tmp_path / "a.json")))
    waiter = ctx.Process(target=_race, args=(cache, "waiter", counter, events, str(tmp_path / "b.json")))
    trainer.start()
    assert events["trainer_training"].wait(120)  # the trainer holds the lock and is training
    waiter.start()
    assert events["waiter_at_lock"].wait(120)  # the waiter found no entry and goes for the lock
    events["release"].set()
    for proc in (trainer, waiter):
        proc.join(120)
        assert proc.exitcode == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert Path(counter).read_text().count("\n") == 1  # trained exactly once
    assert (a["loaded"], b["loaded"]) == (False, True)
    assert a["tags"] == {"bench.stage.toy": "trained"} and b["tags"] == {"bench.stage.toy": "loaded"}
    assert a["pred"] == b["pred"] and a["after"] == b["after"]


def test_bounded_least_recently_used_go_first(workdir, monkeypatch):
    run(data_key="a")
    run(data_key="b")
    listed = {e.path.name: e for e in stages.entries()}
    assert len(listed) == 2
    old, new = sorted(listed.values(), key=lambda e: e.created)
    os.utime(old.path / "used", (time.time() - 100, time.time() - 100))
    os.utime(new.path / "used", (time.time() - 50, time.time() - 50))
    run(data_key="a")  # loading a marks it used now: b is the least recently used
    one = max(e.bytes for e in stages.entries())
    monkeypatch.setenv(stages.SIZE_ENV, str(2.5 * one / 1e9))
    run(data_key="c")  # three entries do not fit in 2.5: the least recently used one goes
    names = {e.key for e in stages.entries()}
    assert len(names) == 2 and new.key not in names and old.key in names
    monkeypatch.setenv(stages.SIZE_ENV, "lots")
    with pytest.raises(ConfigError, match=stages.SIZE_ENV):
        stages.limit_bytes()


def test_prune_by_age_and_stage(workdir):
    run(data_key="a")
    run(data_key="b")
    other = stages.Stage("ct-lung", "lung", "1")
    stages.run_stage(other, config(), data_key="a", split_hash="s", reporter=Recorder(), train=toy_train())
    entries = stages.entries()
    assert sorted({e.stage for e in entries}) == ["lung", "toy"] and len(entries) == 3
    stale = next(e for e in entries if e.stage == "toy")
    os.utime(stale.path / "used", (time.time() - 10 * 86400,) * 2)
    removed, kept = stages.prune(older_than_days=7)
    assert [e.key for e in removed] == [stale.key] and len(kept) == 2
    removed, kept = stages.prune(stage="lung")
    assert [e.stage for e in removed] == ["lung"] and [e.stage for e in kept] == ["toy"]
    with pytest.raises(ConfigError, match="older-than"):
        stages.prune(older_than_days=-1)


def test_switch_values():
    assert stages.parse_switch("on") and not stages.parse_switch("OFF")
    with pytest.raises(ConfigError, match="'on' or 'off'"):
        stages.parse_switch("maybe")


def test_cache_commands_list_and_prune(workdir, capsys):
    from bench.cli import main

    run(data_key="a")
    stages.run_stage(stages.Stage("ct-lung", "lung", "1"), config(), data_key="a", split_hash="s",
                     reporter=Recorder(), train=toy_train())
    assert main(["cache", "ls"]) == 0
    listed = capsys.readouterr().out
    assert "2 entries" in listed and "toy" in listed and "lung" in listed and "ago" in listed
    assert main(["cache", "ls", "--json"]) == 0
    assert {e["stage"] for e in json.loads(capsys.readouterr().out)} == {"toy", "lung"}
    assert main(["cache", "prune", "--older-than", "1"]) == 0  # both used just now
    assert "removed 0 entries" in capsys.readouterr().out and len(stages.entries()) == 2
    assert main(["cache", "prune", "--stage", "lung"]) == 0
    assert "removed 1 entries" in capsys.readouterr().out
    assert [e.stage for e in stages.entries()] == ["toy"]
    assert main(["cache", "prune"]) == 0 and stages.entries() == []
    assert main(["cache", "prune", "--older-than", "-2"]) == 2
    assert "bench cache prune: error: --older-than must be" in capsys.readouterr().err
