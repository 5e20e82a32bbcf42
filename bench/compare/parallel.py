"""Where a comparison's arm x fold x seed jobs run: in the driver, in N local worker processes, or on Ray.

Every job, wherever it runs, is :func:`run_job`: one :func:`bench.trial.tracked_trial` (``bench.kind =
compare``) nested under the comparison's parent run, in the same MLflow store (the URI is passed, not
guessed). Only the jobs still missing are handed out, so ``--resume`` never repeats a finished run.

* ``--workers N``: N spawned processes (the search workers' pool, :func:`bench.search.workers.run_processes`:
  torch threads ``cores // N`` each, GPUs round robin) take jobs from **one shared queue**, so a slow arm
  does not leave the other workers idle as a static partition would. The driver puts a job on it only when
  a worker is free, chosen then by :class:`bench.compare.plan.StageQueue`: a job whose shared stage another
  worker is training waits in the driver while any other job can run (it then loads the stage instead of
  holding a worker on the stage's lock). Every job is put on the queue once and taken by one worker, so none
  runs twice. Each result comes back on a second queue, and the driver prints it as the job finishes. A worker whose driver died (kill -9) stops on its own: its open run is
  closed "interrupted" (or left RUNNING, then closed "killed" by the next ``--resume``) and re-run.
* ``--backend ray [--address HOST:PORT]``: one Ray task per job, ``--cpus-per-trial`` /
  ``--gpus-per-trial`` each, on a local Ray (this machine's CPUs) or the cluster at the address, joined
  exactly as ``bench search --backend ray`` does (:func:`bench.search.ray_backend.connect`: token auth, TCP
  pre-check, one clear error).
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.compare.plan import Job, StageKey, StageQueue
from bench.compare.runs import RUN_KIND
from bench.config import TrialConfig
from bench.diskspace import DISK_FULL_EXIT, DiskFull
from bench.errors import BenchError, ConfigError
from bench.tracking import Tracker
from bench.trial import FAIL, TrialOutcome, tracked_trial

BACKENDS = ("optuna", "ray")  # optuna: the default, as in `bench search` (here: the driver or --workers processes)
PARENT_GRACE_S = 10.0  # a worker whose driver died gets this long to close its run before it exits hard

OnResult = Callable[[Job, TrialOutcome], None]


@dataclass(frozen=True)
class JobContext:
    """What every job of one comparison shares (picklable: it travels to worker processes and Ray tasks)."""

    task: str
    uri: str
    comparison: str
    parent_run_id: str
    dimension: str


def run_job(tracker: Tracker, context: JobContext, job: Job, config: TrialConfig,
            extra_tags: dict[str, Any] | None = None) -> TrialOutcome:
    """Train one arm x fold x seed job as a nested ``compare`` run; wherever it runs, this is the job."""
    tags = {"comparison": context.comparison, "arm": job.arm, "dimension": context.dimension, "fold": job.fold,
            "seed": job.seed, **(extra_tags or {})}
    return tracked_trial(tracker, config, name=job.name(context.comparison), parent_run_id=context.parent_run_id,
                         kind=RUN_KIND, tags=tags)


@dataclass(frozen=True)
class JobResult:
    """A finished job as it comes back from another process (no result object, no exception)."""

    job: Job
    run_id: str
    state: str
    reason: str | None
    objective: float
    seconds: float

    @classmethod
    def of(cls, job: Job, outcome: TrialOutcome) -> JobResult:
        return cls(job, outcome.run_id, outcome.state, outcome.reason, outcome.objective, outcome.seconds)

    def outcome(self) -> TrialOutcome:
        return TrialOutcome(self.run_id, self.state, self.reason, (self.objective,), seconds=self.seconds)


@dataclass(frozen=True)
class Execution:
    """How the missing jobs run: ``workers`` local processes, or Ray tasks (``backend == "ray"``)."""

    backend: str = "optuna"
    workers: int = 1
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    @property
    def parallel(self) -> bool:
        return self.backend == "ray" or self.workers > 1

    def start(self, uri: str) -> None:
        """Join the Ray cluster (or start a local Ray) before the comparison logs anything: a cluster it
        cannot join stops it with one clear error and no run behind. Nothing to do for processes."""
        if self.backend == "ray":
            from bench.search.ray_backend import connect

            connect(self.address, _ray_env(uri))

    def stop(self) -> None:
        """Shut down the local Ray :meth:`start` began (a cluster joined with --address keeps running)."""
        if self.backend == "ray" and not self.address:
            import ray

            ray.shutdown()

    def run(self, todo: Sequence[tuple[Job, TrialConfig]], context: JobContext, on_result: OnResult,
            stages: Sequence[Any] = ()) -> None:
        """Run every job of ``todo`` once, calling ``on_result`` in this process as each one finishes.

        ``todo`` comes in :func:`bench.compare.plan.stage_order`'s order; ``stages``: the task's declared
        stages, so that a job waits in the driver (not on a worker) while a stage it shares is being trained.
        """
        queue_ = job_queue(todo, stages)
        if self.backend == "ray":
            run_on_ray(todo, context, on_result, self.cpus_per_trial, self.gpus_per_trial, queue_)
        else:
            run_in_processes(todo, context, on_result, self.workers, jobs=queue_)


def job_queue(todo: Sequence[tuple[Job, TrialConfig]], stages: Sequence[Any] = ()) -> StageQueue:
    """``todo``'s jobs in a :class:`StageQueue` that also sees stages other processes are training (their
    marker lock, :func:`bench.stages.being_trained`)."""
    from bench import stages as stage_cache

    configs = dict(todo)

    def busy(key: StageKey) -> bool:
        return stage_cache.enabled() and stage_cache.being_trained(*key)

    return StageQueue([job for job, _ in todo], configs.__getitem__, stages, busy)


def plan_execution(workers: int | None = None, backend: str = "optuna", address: str | None = None,
                   cpus_per_trial: float | None = None, gpus_per_trial: float | None = None) -> Execution:
    """Check the parallel options together, before anything is created.

    Raises:
        ConfigError: an unknown backend, ``--workers`` below 1 or together with ``--backend ray``,
            ``--address`` / ``--cpus-per-trial`` / ``--gpus-per-trial`` without ``--backend ray``, or
            resources out of range.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {list(BACKENDS)} (optuna: this machine, --workers N "
                          f"processes; ray: Ray tasks), but got '{backend}'.")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, but got {workers}. Use --workers 1 (or leave it out) "
                          "to run the jobs one after another.")
    ray_only = {"--address": address, "--cpus-per-trial": cpus_per_trial, "--gpus-per-trial": gpus_per_trial}
    if backend != "ray":
        given = [flag for flag, value in ray_only.items() if value is not None]
        if given:
            raise ConfigError(f"{', '.join(given)} size Ray tasks, but got them without --backend ray. Add "
                              "--backend ray, or leave them out (--workers N sizes local processes).")
        return Execution("optuna", workers or 1)
    if workers is not None:
        raise ConfigError(f"--workers N runs local processes, but got --workers {workers} with --backend ray. Leave "
                          "--workers out: Ray runs as many jobs at once as --cpus-per-trial/--gpus-per-trial allow.")
    cpus = 1.0 if cpus_per_trial is None else cpus_per_trial
    gpus = 0.0 if gpus_per_trial is None else gpus_per_trial
    if cpus <= 0 or gpus < 0:
        raise ConfigError(f"--cpus-per-trial must be > 0 and --gpus-per-trial >= 0, but got {cpus} and {gpus}.")
    return Execution("ray", 1, address, cpus, gpus)


