"""Scaling: trials per hour with 1 vs N worker processes on one shared Optuna study (``run_search``).

On a CPU box each worker gets ``cores // workers`` torch threads (bench.search.workers.plan_workers), so
the figure says how much process-level parallelism beats intra-op threads for small trials. GPU packing
(several trials per GPU) is measured only where a GPU exists.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

from bench.perf._common import cpu_count, isolated_store, quiet, timed


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # spawned workers, counted once joined
    return usage.ru_utime + usage.ru_stime


def scale(workers: list[int] | tuple[int, ...] = (1, 2), trials: int = 6, preset: str = "smoke",
          cls_epochs: int = 4, trials_per_gpu: list[int] | tuple[int, ...] = (1, 2), seed: int = 0,
          overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Trials/hour for each worker count (no pruning, same trial budget), plus GPU packing where a GPU exists.

    Data is prepared once before the first search, so no variant pays for building the cache.

    Args:
        workers: worker counts to compare (the first is the baseline).
        trials: trials per search; preset: task preset; cls_epochs: classifier epochs per trial.
        trials_per_gpu: concurrent trials per GPU to compare (ignored without a GPU).
        seed: search seed.
        overrides: further TrialConfig values on top of the preset.

    Returns:
        ``trials_per_hour`` per worker count, ``speedup`` of each over the first, CPU seconds (driver and
        workers) per trial, and ``gpu`` (packing figures, or a note saying why none were taken).
    """
    import time

    from bench.search.optuna_backend import SearchSettings, base_config, run_search
    from bench.search.workers import gpu_count
    from bench.tasks import TASKS

    quiet()
    task = "xray-heart"
    overrides = {**(overrides or {}), "cls_epochs": cls_epochs}
    rows: dict[str, dict[str, Any]] = {}

    def one(label: str, n_workers: int | None, per_gpu: int | None = None) -> None:
        storage = str(Path.cwd() / "optuna.journal")
        settings = SearchSettings(task=task, preset=preset, trials=trials, seed=seed, pruner="none",
                                  storage=storage, study=f"perf-scale-{label}-{time.time_ns()}",
                                  overrides=overrides, workers=n_workers, trials_per_gpu=per_gpu)
        children = _children_cpu()
        wall, cpu, summary = timed(lambda: run_search(settings))
        finished = summary.n_complete + summary.n_pruned + summary.n_failed
        rows[label] = {"workers": n_workers, "trials": finished, "failed": summary.n_failed, "wall_s": wall,
                       "trials_per_hour": finished / wall * 3600,
                       "cpu_s": cpu + _children_cpu() - children}

    with isolated_store():
        TASKS.get(task).prepare(base_config(SearchSettings(task=task, preset=preset, overrides=overrides)))
        for n in workers:
            one(f"w{n}", n)
        gpus = gpu_count()
        if gpus:
            for k in trials_per_gpu:
                one(f"gpu-x{k}", None, k)
    base = rows[f"w{workers[0]}"]["trials_per_hour"]
    speedup = {label: row["trials_per_hour"] / base for label, row in rows.items() if label.startswith("w")}
    top = f"w{workers[-1]}"
    return {
        "trials_per_hour": {label: row["trials_per_hour"] for label, row in rows.items()},
        "speedup": speedup,
        "speedup_max_workers": speedup[top],
        "goal": f"speedup with {workers[-1]} workers > 1 (no numeric goal set)",
        "met": speedup[top] > 1,
        "cores": cpu_count(),
        "gpu": ({label: row for label, row in rows.items() if label.startswith("gpu")} if gpus else
                {"skipped": "no GPU on this machine; GPU packing (--trials-per-gpu) not measured"}),
        "settings": {"preset": preset, "trials": trials, "cls_epochs": cls_epochs, "workers": list(workers),
                     "pruner": "none", "seed": seed, "overrides": overrides},
        "runs": rows,
    }
