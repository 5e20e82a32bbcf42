"""Several processes on one study, for real: a PostgreSQL Optuna storage and an `mlflow server` on 127.0.0.1.

Two `bench search` processes join one study with `--trials 6`; the study must end with 6 trials (7 at most
when one was running as the sixth ended), no MLflow run left RUNNING, and the leaderboard readable
through the server. Slow (it trains six smoke trials); run with `pytest -m slow tests/test_scale_out.py`.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(*cmd: str) -> list[str]:
    """PostgreSQL refuses to run as root: run its tools as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else list(cmd)


@pytest.fixture
def postgres():
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    pytest.importorskip("psycopg", reason='the postgres extra is not installed: pip install -e ".[postgres]"')
    # Not under pytest's tmp folder: that is private to root, and the server runs as the postgres user.
    home = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(home, "postgres", "postgres")
    data = home / "db"
    port = _free_port()
    subprocess.run(_as_postgres(initdb, "-D", str(data), "-U", "postgres", "--auth=trust"), check=True,
                   capture_output=True)
    subprocess.run(_as_postgres(pg_ctl, "-D", str(data), "-w", "-l", str(home / "log"), "-o",
                                f"-p {port} -k {home} -c listen_addresses=127.0.0.1", "start"),
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres(pg_ctl, "-D", str(data), "-m", "fast", "stop"), capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def mlflow_server(tmp_path):
    port = _free_port()
    store = tmp_path / "server"
    store.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{store / 'mlflow.db'}",
                             "--artifacts-destination", str(store / "artifacts"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("mlflow server did not start within 120 s")
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.slow
def test_two_processes_on_one_postgres_study_share_the_trial_total(tmp_path, postgres, mlflow_server):
    import optuna
    from mlflow.tracking import MlflowClient

    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server, "BENCH_CACHE": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    search = [sys.executable, "-m", "bench.cli", "search", "--task", "xray-heart", "--preset", "smoke",
              "--trials", "6", "--storage", postgres, "--study", "shared", "--pruner", "none"]
    first = subprocess.Popen(search, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline:  # join once the first process has created the study and started a trial
        try:
            study = optuna.load_study(study_name="shared", storage=postgres)
            if study.get_trials(deepcopy=False):
                break
        except KeyError:
            pass
        time.sleep(2)
    second = subprocess.run([*search, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=1800, check=False)
    out, _ = first.communicate(timeout=1800)
    assert first.returncode == 0, out.decode()[-3000:]
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    trials = optuna.load_study(study_name="shared", storage=postgres).get_trials(deepcopy=False)
    finished = [t for t in trials if t.state.is_finished()]
    assert 6 <= len(finished) <= 7 and len(finished) == len(trials), [t.state for t in trials]
    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("bench/xray-heart")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.study = 'shared'")
    assert [r for r in runs if r.info.status == "RUNNING"] == []
    assert len([r for r in runs if r.data.tags.get("bench.kind") == "search"]) == 2
    assert len([r for r in runs if r.data.tags.get("bench.kind") == "trial"]) == len(finished)
    board = subprocess.run([sys.executable, "-m", "bench.cli", "leaderboard", "--task", "xray-heart", "--study",
                            "shared", "--format", "csv"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False)
    assert board.returncode == 0, board.stderr
    assert len(board.stdout.strip().splitlines()) - 1 == len(finished)  # header + one row per trial
    (tmp_path / "scale_out_figure.txt").write_text(f"finished trials: {len(finished)}\n")
    print(f"two processes, --trials 6: {len(finished)} finished trials")


def test_a_missing_database_driver_names_the_extra(monkeypatch):
    from bench.errors import ConfigError
    from bench.search.optuna_backend import make_storage

    for driver in ("psycopg", "psycopg2"):  # None in sys.modules: `import psycopg` fails as if not installed
        monkeypatch.setitem(sys.modules, driver, None)
    with pytest.raises(ConfigError, match=r'--storage postgresql://\.\.\. needs its database driver.*pip install -e "\.\[postgres\]"'):
        make_storage("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(ConfigError, match="mysql"):
        make_storage("mysql+nodriver://nobody@127.0.0.1:1/none")


def _restart(url: str) -> None:
    """``pg_ctl restart`` of the server the ``postgres`` fixture started (its data folder from the URL's port)."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if f"-p {port}" in x and " -D " in x)
    data = line.split(" -D ", 1)[1].split()[0]
    log = str(Path(data).parent / "log")  # -l: the restarted server must not hold on to our pipes
    subprocess.run(_as_postgres(shutil.which("pg_ctl"), "-D", data, "-l", log, "-w", "-m", "fast", "restart"),
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_postgres_restart_mid_search_is_ridden_out_or_resumed_to_exactly_the_trials(tmp_path, postgres):
    """The database restarts while the second trial trains. The search either finishes (stale connections are
    replaced on their next use) or stops with one line; `--resume` then ends with exactly --trials trials."""
    import optuna

    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "BENCH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    search = [sys.executable, "-m", "bench.cli", "search", "--task", "xray-heart", "--preset", "smoke",
              "--trials", "3", "--storage", postgres, "--study", "restarted", "--pruner", "none"]
    proc = subprocess.Popen(search, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # restart once the first trial has ended
        try:
            trials = optuna.load_study(study_name="restarted", storage=postgres).get_trials(deepcopy=False)
            if any(t.state.is_finished() for t in trials):
                break
        except KeyError:  # the study is not created yet
            pass
        time.sleep(1)
    _restart(postgres)
    _, err = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        lines = [x for x in err.splitlines() if x.strip() and not x.startswith("bench: warning")]
        assert proc.returncode == 2 and len(lines) == 1 and "--resume" in lines[0], err[-3000:]
        assert "Traceback" not in err
        again = subprocess.run([*search, "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=1800, check=False)
        assert again.returncode == 0, again.stderr[-3000:]
    else:
        assert "Traceback" not in err, err[-3000:]
    trials = optuna.load_study(study_name="restarted", storage=postgres).get_trials(deepcopy=False)
    from bench.search.optuna_backend import count_finished

    assert count_finished(optuna.load_study(study_name="restarted", storage=postgres)) == 3, [t.state for t in trials]
    print(f"restart mid-search: exit {proc.returncode}, trials {[t.state.name for t in trials]}")


def test_storage_errors_are_told_from_bugs():
    import optuna
    from sqlalchemy.exc import OperationalError

    from bench.search.optuna_backend import is_storage_error

    assert is_storage_error(optuna.exceptions.StorageInternalError("An exception is raised during the commit."))
    assert is_storage_error(OperationalError("SELECT 1", {}, Exception("server closed the connection")))
    assert not is_storage_error(ValueError("a bug of ours"))