# --- local worker processes ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessWorker:
    """One worker process of a comparison (the shape :func:`bench.search.workers.run_processes` expects)."""

    context: JobContext
    todo: Any  # multiprocessing Queue of (Job, TrialConfig) or None (stop), fed by :class:`Dispatch`
    done: Any  # multiprocessing Queue of JobResult
    worker: int
    workers: int
    torch_threads: int | None = None
    gpu: str | None = None


def run_in_processes(todo: Sequence[tuple[Job, TrialConfig]], context: JobContext, on_result: OnResult,
                     workers: int, poll_s: float = 0.5, jobs: StageQueue | None = None) -> None:
    """Run ``todo`` in ``workers`` spawned processes sharing one job queue; relay each result as it lands.

    ``jobs``: the order and the stage-aware choice of the next job (default: ``todo``'s order, no stages).

    Raises:
        BenchError: a worker process died (the comparison continues with ``--name NAME --resume``).
    """
    import multiprocessing as mp

    from bench.search.workers import plan_workers, run_processes

    if not todo:
        return
    plan = plan_workers(workers, None)  # threads from N, not from the jobs left: a job's threads never vary
    n_procs = min(plan.workers, len(todo))
    ctx = mp.get_context("spawn")
    dispatch = Dispatch(todo, jobs or job_queue(todo), ctx.Queue(), ctx.Queue(), on_result)
    procs = [ProcessWorker(context, dispatch.to_workers, dispatch.results, i, plan.workers, plan.threads,
                           plan.gpu(i)) for i in range(n_procs)]
    dispatch.start(n_procs)
    run_processes(procs, spawned_worker, dispatch.relay, poll_s,
                  resume_hint=f"continue with --name {context.comparison} --resume")
    dispatch.relay(timeout=10.0)  # results a worker sent just before it exited
    if dispatch.missing:
        raise BenchError(f"every job must report back, but {dispatch.missing} of {len(todo)} did not. Continue "
                         f"with --name {context.comparison} --resume (finished runs are kept).")


