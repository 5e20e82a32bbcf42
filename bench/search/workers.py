"""Worker processes on one shared Optuna study: thread budget, GPU pinning, spawn, progress.

Each worker is a fresh ``spawn`` process (never ``fork``: torch and MLflow hold threads and sockets that a
forked child must not share) that loads the study from the shared storage and runs its share of trials.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.diskspace import DISK_FULL_EXIT, DiskFull
from bench.errors import ConfigError

if TYPE_CHECKING:
    import optuna

    from bench.search.settings import SearchSettings


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker process needs to join the shared study (picklable for the spawn context)."""

    settings: SearchSettings
    study_name: str
    storage_url: str
    direction: str
    parent_run_id: str
    base_flat: dict[str, Any]
    space_path: str
    n_trials: int  # at most this many trials in this process (its share of what was left when it joined)
    study_total: int = 0  # --trials: the study's total, shared by every process that joins it
    worker: int = 0
    workers: int = 1
    torch_threads: int | None = None
    gpu: str | None = None
    fixed: dict[str, Any] = field(default_factory=dict)  # config keys the data fixes: left out of the space


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers, how many torch threads each, and which GPU each one sees.

    Attributes:
        workers: number of worker processes.
        threads: torch threads per worker, ``max(1, cores // workers)`` so the CPU is not oversubscribed.
        gpus: number of visible GPUs (0 on a CPU machine: nothing is pinned).
    """

    workers: int
    threads: int
    gpus: int = 0

    def gpu(self, worker: int) -> str | None:
        """CUDA_VISIBLE_DEVICES for ``worker``: round robin over the GPUs, None without GPUs."""
        return str(worker % self.gpus) if self.gpus else None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))  # respects taskset/cgroup pinning, unlike os.cpu_count()
    except AttributeError:
        return os.cpu_count() or 1


def gpu_count() -> int:
    """Visible CUDA devices, asked without creating a CUDA context in the driver."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001  a broken driver means "no GPU" here, not a failed search
        return 0


def plan_workers(workers: int | None, trials_per_gpu: int | None, cores: int | None = None,
                 gpus: int | None = None) -> WorkerPlan:
    """Decide worker count, threads and GPU pinning.

    With GPUs and ``trials_per_gpu`` K the default worker count is GPUs × K; without GPUs K is ignored.

    Raises:
        ConfigError: a worker count or trials-per-GPU below 1.
    """
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, but got {workers}. Use --workers 1 for one process.")
    if trials_per_gpu is not None and trials_per_gpu < 1:
        raise ConfigError(f"--trials-per-gpu must be at least 1, but got {trials_per_gpu}.")
    cores = cores if cores is not None else cpu_count()
    gpus = gpus if gpus is not None else gpu_count()
    if workers is None:
        workers = gpus * trials_per_gpu if gpus and trials_per_gpu else 1
    return WorkerPlan(workers=workers, threads=max(1, cores // workers), gpus=gpus)


def split_trials(total: int, workers: int) -> list[int]:
    """Share ``total`` trials out so the shares add up exactly (first workers take the remainder)."""
    return [total // workers + (i < total % workers) for i in range(workers)]


def run_pool(jobs: list[WorkerJob], study: optuna.Study, worker_main: Callable[[WorkerJob], None],
             on_trial: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
             poll_s: float = 1.0) -> None:
    """Start one spawned process per job running ``worker_main(job)`` (a module-level function: the spawn
    context pickles it by name), relay finished trials to ``on_trial``, wait for all.

    Raises:
        BenchError: a worker process died (its trials are closed on the next ``--resume``).
    """
    seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def relay() -> None:
        if on_trial:
            for t in study.get_trials(deepcopy=False):
                if t.state.is_finished() and t.number not in seen:
                    seen.add(t.number)
                    on_trial(study, t)

    run_processes([job for job in jobs if job.n_trials > 0], worker_main, relay, poll_s,
                  resume_hint="continue with --study NAME --resume")


def run_processes(jobs: list, worker_main: Callable, poll: Callable[[], None] | None = None, poll_s: float = 1.0,
                  resume_hint: str = "continue with --resume") -> None:
    """Start one spawned process per job running ``worker_main(job)``, call ``poll()`` while they run (and
    once after the last one ends), wait for all. Each job names its ``worker`` number, ``gpu``
    (CUDA_VISIBLE_DEVICES or None) and ``torch_threads`` (OMP/MKL threads or None), as a
    :class:`WorkerPlan` gives them. Shared by search workers and ``bench compare --workers``.

    Raises:
        BenchError: a worker process died; ``resume_hint`` says how to continue.
    """
    from bench.errors import BenchError

    ctx = mp.get_context("spawn")
    procs = []
    try:
        for job in jobs:
            saved = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
            # The child reads its environment when it starts: pin its GPU and cap native thread pools there.
            if job.gpu is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = job.gpu
            if job.torch_threads:
                os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(job.torch_threads)
            try:
                proc = ctx.Process(target=worker_main, args=(job,), name=f"bench-worker-{job.worker}")
                proc.start()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            procs.append(proc)
        while True:
            alive = any(p.is_alive() for p in procs)
            if poll:
                poll()
            if not alive:
                break
            time.sleep(poll_s)
    except BaseException:
        for p in procs:  # Ctrl-C in the driver: stop our own workers, never leave orphans training
            if p.is_alive():
                p.terminate()
        raise
    finally:
        for p in procs:
            p.join()
    bad = [p for p in procs if p.exitcode != 0]
    if any(p.exitcode == DISK_FULL_EXIT for p in bad):  # a full disk stopped a worker: one line, see diskspace
        from bench.tracking import store_dir

        raise DiskFull(store_dir())
    if bad:
        raise BenchError(f"every worker must exit cleanly, but {', '.join(f'{p.name} exited {p.exitcode}' for p in bad)}. "
                         f"Read its output above, then {resume_hint}.")
