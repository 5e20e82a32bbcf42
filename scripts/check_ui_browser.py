#!/usr/bin/env python3
"""Headless-Chromium check of `bench ui`: does the MLflow UI really render our runs in a browser?

The HTTP test (tests/test_ui.py) shows the server answers; this drives a real browser through the page,
because the run list is drawn by MLflow's React app from API calls the browser makes. Steps:

1. make a throwaway store with experiment ``bench/xray-heart`` and a few trial runs (no training), unless
   ``--store`` names a folder that already has ``mlflow.db``;
2. start ``bench ui`` on 127.0.0.1 on a free port;
3. start ``chromedriver`` and drive ``/usr/bin/chromium`` headless with the closed-network flags below and
   a new empty profile, through the W3C WebDriver protocol over plain HTTP (no selenium/playwright needed);
4. open the experiment's page, wait until every expected run name is in the rendered page text;
5. save a screenshot (``--screenshot``), stop everything.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``apt-get install -y chromium
chromium-driver``). Exit code 0 when every run name rendered, 1 when not, 2 when the browser is missing.

    python scripts/check_ui_browser.py --screenshot ui.png
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# No network beyond 127.0.0.1: no QUIC, no background/component/sync traffic, no first-run pages.
CLOSED_NETWORK_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--disable-dev-shm-usage", "--window-size=1400,900")
RUN_NAMES = ("t000 unet/dice/soft_mask", "t001 fpn/tversky/crop", "t002 unet/dice_ce/none")


def browser_available() -> str | None:
    """None when chromium and chromedriver are installed, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (shutil.which(p) or Path(p).is_file())]
    return f"missing {', '.join(missing)} (apt-get install -y chromium chromium-driver)" if missing else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_store(folder: Path) -> str:
    """Experiment bench/xray-heart with the RUN_NAMES as finished top-level trial runs; returns its id.

    Top-level, not nested under a search run: the MLflow UI folds child runs under their parent, and the
    check is about runs being rendered, not about expanding rows.
    """
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    from bench.tracking import KIND_TAG, Tracker

    tracker = Tracker("xray-heart")
    for k, name in enumerate(RUN_NAMES):
        run_id = tracker.start_run(name, {KIND_TAG: "trial", "trial_number": k})
        tracker.log_params(run_id, {"seg_arch": name.split()[1].split("/")[0], "guidance": name.split("/")[-1]})
        tracker.log_metrics(run_id, {"val_auroc": 0.7 + 0.05 * k})
        tracker.end(run_id, "COMPLETE")
    return tracker.experiment_id


def _http(method: str, url: str, body: dict | None = None, timeout: float = 60) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def wait_http(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer within {seconds:.0f} s") from None
            time.sleep(0.5)


def stop_process_group(proc: subprocess.Popen) -> str:
    """Stop a process started in its own session (and its children); return its output."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return out or ""


def check_ui(store: Path | None = None, screenshot: Path | None = None, timeout: float = 120.0,
             expect: tuple[str, ...] = RUN_NAMES, page: str = "runs") -> dict:
    """Run the check on the experiment's ``page`` ("" = its landing page); returns ``ok``, ``found``/``missing`` run names, ``url``, ``seconds`` and ``screenshot``."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-ui-check-") as tmp:
        tmp_path = Path(tmp)
        folder = Path(store) if store else tmp_path / "store"
        folder.mkdir(parents=True, exist_ok=True)
        if store and (folder / "mlflow.db").exists():
            os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
            from bench.tracking import Tracker

            tracker = Tracker("xray-heart")
            experiment_id = tracker.experiment_id
            # the UI lists top-level runs (searches, and trials of no search) newest first: expect those
            top = [r.info.run_name for r in tracker.client.search_runs([experiment_id], max_results=50,
                                                                       order_by=["attributes.start_time DESC"])
                   if "mlflow.parentRunId" not in r.data.tags]
            expect = tuple(top[:5])
        else:
            experiment_id = make_store(folder)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        ui_port, driver_port = free_port(), free_port()
        ui = subprocess.Popen([sys.executable, "-m", "bench.cli", "ui", "--port", str(ui_port)], cwd=folder, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        driver = subprocess.Popen([CHROMEDRIVER, f"--port={driver_port}", "--allowed-ips=127.0.0.1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        base, wd = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{driver_port}"
        url = f"{base}/#/experiments/{experiment_id}" + (f"/{page}" if page else "")
        result = {"ok": False, "url": url, "found": [], "missing": list(expect), "screenshot": None}
        session = None
        try:
            wait_http(f"{base}/health", 120)
            wait_http(f"{wd}/status", 30)
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": CHROMIUM, "args": [*CLOSED_NETWORK_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]}}}}
            session = _http("POST", f"{wd}/session", caps)["value"]["sessionId"]
            _http("POST", f"{wd}/session/{session}/url", {"url": url})
            deadline = time.monotonic() + timeout
            text = ""
            while time.monotonic() < deadline:
                text = _http("POST", f"{wd}/session/{session}/execute/sync",
                             {"script": "return document.body ? document.body.innerText : '';", "args": []})["value"]
                result["found"] = [n for n in expect if n in text]
                result["missing"] = [n for n in expect if n not in text]
                if not result["missing"]:
                    break
                time.sleep(1)
            result["ok"] = not result["missing"]
            result["page_text_head"] = text[:400]
            if screenshot:
                png = base64.b64decode(_http("GET", f"{wd}/session/{session}/screenshot")["value"])
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                Path(screenshot).write_bytes(png)
                result["screenshot"] = str(screenshot)
        finally:
            if session:
                try:
                    _http("DELETE", f"{wd}/session/{session}", timeout=20)
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    pass
            stop_process_group(driver)
            result["ui_output_tail"] = stop_process_group(ui)[-400:]
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="folder with mlflow.db (default: a throwaway one with 3 runs)")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the rendered page here")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the run names")
    parser.add_argument("--page", default="runs", help="experiment page to open (default runs; '' = landing page)")
    args = parser.parse_args(argv)
    problem = browser_available()
    if problem:
        print(f"browser check skipped: {problem}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    result = check_ui(args.store, args.screenshot, args.timeout, page=args.page)
    print(json.dumps({k: v for k, v in result.items() if k != "ui_output_tail"}, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