class Dispatch:
    """The driver's side of the workers' shared job queue: one item goes on it per free worker (a job, or the
    end marker None once no job is left), the job :class:`StageQueue` picks at that moment; a result coming
    back frees its job's stages and its worker.

    Args:
        todo: (job, config) pairs.
        jobs: the jobs of ``todo``, handed out in its choice.
        to_workers: queue the workers take ``(job, config)`` or None from (:func:`serve`).
        results: queue the workers put :class:`JobResult` on.
        on_result: called in the driver for each finished job.
    """

    def __init__(self, todo: Sequence[tuple[Job, TrialConfig]], jobs: StageQueue, to_workers: Any, results: Any,
                 on_result: OnResult) -> None:
        self.configs = dict(todo)
        self.jobs, self.to_workers, self.results, self.on_result = jobs, to_workers, results, on_result
        self.received = 0

    @property
    def missing(self) -> int:
        return len(self.configs) - self.received

    def start(self, workers: int) -> None:
        """One item for each of ``workers`` idle workers."""
        for _ in range(workers):
            self._hand_out()

    def _hand_out(self) -> None:
        job = self.jobs.take()
        self.to_workers.put(None if job is None else (job, self.configs[job]))

    def relay(self, timeout: float | None = None) -> None:
        """Take the results that came back (waiting up to ``timeout`` for each; none: only those there now),
        give each one's worker its next item, report them."""
        while self.missing:
            try:
                result: JobResult = self.results.get(timeout=timeout) if timeout else self.results.get_nowait()
            except queue.Empty:
                return
            self.received += 1
            self.jobs.done(result.job)
            self._hand_out()  # before reporting: the worker that sent it is idle now
            self.on_result(result.job, result.outcome())


def serve(to_workers: Any, results: Any, run: Callable[[Job, TrialConfig], JobResult],
          keep_going: Callable[[], bool] = lambda: True) -> None:
    """A worker's loop: take an item, run its job, put the result, until the end marker (or ``keep_going``
    says stop)."""
    while (item := to_workers.get()) is not None and keep_going():
        results.put(run(*item))


