"""How a parallel comparison hands out its jobs (bench.compare.plan.StageQueue, bench.compare.parallel.Dispatch):
a worker never waits on a stage another worker is training while another job could run. Deterministic:
events order the jobs, nothing sleeps."""

from __future__ import annotations

import queue
import threading

from bench import stages
from bench.compare.parallel import Dispatch, JobResult, serve
from bench.compare.plan import Job, StageQueue, plan_jobs, stage_order
from bench.config import TrialConfig
from bench.trial import COMPLETE, TrialOutcome

SEG = stages.Stage("xray-heart", "seg", "1", fields=("lr",))
BASE = TrialConfig(task="xray-heart", lr=0.01)
WAIT_S = 60  # a guard against a hang, never reached when the order is right


def config_of(job: Job) -> TrialConfig:
    return BASE.replace(fold=job.fold, seed=job.seed)


def two_folds() -> list[Job]:
    """Arms a and b over 2 folds in stage_order's order: a f0 and a f1 train the segmenter of their fold,
    b f0 and b f1 load it."""
    ordered, saved = stage_order(plan_jobs(["a", "b"], 2, [0]), config_of, [SEG])
    assert ordered == [Job("a", 0, 0), Job("a", 1, 0), Job("b", 0, 0), Job("b", 1, 0)] and saved == 2
    return ordered


def test_a_job_whose_stage_is_being_trained_waits_while_another_can_run():
    a0, a1, b0, b1 = two_folds()
    jobs = StageQueue([a0, a1, b0, b1], config_of, [SEG])
    assert (jobs.take(), jobs.take()) == (a0, a1)  # the two segmenters train at once
    jobs.done(a1)  # fold 1's segmenter is stored; fold 0's is still training
    assert jobs.blocked(b0) and not jobs.blocked(b1)
    assert jobs.take() == b1  # not b0, which would wait on a0's lock
    assert jobs.take(wait=False) is None  # only b0 is left and a0 still trains it: Ray holds it back
    assert jobs.take() == b0 and len(jobs) == 0  # a free worker with nothing else to do takes it and waits
    assert jobs.take() is None
    unshared = StageQueue([a0, b0], config_of, [])  # a task without stages: the order as given
    assert (unshared.take(), unshared.take()) == (a0, b0)


def test_a_stage_another_process_is_training_is_seen_by_its_marker_lock(workdir):
    """The trainer holds the stage's training marker (a real flock) while it trains, so a scheduler in
    another process (another comparison on the same cache) hands out other work meanwhile."""
    a0, _, b0, b1 = two_folds()
    seen = {}

    def train(log):
        key = SEG.share_key(config_of(a0))
        seen["during"] = stages.being_trained(SEG.task, SEG.name, key)
        jobs = StageQueue([b0, b1], config_of, [SEG], busy=lambda k: stages.being_trained(*k))
        seen["first"] = jobs.take()
        return {}, {}

    assert not stages.being_trained(SEG.task, SEG.name, SEG.share_key(config_of(a0)))  # no marker yet
    stages.run_stage(SEG, config_of(a0), data_key="d", split_hash="s", reporter=_Quiet(), train=train)
    assert seen == {"during": True, "first": b1}
    assert not stages.being_trained(SEG.task, SEG.name, SEG.share_key(config_of(a0)))  # released after training


class _Quiet:
    def log(self, metrics, step):
        pass


def test_two_workers_the_second_runs_the_job_whose_stage_is_stored_before_the_one_still_training():
    """Two worker threads on the real dispatch loop: a f0 trains fold 0's segmenter until fold 1's reuser has
    run; a worker that asks meanwhile gets b f1 (stage stored), not b f0 (stage being trained)."""
    ordered = two_folds()
    a0, a1, b0, b1 = ordered
    started: list[tuple[str, Job]] = []
    lock = threading.Lock()
    b1_ran = threading.Event()

    def job_body(job: Job, config: TrialConfig) -> JobResult:
        with lock:
            started.append((threading.current_thread().name, job))
        if job == a0:
            assert b1_ran.wait(WAIT_S), "b f1 never ran while a f0 trained fold 0's segmenter"
        if job == b1:
            b1_ran.set()
        return JobResult.of(job, TrialOutcome(f"run-{job.arm}{job.fold}", COMPLETE, None, (0.5,)))

    reported: list[Job] = []
    to_workers, results = queue.Queue(), queue.Queue()
    dispatch = Dispatch([(j, config_of(j)) for j in ordered], StageQueue(ordered, config_of, [SEG]), to_workers,
                        results, lambda job, outcome: reported.append(job))
    dispatch.start(2)
    workers = [threading.Thread(target=serve, args=(to_workers, results, job_body), name=f"w{i}") for i in (0, 1)]
    for w in workers:
        w.start()
    while dispatch.missing:
        dispatch.relay(timeout=WAIT_S)
    for w in workers:
        w.join(WAIT_S)
        assert not w.is_alive()  # each got its end marker
    trainer = next(name for name, job in started if job == a0)
    other = [job for name, job in started if name != trainer]
    assert other[:2] == [a1, b1]  # the second worker: its own segmenter, then the job that loads it
    assert [job for _, job in started].index(b1) < [job for _, job in started].index(b0)
    assert sorted(reported, key=ordered.index) == ordered  # every job once
    assert to_workers.empty()
