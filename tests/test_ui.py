"""`bench ui`: MLflow UI over the working folder's store, reachable on 127.0.0.1 only."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
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
