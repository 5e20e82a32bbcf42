"""Faults that used to lose a study (issue 36): a full disk is one line and --resume re-runs what it stopped;
a torn journal record is cut aside and --resume ends with exactly --trials COMPLETE.

The searches here are real (Optuna journal, MLflow sqlite store, the data cache, the CLI) but train a stand-in
trial (``quick_trials``): the faults are in the writers around training, and a real smoke trial costs ~20 s on
a 2-core box. The slow tests at the end do the same with real training and a real small filesystem.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from bench.cli import main
from bench.diskspace import DISK_FULL, DiskFull, is_disk_full
from bench.search import journal as journal_mod
from bench.search.optuna_backend import count_finished, is_killed, make_storage

TASK = ["search", "--task", "xray-heart", "--preset", "smoke", "--pruner", "none"]


def enospc(path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


@pytest.fixture
def quick_trials(monkeypatch):
    """A trial that trains nothing but returns what a trained one does (metrics, a small checkpoint, a history),
    so every writer after training runs for real."""
    import torch

    from bench.train import TrialResult

    def run_trial(config, reporter=None):
        value = 0.5 + int(config.config_hash()[:4], 16) / 2**17  # differs between configs, same on a rerun
        if reporter is not None:
            reporter.log({"val_auroc": value}, 0)
        return TrialResult(config, "val_auroc", value, {"val_auroc": value}, history=[],
                           state_dicts={"model": {"w": torch.arange(64, dtype=torch.float32)}})

    monkeypatch.setattr("bench.trial.run_trial", run_trial)


def study(workdir: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(str(workdir / "optuna.journal")))


def trial_runs(workdir: Path) -> list:
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/xray-heart")
    return [r for r in client.search_runs([exp.experiment_id], max_results=1000)
            if r.data.tags.get("bench.kind") == "trial"]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def assert_exactly_complete(workdir: Path, name: str, trials: int) -> optuna.Study:
    s = study(workdir, name)
    states = optuna.trial.TrialState
    assert sum(t.state == states.COMPLETE for t in s.get_trials()) == trials == count_finished(s)
    assert not [t for t in s.get_trials() if t.state == states.RUNNING]
    runs = trial_runs(workdir)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert sum(r.info.status == "FINISHED" for r in runs) == trials  # the run store counts the same trials
    return s


# --- disk full --------------------------------------------------------------------------------------------------

def _fail_cache(monkeypatch):
    import numpy as np

    real = np.save

    def save(file, arr, *args, **kwargs):
        if ".bench" in str(file) and "stages" not in str(file):
            Path(file).write_bytes(b"\x93NUMPY half")  # what a full disk leaves: a file cut short
            raise enospc(file)
        return real(file, arr, *args, **kwargs)

    monkeypatch.setattr(np, "save", save)
    return "cache"


def _fail_checkpoint(monkeypatch):
    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name == "checkpoint.pt":
            real(self, data[: len(data) // 2])
            raise enospc(self)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return "checkpoint.pt"


def _fail_artifact(monkeypatch):
    real = shutil.copy2

    def copy2(src, dst, *args, **kwargs):
        if "mlruns" in str(dst) and str(dst).endswith("checkpoint.pt"):
            Path(dst).write_bytes(Path(src).read_bytes()[:10])
            raise enospc(dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", copy2)
    return "artifacts"


def _fail_journal(monkeypatch):
    real = os.write

    def write(fd, data):
        if b'"op_code":6' in bytes(data):  # a trial's end state: half of it reaches the disk
            real(fd, bytes(data)[: len(data) // 2])
            raise enospc("optuna.journal")
        return real(fd, data)

    monkeypatch.setattr(journal_mod.os, "write", write)
    return "optuna.journal"


def _fail_store(monkeypatch):
    """The MLflow sqlite store fills when a trial logs its final metrics; from then on every write fails, until
    the test frees the disk (MLflow's background logging queue keeps the patched function: it stays installed)."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    real = SqlAlchemyStore.log_batch
    full = FULL_STORE

    def log_batch(self, run_id, metrics, params, tags):
        if full.get("freed"):
            return real(self, run_id, metrics, params, tags)
        if full or any(m.key == "n_weights" for m in metrics):
            full[run_id] = True
            try:
                raise sqlite3.OperationalError("database or disk is full")
            except sqlite3.OperationalError as exc:
                raise MlflowException(f"(sqlite3.OperationalError) {exc}") from exc
        return real(self, run_id, metrics, params, tags)

    monkeypatch.setattr(SqlAlchemyStore, "log_batch", log_batch)
    return "mlflow.db"


FULL_STORE: dict = {}
WRITERS = {"cache": _fail_cache, "checkpoint": _fail_checkpoint, "artifact": _fail_artifact,
           "journal": _fail_journal, "store": _fail_store}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_full_disk_in_any_writer_is_one_line_exit_1_and_resume_finishes_the_trials(writer, workdir, quick_trials,
                                                                                     monkeypatch, capsys):
    FULL_STORE.clear()
    with monkeypatch.context() as patch:
        named = WRITERS[writer](patch)
        code = main([*TASK, "--trials", "2", "--study", "s"])
        FULL_STORE["freed"] = True
    line = one_error_line(capsys)
    assert code == 1
    assert line.startswith(f"bench search: error: {DISK_FULL}: ") and " MB free); free space and run " in line
    assert named in line.split(" MB free")[0]  # the path the full disk refused
    if writer == "cache":  # no study yet: the same command again; the half-written arrays are gone
        assert "run the command again" in line
        assert not list((workdir / ".bench" / "cache").glob("*/*.npy"))
        assert not [p for p in (workdir / ".bench" / "cache").iterdir() if p.name.startswith(".")]
        assert main([*TASK, "--trials", "2", "--study", "s"]) == 0
    else:
        assert "`bench search --study s --resume`" in line
        s = study(workdir, "s")
        assert count_finished(s) == 0 and len(s.get_trials()) == 1  # stopped at the first trial, not counted
        journal = (workdir / "optuna.journal").read_bytes()
        assert journal.endswith(b"\n") and all(json.loads(x) for x in journal.splitlines())  # no half record
        for run in trial_runs(workdir):  # a partial artifact is never left in the run
            folder = Path(run.info.artifact_uri.replace("file://", ""))
            assert not (folder / "checkpoint.pt").exists() or (folder / "checkpoint.pt").stat().st_size > 100
        assert main([*TASK, "--trials", "2", "--study", "s", "--resume"]) == 0
        s = assert_exactly_complete(workdir, "s", 2)
        assert sum(map(is_killed, s.get_trials())) == 1  # the trial the full disk stopped ran again
        reasons = [r.data.tags.get("bench.reason") for r in trial_runs(workdir) if r.info.status == "FAILED"]
        assert reasons in ([DISK_FULL], ["killed"]), reasons  # killed: the store was too full to close it


def test_a_data_cache_that_cannot_fit_is_refused_before_a_byte_is_written(workdir, quick_trials, monkeypatch, capsys):
    monkeypatch.setattr("bench.diskspace.free_bytes", lambda path: 3 * 2**20)
    assert main([*TASK, "--trials", "1", "--study", "s"]) == 1
    line = one_error_line(capsys)
    assert f"{DISK_FULL}: " in line and "(3 MB free)" in line and ".bench/cache" in line
    assert not any(p.is_file() for p in (workdir / ".bench" / "cache").rglob("*"))


def test_disk_full_is_told_in_every_shape_it_comes_in():
    assert is_disk_full(enospc("x")) and is_disk_full(OSError(errno.EDQUOT, "quota"))
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.OperationalError as exc:
            raise RuntimeError("the store failed") from exc
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert is_disk_full(RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 35313216 vs 1"))
    assert not is_disk_full(OSError(errno.EACCES, "denied")) and not is_disk_full(ValueError("pos"))
    assert "free space and run `x`" in str(DiskFull("/tmp", 0, "free space and run `x`"))


def test_a_stage_cache_entry_a_full_disk_stops_leaves_nothing(workdir, monkeypatch):
    import numpy as np
    import torch

    from bench import stages

    real = np.save

    def save(file, *args, **kwargs):
        real(file, *args, **kwargs)
        raise enospc(file)

    monkeypatch.setattr(np, "save", save)
    entry = workdir / "stages" / "t" / "s" / "key"
    entry.parent.mkdir(parents=True)
    with pytest.raises(DiskFull, match=DISK_FULL):
        stages._write(entry, {"task": "t", "stage": "s"}, {"m": {"w": torch.zeros(2)}}, {"a": np.zeros(3)}, [])
    assert list(entry.parent.iterdir()) == []


# --- the journal ------------------------------------------------------------------------------------------------

@pytest.fixture
def finished_study(workdir, quick_trials, tmp_path_factory):
    """A finished 2-trial search (stand-in trials: a few seconds)."""
    assert main([*TASK, "--trials", "2", "--study", "j"]) == 0
    return workdir


def _tear(workdir: Path, cut: int | str) -> tuple[bytes, int]:
    path = workdir / "optuna.journal"
    data = path.read_bytes()
    last = data[data.rstrip(b"\n").rfind(b"\n") + 1 :]
    n = len(last) // 2 if cut == "half" else int(cut)
    path.write_bytes(data[: len(data) - n])
    return last, n


@pytest.mark.parametrize("cut", [1, 37, "half", "all but 1"])
def test_a_torn_last_record_is_cut_aside_and_resume_ends_with_exactly_the_trials(cut, finished_study, capsys):
    workdir = finished_study
    before = study(workdir, "j").get_trials()
    capsys.readouterr()
    last, n = _tear(workdir, len((workdir / "optuna.journal").read_bytes().splitlines()[-1]) if cut == "all but 1"
                    else cut)
    assert main([*TASK, "--trials", "3", "--study", "j", "--resume"]) == 0
    err = capsys.readouterr().err
    s = assert_exactly_complete(workdir, "j", 3)
    torn = sorted(workdir.glob("optuna.journal.torn-*"))
    if n == 1:  # only the newline was lost: the record is whole and kept, nothing is moved aside
        assert not torn and "warning" not in err
        assert [t.state for t in s.get_trials()[:2]] == [t.state for t in before]
    else:
        assert len(torn) == 1 and torn[0].read_bytes() == last[: len(last) - n] + b"\n"
        warning = [line for line in err.splitlines() if "warning" in line]
        told = "which trial's cannot be told" if n == len(last) - 1 else "trial 1 of study j lost its end state"
        assert len(warning) == 1 and told in warning[0], err  # 1 byte, "{", names no trial
        assert s.get_trials()[0].state == optuna.trial.TrialState.COMPLETE  # the completed trial is kept
        assert is_killed(s.get_trials()[1])  # the one whose end was lost ran again
        reasons = {r.data.tags["trial_number"]: r.data.tags.get("bench.reason") for r in trial_runs(workdir)}
        assert reasons["1"] == "killed"
    for line in (workdir / "optuna.journal").read_bytes().splitlines():
        json.loads(line)


def test_a_record_written_onto_a_torn_one_is_one_error_and_repair_keeps_every_whole_record(finished_study, capsys):
    workdir = finished_study
    path = workdir / "optuna.journal"
    _tear(workdir, 37)
    # what the old code did: append the next record right after the torn bytes
    path.write_bytes(path.read_bytes() + b'{"op_code":8,"worker_id":"w","trial_id":1,"user_attr":{"x":1}}\n'
                     + b'{"op_code":8,"worker_id":"w","trial_id":1,"user_attr":{"y":2}}\n')
    line_no = len(path.read_bytes().splitlines()) - 1
    capsys.readouterr()
    assert main([*TASK, "--trials", "3", "--study", "j", "--resume"]) == 2
    line = one_error_line(capsys)
    assert f"{path} must be one JSON line, but line {line_no} is not" in line and "--repair-journal" in line
    assert main([*TASK, "--trials", "3", "--study", "j", "--resume", "--repair-journal"]) == 0
    s = assert_exactly_complete(workdir, "j", 3)
    assert s.get_trials()[1].user_attrs.get("x") == 1  # the whole record written onto the torn one is kept
    assert len(list(workdir.glob("optuna.journal.torn-*"))) == 1


def test_an_append_that_fails_leaves_no_half_record(tmp_path, monkeypatch):
    path = tmp_path / "j.journal"
    backend = journal_mod.SafeJournalBackend(str(path))
    backend.append_logs([{"op_code": 0, "study_name": "a", "directions": [1]}])
    size = path.stat().st_size
    real = os.write

    def write(fd, data):
        real(fd, bytes(data)[:5])
        raise enospc(path)

    monkeypatch.setattr(journal_mod.os, "write", write)
    with pytest.raises(OSError):
        backend.append_logs([{"op_code": 0, "study_name": "b", "directions": [1]}])
    assert path.stat().st_size == size


def test_an_append_after_a_torn_tail_starts_on_a_fresh_line(tmp_path):
    path = tmp_path / "j.journal"
    path.write_bytes(b'{"op_code":0,"worker_id":"w","study_name":"a","directions":[1]}\n{"op_code":4,"stu')
    with pytest.warns(Warning, match="cut short"):
        journal_mod.SafeJournalBackend(str(path)).append_logs([{"op_code": 2, "study_id": 0, "user_attr": {}}])
    assert [json.loads(x)["op_code"] for x in path.read_bytes().splitlines()] == [0, 2]


def test_repair_needs_a_journal(workdir, capsys):
    assert main([*TASK, "--storage", "sqlite:///o.db", "--repair-journal"]) == 2
    assert "--repair-journal mends an Optuna journal file" in one_error_line(capsys)


# --- slow: real training, a real small filesystem ----------------------------------------------------------------

def _cli(*args, cwd, env=None):
    env = {**os.environ, **(env or {})}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("BENCH_CACHE", None)
    return subprocess.run([sys.executable, "-m", "bench.cli", *TASK, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


@pytest.mark.slow
def test_the_issue_reproduction_a_torn_journal_after_a_real_search(tmp_path):
    """Issue 36: finish a 2-trial smoke search, cut the last 37 bytes of optuna.journal, resume with --trials 3."""
    assert _cli("--trials", "2", "--study", "r", cwd=tmp_path).returncode == 0
    _tear(tmp_path, 37)
    done = _cli("--trials", "3", "--study", "r", "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "trial 1 of study r lost its end state" in done.stderr
    assert_exactly_complete(tmp_path, "r", 3)


@pytest.mark.slow
def test_a_real_full_filesystem_stops_the_search_in_one_line_and_resume_finishes_it():
    """A 40 MB tmpfs as the working folder (and TMPDIR): the first trial's stage cache or checkpoint fills it."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    # Outside pytest's numbered folders: a concurrent pytest session may rename old ones while this test runs,
    # and the mount point must stay where umount will look for it.
    disk = Path(tempfile.mkdtemp(prefix="bench-tmpfs-"))
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        shutil.rmtree(disk, ignore_errors=True)
        pytest.skip(f"this machine does not allow a tmpfs mount: {mounted.stderr.strip()}")
    try:
        (disk / "tmp").mkdir()
        env = {"TMPDIR": str(disk / "tmp")}
        full = _cli("--trials", "2", "--study", "d", cwd=disk, env=env)
        lines = [x for x in full.stderr.splitlines() if x.strip()]
        assert full.returncode == 1, full.stderr[-3000:]
        assert len(lines) == 1 and lines[0].startswith(f"bench search: error: {DISK_FULL}: {disk}"), lines
        assert "--study d --resume" in lines[0]
        assert not list(disk.rglob("*.tmp-*"))  # no stage-cache entry half-written
        assert not [p for p in (disk / "tmp").iterdir() if p.name.startswith("tmp")]  # our temporary folders
        subprocess.run(["mount", "-o", "remount,size=900m", str(disk)], check=True)
        done = _cli("--trials", "2", "--study", "d", "--resume", cwd=disk, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert_exactly_complete(disk, "d", 2)
    finally:
        # lazy: this process's MLflow client may still hold the store's sqlite file open
        subprocess.run(["umount", "-l", str(disk)], check=False, capture_output=True)
        if not os.path.ismount(disk):
            shutil.rmtree(disk, ignore_errors=True)
