"""`bench ui`: MLflow UI over the working folder's store, reachable on 127.0.0.1 only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bench.tracking import KIND_TAG, Tracker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses (hex, as in /proc/net/tcp) with a LISTEN socket on ``port``."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, hex_port = local.split(":")
        if state == "0A" and int(hex_port, 16) == port:  # 0A = TCP_LISTEN
            found.add(address)
    return found


def wait_for(url: str, seconds: float = 60.0) -> int:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.slow
def test_bench_ui_serves_the_store_on_loopback(workdir):
    tracker = Tracker("xray-heart")
    tracker.start_run("t000", {KIND_TAG: "trial"})
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    # Own session, so the UI and the server workers it spawns are stopped together by group id.
    proc = subprocess.Popen([sys.executable, "-m", "bench.cli", "ui", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        assert wait_for(f"http://127.0.0.1:{port}/") == 200
        if Path("/proc/net/tcp").exists():
            assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, not 0.0.0.0
        request = urllib.request.Request(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                                         data=b'{"max_results": 10}', headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert b"bench/xray-heart" in response.read()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert f"http://127.0.0.1:{port}" in out
