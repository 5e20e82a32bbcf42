"""Joining a Ray head started by hand: token mode is used when a token exists; a failure is one clear error."""

import os
import shutil
import socket
import subprocess
import sys

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bench(args, cwd, env):
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=1800, check=False)


def test_token_mode_is_chosen_only_when_a_token_exists_and_no_mode_is_set(tmp_path, monkeypatch):
    from bench.search.ray_backend import use_token_auth_if_available

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert not use_token_auth_if_available() and "RAY_AUTH_MODE" not in os.environ
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x" * 32)
    assert use_token_auth_if_available() and os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the user's explicit choice wins
    assert not use_token_auth_if_available()


def test_an_unreachable_cluster_is_one_clear_error(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1"}
    env.pop("RAY_AUTH_MODE", None)
    port = _free_port()  # nothing listens there
    proc = _bench(["search", "--task", "xray-heart", "--preset", "smoke", "--trials", "1", "--backend", "ray",
                   "--address", f"127.0.0.1:{port}"], tmp_path, env)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert f"127.0.0.1:{port}" in proc.stderr and "auth_token" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_a_search_joins_a_head_started_with_ray_start(tmp_path):
    ray = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    env = {**os.environ, "HOME": str(tmp_path), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        env.pop(name, None)
    port = _free_port()
    started = subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                              "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                             env=env, capture_output=True, text=True, timeout=300, check=False)
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        proc = _bench(["search", "--task", "xray-heart", "--preset", "smoke", "--trials", "2", "--backend", "ray",
                       "--address", f"127.0.0.1:{port}", "--study", "joined"], tmp_path, env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "Traceback" not in proc.stderr
    finally:
        subprocess.run([ray, "stop", "--force"], env=env, capture_output=True, timeout=300, check=False)
