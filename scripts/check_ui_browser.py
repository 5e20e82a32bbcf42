#!/usr/bin/env python3
"""Headless-Chromium check of `bench ui`: does the page it opens show the leaderboard a person needs?

The HTTP test (tests/test_ui.py) shows the server answers; this drives a real browser, because the runs
table is drawn by MLflow's React app from API calls the browser makes. Steps:

1. make a throwaway store with experiment ``bench/xray-heart``: a search run with three nested trial runs
   (no training), unless ``--store`` names a folder that already has ``mlflow.db``;
2. start ``bench ui`` on 127.0.0.1 on a free port and read the leaderboard URL it prints;
3. start ``chromedriver`` and drive ``/usr/bin/chromium`` headless with the closed-network flags below and
   a new empty profile, through the W3C WebDriver protocol over plain HTTP (no selenium/playwright needed);
4. open that URL and wait until the page text holds every trial name of the latest search (nested runs,
   not only top-level ones) and the objective's column header, the best trial's row holds its objective
   value as MLflow prints it, and that row is the first trial row on the page;
5. save a screenshot (``--screenshot``), stop everything.

Needs Debian's ``chromium`` and ``chromium-driver`` packages (``apt-get install -y chromium
chromium-driver``). Exit code 0 when all of it rendered, 1 when not, 2 when the browser is missing.

    python scripts/check_ui_browser.py --store . --screenshot results/ui/leaderboard.png
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
                        "--disable-dev-shm-usage", "--window-size=1920,1080")
RUN_NAMES = ("t000 unet/dice/soft_mask", "t001 fpn/tversky/crop", "t002 unet/dice_ce/none")
STUDY = "ui-check"
OBJECTIVE = "val_auroc"
VIEW_KEY = "bench-leaderboard"  # bench.cli.ui.VIEW_KEY (this script runs without the package installed)


def browser_available() -> str | None:
    """None when chromium and chromedriver are installed, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (shutil.which(p) or Path(p).is_file())]
    return f"missing {', '.join(missing)} (apt-get install -y chromium chromium-driver)" if missing else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_store(folder: Path) -> None:
    """Experiment bench/xray-heart with a finished search run of study STUDY and the RUN_NAMES nested
    under it as COMPLETE trials (objective 0.70, 0.75, 0.80: the last is best), as a search logs them."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    from bench.tracking import KIND_TAG, Tracker

    tracker = Tracker("xray-heart")
    parent = tracker.start_run(f"search {STUDY}", {KIND_TAG: "search", "study": STUDY,
                                                   "search.searched": "seg_arch,seg_loss,guidance"})
    for k, name in enumerate(RUN_NAMES):
        arch, loss, guidance = name.split()[1].split("/")
        run_id = tracker.start_run(name, {KIND_TAG: "trial", "trial_number": k, "study": STUDY}, parent)
        tracker.log_params(run_id, {"seg_arch": arch, "seg_loss": loss, "guidance": guidance})
        tracker.log_metrics(run_id, {OBJECTIVE: (0.7, 0.75, 0.8)[k], "val_heart_dice": (0.5, 0.6, 0.7)[k]})
        tracker.end(run_id, "COMPLETE")
    tracker.end(parent, "COMPLETE")


def expected_leaderboard(folder: Path) -> dict:
    """What the page must show, read from the store: the latest search's trial names, best first, and the
    best trial's objective value."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    from bench.leaderboard import leaderboard
    from bench.tasks import TASKS
    from bench.tracking import KIND_TAG, Tracker

    tracker = Tracker("xray-heart")
    search = tracker.client.search_runs([tracker.experiment_id], f"tags.`{KIND_TAG}` = 'search'", max_results=1,
                                        order_by=["attributes.start_time DESC"])
    study = search[0].data.tags.get("study") if search else None
    table = leaderboard("xray-heart", study=study)
    objective = TASKS.get("xray-heart").objective
    return {"study": study, "objective": objective, "names": list(table["run"]),
            "experiment_id": tracker.experiment_id, "search_run_id": search[0].info.run_id if search else None,
            "best": table["run"].iloc[0], "best_value": float(table[objective].iloc[0])}


def value_texts(value: float) -> list[str]:
    """How the MLflow UI may print a metric value: rounded to 3..6 decimals, trailing zeros dropped."""
    texts = [f"{round(value, d):.{d}f}".rstrip("0").rstrip(".") for d in (3, 4, 5, 6)]
    return list(dict.fromkeys(texts + [repr(value)]))


def read_ui_url(proc: subprocess.Popen, seconds: float) -> str:
    """The leaderboard URL `bench ui` prints before starting the server (its line 'Leaderboard of ...: URL')."""
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith("Leaderboard of "):
            return line.rsplit(": ", 1)[1].strip()
    raise RuntimeError(f"`bench ui` printed no leaderboard URL: {''.join(seen)[-600:]}")


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


PAGE_TEXT = "return document.body ? document.body.innerText : '';"
# The names of the run rows, top to bottom (MLflow's table links each run name to its run page).
ROW_NAMES = ("return Array.from(document.querySelectorAll('a[href*=\"/runs/\"]'))"
             ".map(a => a.innerText.trim()).filter(t => t.length > 0);")


