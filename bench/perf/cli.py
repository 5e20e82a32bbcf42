"""Cold start of the read-only commands: each a fresh process, timed beside a bare ``import mlflow``.

Read-only commands (``bench --help``, ``bench tasks``, ``bench list ...``, ``bench leaderboard``) must not
import torch, MONAI or smp. This suite measures what that buys: for each command the median, minimum and
maximum wall time of ``repeats`` fresh processes (interleaved with the reference, so both see the same
load), the peak resident memory of one extra probe run, and which heavy modules that run loaded. The
leaderboard runs over a store of ``runs`` synthetic trial runs (:func:`bench.perf.synthetic.fill_store`).

Goals (issue 12): ``bench tasks`` and ``bench list losses --json`` ≤ 1.0 s; ``bench leaderboard`` over 1,000
runs ≤ 1.5 × the bare MLflow import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.perf._common import isolated_store, median

HEAVY = ("torch", "monai", "segmentation_models_pytorch", "ray", "optuna")
REFERENCE = "import mlflow"

# What a probe run executes: the command through bench.cli.main, then one JSON line on stderr.
_PROBE = """
import contextlib, io, json, sys
from bench.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        code = main({argv!r})
    except SystemExit as exc:
        code = exc.code
loaded = [m for m in {heavy!r} if m in sys.modules]
# VmHWM, not ru_maxrss: the latter survives exec, so a child would report its parent's peak.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"code": code, "loaded": loaded, "peak_rss_mb": hwm / 1024}}), file=sys.stderr)
"""


def commands(leaderboard_out: str) -> dict[str, list[str]]:
    return {
        "bench --help": ["--help"],
        "bench tasks": ["tasks"],
        "bench list losses --json": ["list", "losses", "--json"],
        "bench list guidance": ["list", "guidance"],
        "bench leaderboard --format csv": ["leaderboard", "--task", "xray-heart", "--format", "csv",
                                           "--out", leaderboard_out],
    }


def _run(args: list[str], cwd: Path) -> float:
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    started = time.perf_counter()
    subprocess.run([sys.executable, *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - started


def _probe(argv: list[str], cwd: Path) -> dict[str, Any]:
    code = _PROBE.format(argv=argv, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          check=False, env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    lines = [line for line in proc.stderr.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {"code": proc.returncode, "error": proc.stderr[-500:]}


def cli(repeats: int = 5, runs: int = 1000) -> dict[str, Any]:
    """Time each read-only command as ``repeats`` fresh processes beside ``python -c "import mlflow"``.

    Args:
        repeats: fresh processes per command (median, min, max reported); at least 5 for the figures.
        runs: synthetic trial runs in the store the leaderboard reads.

    Returns:
        Per command: ``median_s``, ``min_s``, ``max_s``, ``peak_rss_mb``, ``heavy_modules``; the reference
        import's figures; the ratio of the leaderboard to the reference; the goals and whether they were met.
    """
    from bench.perf.synthetic import fill_store

    with isolated_store() as store:
        fill_store(runs, "xray-heart")  # the task the measured commands name
        todo = commands(str(store / "board.csv"))
        times: dict[str, list[float]] = {name: [] for name in [REFERENCE, *todo]}
        loadavg_before = os.getloadavg()
        for _ in range(repeats):  # interleaved: every command sees the same load as the reference
            times[REFERENCE].append(_run(["-c", REFERENCE], store))
            for name, argv in todo.items():
                times[name].append(_run(["-m", "bench.cli", *argv], store))
        probes = {name: _probe(argv, store) for name, argv in todo.items()}
        loadavg_after = os.getloadavg()
    figures = {name: {"median_s": round(median(ts), 3), "min_s": round(min(ts), 3), "max_s": round(max(ts), 3)}
               for name, ts in times.items()}
    for name, probe in probes.items():
        figures[name].update(peak_rss_mb=round(probe.get("peak_rss_mb", float("nan")), 1),
                             heavy_modules=probe.get("loaded"), exit_code=probe.get("code"))
    reference = figures[REFERENCE]["median_s"]
    board = figures["bench leaderboard --format csv"]["median_s"]
    met = {"bench tasks <= 1.0 s": figures["bench tasks"]["median_s"] <= 1.0,
           "bench list losses --json <= 1.0 s": figures["bench list losses --json"]["median_s"] <= 1.0,
           f"bench leaderboard over {runs} runs <= 1.5x import mlflow": board <= 1.5 * reference}
    return {"settings": {"repeats": repeats, "runs": runs}, "commands": figures, "reference": REFERENCE,
            "leaderboard_vs_import_mlflow": round(board / reference, 2), "met": met,
            "loadavg_before": loadavg_before, "loadavg_after": loadavg_after}
