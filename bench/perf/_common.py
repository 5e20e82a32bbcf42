"""Helpers shared by the perf suites: timing, medians, machine description, an isolated store."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

MACHINE_NOTE = "2-core CPU shared with other jobs; timings are noisy, ratios come from one run"


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Run ``fn`` and return (wall seconds, process CPU seconds, its result).

    Process CPU time counts every thread of this process, so it is less sensitive to other jobs on the
    machine than wall time (but counts intra-op threads twice where wall time does not).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def machine() -> dict[str, Any]:
    """What the figures were measured on (cores, threads, GPU or its absence, versions)."""
    import torch

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cores": cpu_count(), "cpu": model, "torch_threads": torch.get_num_threads(), "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__, "note": MACHINE_NOTE,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


@contextlib.contextmanager
def isolated_store(root: str | Path | None = None) -> Iterator[Path]:
    """A throwaway working folder holding the MLflow store, Optuna journal and data cache.

    Perf runs must never write into the user's store (their leaderboard would fill with perf trials).
    The folder becomes the working directory because MLflow puts artifacts under ./mlruns.
    """
    saved_env = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "BENCH_CACHE")}
    saved_cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="bench-perf-", dir=root) as tmp:
        path = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{path / 'mlflow.db'}"
        os.environ.setdefault("BENCH_CACHE", str(path / "cache"))
        os.chdir(path)
        try:
            yield path
        finally:
            os.chdir(saved_cwd)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def quiet() -> None:
    """Silence Optuna/MLflow chatter so a suite's JSON is the only thing a --json run prints."""
    import logging
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
    warnings.filterwarnings("ignore", message=".*experimental feature.*")
    with contextlib.suppress(ImportError):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