def spawned_worker(worker: ProcessWorker) -> None:
    """Entry point of a worker process: take jobs from the shared queue until its end marker."""
    import torch

    from bench.logs import quiet_libraries

    quiet_libraries()
    driver = os.getppid()
    _stop_with_driver(driver)
    if worker.torch_threads:
        # Set before any job so the run's torch_threads tag is the count really used.
        torch.set_num_threads(worker.torch_threads)
    tracker = Tracker(worker.context.task, worker.context.uri)
    tags = {"worker": worker.worker, "workers": worker.workers}

    def run(job: Job, config: TrialConfig) -> JobResult:
        return JobResult.of(job, run_job(tracker, worker.context, job, config, tags))

    try:
        serve(worker.todo, worker.done, run, lambda: os.getppid() == driver)
    except KeyboardInterrupt:  # SIGTERM from the driver or its death: the open run is closed "interrupted"
        raise SystemExit(1) from None
    except DiskFull:  # its run is closed "no space left on device"; the driver prints the one line
        raise SystemExit(DISK_FULL_EXIT) from None


def _stop_with_driver(driver: int, poll_s: float = 1.0) -> None:
    """SIGTERM becomes KeyboardInterrupt (tracked_trial then closes the open run "interrupted"), and a
    watchdog sends it when the driver is gone (kill -9), so no orphan keeps training; if the worker does not
    stop within :data:`PARENT_GRACE_S` it exits hard and ``--resume`` closes its run "killed"."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(PARENT_GRACE_S)
        os._exit(1)

    threading.Thread(target=watch, name="bench-driver-watch", daemon=True).start()


# --- Ray ----------------------------------------------------------------------------------------------
def ray_job(context: JobContext, job: Job, config: TrialConfig, threads: int) -> JobResult:
    """One job as a Ray task: its own tracker on the shared store, the runtime policy of its device."""
    import torch

    torch.set_num_threads(max(1, threads))
    outcome = run_job(Tracker(context.task, context.uri), context, job, config, {"backend": "ray"})
    return JobResult.of(job, outcome)


def _ray_env(uri: str) -> dict[str, str]:
    """What Ray workers (other processes, maybe other machines) need: the store, the cache, our import path
    (as ``bench search --backend ray`` passes them)."""
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
           "BENCH_CACHE": os.path.abspath(os.environ.get("BENCH_CACHE", ".bench/cache")),
           "BENCH_STAGE_CACHE": os.environ.get("BENCH_STAGE_CACHE", "on")}
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return env


def run_on_ray(todo: Sequence[tuple[Job, TrialConfig]], context: JobContext, on_result: OnResult,
               cpus: float, gpus: float, jobs: StageQueue | None = None) -> None:
    """One Ray task per job (no retries: a job whose worker died is re-run by ``--resume``); results are
    relayed as they finish. Every job :class:`StageQueue` does not hold back is submitted at once; a job
    whose shared stage is being trained is submitted when a job finishes and it is free (it then loads the
    stage instead of holding a Ray slot on the stage's lock), or, when nothing else is in flight, anyway.
    Ray must already be connected (:meth:`Execution.start`)."""
    import ray

    from bench.compare.runs import close_killed

    remote = ray.remote(ray_job).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
    configs = dict(todo)
    jobs = jobs or job_queue(todo)
    pending = {}

    def submit_ready() -> None:
        while (job := jobs.take(wait=not pending)) is not None:
            pending[remote.remote(context, job, configs[job], max(1, int(cpus)))] = job

    try:
        submit_ready()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(ready[0])
            jobs.done(job)
            submit_ready()  # its stage is stored (or it failed): the jobs waiting on it may start
            try:
                result: JobResult = ray.get(ready[0])
            except Exception as exc:  # noqa: BLE001  the task's worker died: its run is left RUNNING
                reason = f"killed: Ray task failed ({type(exc).__name__})"
                on_result(job, TrialOutcome("", FAIL, reason))
                continue
            on_result(job, result.outcome())
        # A run only a dead worker could have left open: closed "killed", so --resume runs its job again.
        close_killed(Tracker(context.task, context.uri), context.comparison)
    except BaseException:
        for ref in pending:  # Ctrl-C: KeyboardInterrupt in each task, whose run is closed "interrupted"
            ray.cancel(ref)
        raise
