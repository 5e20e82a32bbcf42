"""The search progress poller never imports while the main thread is still importing (issue 20, part 1).

Under load, `bench search` crashed before its first trial with "cannot import name '_get_store' from
partially initialized module 'mlflow.tracking'": the poller thread called into MLflow while the main thread
was half-way through importing it. The test makes that interleaving certain instead of likely: an import
hook holds the main thread inside MLflow's package import until the poller's first threaded call has run or
is blocked on an import lock, then lets both go on. Fresh process, so MLflow is not imported yet.
"""

import json
import os
import subprocess
import sys

PROBE = r"""
import importlib.abc, json, sys, threading, traceback

from bench.cli import _progress

assert "mlflow" not in sys.modules, "the probe needs a process that has not imported MLflow yet"
MAIN = threading.get_ident()
main_reached = threading.Event()   # main is inside MLflow's import, or past the import altogether
poller_done = threading.Event()
errors, calls, hook_fired = [], [], []
real_poll = _progress.running_trials_text


def threaded_poll(task, since):
    if threading.get_ident() != MAIN and not calls:
        main_reached.wait(60)  # the poller's first call starts only once main is mid-import (or done)
    calls.append(threading.get_ident() == MAIN)
    try:
        return real_poll(task, since)
    except Exception as exc:
        errors.append("poller: " + traceback.format_exception_only(exc)[-1].strip())
        raise
    finally:
        if threading.get_ident() != MAIN:
            poller_done.set()


def poller_blocked_or_done() -> bool:
    for ident, frame in sys._current_frames().items():
        if ident != MAIN and any(f.name in ("acquire", "_lock_unlock_module")
                                 for f in traceback.extract_stack(frame)[-3:]):
            return True
    return poller_done.is_set()


class HoldMainInsideMlflow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if threading.get_ident() == MAIN and name == "mlflow.entities" and not hook_fired:
            hook_fired.append(name)
            main_reached.set()
            for _ in range(6000):  # until the poller has run its call or waits on an import lock
                if poller_blocked_or_done():
                    break
                poller_done.wait(0.01)
        return None


sys.meta_path.insert(0, HoldMainInsideMlflow())
_progress.running_trials_text = threaded_poll
_progress.SearchStatus.POLL_SECONDS = 0.0
status = _progress.SearchStatus(lambda text: None)
try:
    with status.watching("xray-heart"):
        import bench.search.ray_backend  # noqa: F401  the real path: -> bench.tracking -> mlflow
        main_reached.set()
        poller_done.wait(60)
except Exception as exc:
    errors.append("main: " + traceback.format_exception_only(exc)[-1].strip())
print(json.dumps({"errors": errors, "threaded_calls": calls.count(False), "hook_fired": bool(hook_fired)}))
"""


def test_poller_and_main_thread_import_without_a_race(tmp_path):
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, check=False,
                          env={**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stderr[-3000:]
    result = json.loads(lines[-1])
    assert result["errors"] == [], result
    assert result["threaded_calls"] >= 1, result  # the poller did poll while the main thread imported