# The text of the table row that shows run ``arguments[0]``: MLflow's grid draws a row in several parts
# (pinned name column, scrolled value columns) that share the row's ``row-index``.
ROW_TEXT = ("const link = Array.from(document.querySelectorAll('a[href*=\"/runs/\"]'))"
            ".find(a => a.innerText.trim() === arguments[0]);"
            "const row = link && link.closest('[row-index]'); if (!row) return '';"
            "const index = row.getAttribute('row-index');"
            "return Array.from(document.querySelectorAll(`[row-index=\"${index}\"]`))"
            ".map(r => r.innerText).join(' ');")


def check_ui(store: Path | None = None, screenshot: Path | None = None, timeout: float = 120.0,
             run_screenshot: Path | None = None) -> dict:
    """Run the check; returns ``ok``, ``found``/``missing`` page texts, ``order`` (run rows top to bottom),
    ``url``, ``seconds`` and ``screenshot``. With ``run_screenshot`` it also opens the search run's page and
    checks that its description (the search's top-10 table) shows the best trial and its value
    (``run_page_ok``, and a screenshot there)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-ui-check-") as tmp:
        tmp_path = Path(tmp)
        folder = Path(store).resolve() if store else tmp_path / "store"
        folder.mkdir(parents=True, exist_ok=True)
        if not (store and (folder / "mlflow.db").exists()):
            make_store(folder)
        want = expected_leaderboard(folder)
        values = value_texts(want["best_value"])
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}"}
        ui_port, driver_port = free_port(), free_port()
        ui = subprocess.Popen([sys.executable, "-m", "bench.cli", "ui", "--task", "xray-heart", "--port", str(ui_port)],
                              cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True)
        driver = subprocess.Popen([CHROMEDRIVER, f"--port={driver_port}", "--allowed-ips=127.0.0.1"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        base, wd = f"http://127.0.0.1:{ui_port}", f"http://127.0.0.1:{driver_port}"
        expect = [*want["names"], want["objective"]]
        result = {"ok": False, "url": None, "expected": want, "found": [], "missing": expect, "screenshot": None}
        session = None
        try:
            url = result["url"] = read_ui_url(ui, 120)
            wait_http(f"{base}/health", 120)
            wait_http(f"{wd}/status", 30)
            caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
                "binary": CHROMIUM, "args": [*CLOSED_NETWORK_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]}}}}
            session = _http("POST", f"{wd}/session", caps)["value"]["sessionId"]
            _http("POST", f"{wd}/session/{session}/url", {"url": url})
            deadline = time.monotonic() + timeout
            text, order = "", []
            while time.monotonic() < deadline:
                text = _script(wd, session, PAGE_TEXT)
                order = [n for n in _script(wd, session, ROW_NAMES) if n in want["names"]]
                best_row = result["best_row_text"] = _script(wd, session, ROW_TEXT, want["best"])
                value = next((v for v in values if v in best_row), None)  # on the best trial's own row
                result["found"] = [n for n in expect if n in text] + ([value] if value else [])
                result["missing"] = [n for n in expect if n not in text] + ([] if value else [values[0]])
                result["order"] = order
                if not result["missing"] and order[:1] == [want["best"]]:
                    break
                time.sleep(1)
            result["ok"] = not result["missing"] and order[:1] == [want["best"]]
            result["page_text_head"] = text[:600]
            if screenshot:
                png = base64.b64decode(_http("GET", f"{wd}/session/{session}/screenshot")["value"])
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                Path(screenshot).write_bytes(png)
                result["screenshot"] = str(screenshot)
            if run_screenshot and want["search_run_id"]:
                result["run_page_ok"] = _check_run_page(wd, session, base, want, values, timeout, run_screenshot)
                result["ok"] = result["ok"] and result["run_page_ok"]
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


def _check_run_page(wd: str, session: str, base: str, want: dict, values: list[str], timeout: float,
                    screenshot: Path) -> bool:
    """Open the search run's page; True once its description shows the best trial's name and value."""
    url = f"{base}/#/experiments/{want['experiment_id']}/runs/{want['search_run_id']}"
    _http("POST", f"{wd}/session/{session}/url", {"url": url})
    deadline, ok = time.monotonic() + timeout, False
    while time.monotonic() < deadline and not ok:
        text = _script(wd, session, PAGE_TEXT)
        ok = want["best"] in text and any(v in text for v in values) and "Leaderboard of study" in text
        if not ok:
            time.sleep(1)
    png = base64.b64decode(_http("GET", f"{wd}/session/{session}/screenshot")["value"])
    Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
    Path(screenshot).write_bytes(png)
    return ok


def _script(wd: str, session: str, script: str, *args):
    return _http("POST", f"{wd}/session/{session}/execute/sync", {"script": script, "args": list(args)})["value"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="folder with mlflow.db (default: a throwaway one with a search of 3 trials)")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the rendered page here")
    parser.add_argument("--run-screenshot", type=Path,
                        help="also check the search run's page (its top-10 description) and save a PNG of it here")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the leaderboard to render")
    args = parser.parse_args(argv)
    problem = browser_available()
    if problem:
        print(f"browser check skipped: {problem}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    result = check_ui(args.store, args.screenshot, args.timeout, args.run_screenshot)
    print(json.dumps({k: v for k, v in result.items() if k != "ui_output_tail"}, indent=1))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
