"""Replay: rebuild a logged trial's config, retrain it with the same seed and split, and compare."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bench.errors import BenchError
from bench.leaderboard import leaderboard
from bench.tasks import TASKS
from bench.tracking import MlflowReporter, Tracker
from bench.train import run_trial


@dataclass
class ReplayVerdict:
    original_run_id: str
    replay_run_id: str
    metric: str
    original: float
    replayed: float
    tolerance: float

    @property
    def difference(self) -> float:
        return abs(self.replayed - self.original)

    @property
    def reproduced(self) -> bool:
        both_nan = math.isnan(self.original) and math.isnan(self.replayed)
        return both_nan or self.difference <= self.tolerance

    @property
    def verdict(self) -> str:
        return "reproduced" if self.reproduced else "not reproduced"


def best_run_id(task: str, study: str | None = None) -> str:
    table = leaderboard(task, study=study)
    complete = table[table["state"] == "COMPLETE"]
    if complete.empty:
        raise BenchError(f"replay needs a COMPLETE trial of task {task}, but found none. Run a search first.")
    return str(complete.iloc[0]["run_id"])


def replay(task: str, run_id: str | None = None, study: str | None = None, tolerance: float = 1e-6) -> ReplayVerdict:
    spec = TASKS.get(task)
    tracker = Tracker(task)
    run_id = run_id or best_run_id(task, study)
    try:
        original_run = tracker.client.get_run(run_id)
    except Exception as exc:  # MLflow raises its own exception type for a missing run
        raise BenchError(f"--run-id must name a run in {tracker.uri}, but '{run_id}' was not found.") from exc
    original = original_run.data.metrics.get(spec.objective)
    if original is None:
        raise BenchError(f"run {run_id} must have a final '{spec.objective}', but it has none (pruned or failed?).")
    config = tracker.load_config(run_id)
    threads = original_run.data.tags.get("torch_threads")
    if threads and threads.isdigit():
        torch.set_num_threads(int(threads))  # float reductions depend on the thread count
    replay_id = tracker.start_trial(None, f"replay of {original_run.info.run_name}", config,
                                    {"replay_of": run_id}, kind="replay")
    try:
        result = run_trial(config, MlflowReporter(tracker, replay_id))
    except BaseException as exc:
        tracker.end(replay_id, "FAIL", repr(exc))
        raise
    verdict = ReplayVerdict(run_id, replay_id, spec.objective, float(original), float(result.objective), tolerance)
    tracker.log_metrics(replay_id, {**result.metrics, "replay_difference": verdict.difference})
    tracker.set_tags(replay_id, {"replay_verdict": verdict.verdict, "replay_tolerance": tolerance})
    tracker.end(replay_id, "COMPLETE")
    return verdict
