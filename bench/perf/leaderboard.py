"""Leaderboard time on a big store: ``runs`` synthetic trial runs (default 10,000), cold and warm.

The store is filled by :func:`bench.perf.synthetic.fill_store` (one SQL transaction) and checked through
``MlflowClient`` before anything is timed. Three figures:

* ``cold_process_s``: a fresh ``bench leaderboard --task xray-heart --format csv --out …`` process, end to
  end (Python start, imports, MLflow store open, query, ranking, write); ``import_s`` is the same
  interpreter only importing ``bench.cli`` and ``bench.leaderboard``, so the difference is the work itself.
  "Cold" means a new process, not a cold disk: the SQLite file is in the OS page cache (dropping caches
  would need root and would disturb the other jobs on a shared machine).
* ``first_call_s``: the first ``bench.leaderboard.leaderboard`` call in this process (new Tracker and
  SQLAlchemy engine).
* ``warm_s``: the median of the next ``repeats`` calls in the same process.

The load average (``os.getloadavg``) before and after is recorded beside the figures: the machines these
run on are shared.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.perf._common import isolated_store, median, quiet, timed


def _fresh_process(code_or_args: list[str], cwd: Path) -> float:
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    started = time.perf_counter()
    subprocess.run([sys.executable, *code_or_args], cwd=cwd, env=env, check=True, capture_output=True, timeout=3600)
    return time.perf_counter() - started


def leaderboard(runs: int = 10_000, repeats: int = 3, parents: int = 4, cold_repeats: int = 2) -> dict[str, Any]:
    """Time the leaderboard over ``runs`` trial runs (see the module docstring for what each figure is).

    Args:
        runs: synthetic trial runs.
        repeats: warm in-process calls (median reported).
        parents: search runs the trials nest under.
        cold_repeats: fresh ``bench leaderboard`` processes (median reported).

    Returns:
        Figures in seconds, ``rows`` of the table, ``fill_s`` and the load averages.
    """
    from bench.leaderboard import leaderboard as rank
    from bench.perf.synthetic import check_store, fill_store

    quiet()
    with isolated_store() as store:
        load_before = os.getloadavg()
        fill_s, _, filled = timed(lambda: fill_store(runs, "xray-heart", parents=parents))
        check_s, _, found = timed(lambda: check_store(filled))
        src = str(Path(__file__).resolve().parents[2])
        env_path = os.environ.get("PYTHONPATH", "")
        os.environ["PYTHONPATH"] = src + (os.pathsep + env_path if env_path else "")  # this checkout's bench
        try:
            import_s = median([_fresh_process(["-c", "import bench.cli, bench.leaderboard"], store)
                               for _ in range(cold_repeats)])
            cold = [_fresh_process(["-m", "bench.cli", "leaderboard", "--task", "xray-heart", "--format", "csv",
                                    "--out", str(store / "lb.csv")], store) for _ in range(cold_repeats)]
        finally:
            os.environ["PYTHONPATH"] = env_path
            if not env_path:
                del os.environ["PYTHONPATH"]
        csv_rows = sum(1 for _ in (store / "lb.csv").open()) - 1
        first_s, first_cpu_s, table = timed(lambda: rank("xray-heart"))
        warm = [timed(lambda: rank("xray-heart")) for _ in range(repeats)]
        load_after = os.getloadavg()
    if len(table) != runs or csv_rows != runs or found != runs:
        raise AssertionError(f"leaderboard rows {len(table)} / csv {csv_rows} / store {found} != {runs} runs")
    return {
        "runs": runs,
        "rows": len(table),
        "cold_process_s": median(cold),
        "cold_process_runs_s": cold,
        "import_s": import_s,
        "first_call_s": first_s,
        "first_call_cpu_s": first_cpu_s,
        "warm_s": median([w for w, _, _ in warm]),
        "warm_cpu_s": median([c for _, c, _ in warm]),
        "warm_runs_s": [w for w, _, _ in warm],
        "fill_s": fill_s,
        "check_s": check_s,
        "loadavg_before": list(load_before),
        "loadavg_after": list(load_after),
        "settings": {"runs": runs, "repeats": repeats, "parents": parents, "cold_repeats": cold_repeats,
                     "store": "sqlite (temp folder), filled by bench.perf.synthetic.fill_store"},
    }
