"""Tracking cost: time spent in MLflow (``Tracker`` calls) during one trial, and leaderboard time on a big store.

The trial is run exactly as the Optuna objective runs it (start_trial, per-epoch ``MlflowReporter.log``,
final metrics, artifacts, learning curve, end), with every Tracker call timed through a proxy.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from typing import Any

from bench.perf._common import isolated_store, median, quiet, timed
from bench.perf.synthetic import fill_store  # bulk SQL insert: 10,000 runs in seconds, not half an hour


class TimedTracker:
    """Forwards every method call to a Tracker and adds its wall time to ``seconds[name]``.

    Calls a Tracker makes on itself (start_trial → start_run, log_params) are not double counted: they go
    to the real object, not through the proxy.
    """

    def __init__(self, tracker):
        self._tracker = tracker
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def __getattr__(self, name: str):
        attr = getattr(self._tracker, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started
                self.calls[name] += 1

        return call


def tracking(preset: str = "cpu", overrides: dict[str, Any] | None = None, n_runs: int = 500,
             leaderboard_repeats: int = 3) -> dict[str, Any]:
    """MLflow time as a share of one trial's time (goal: <= 1%), and leaderboard seconds over ``n_runs`` runs.

    Args:
        preset: task preset of the timed trial (``cpu``: the default search budget; ``smoke``: seconds).
        overrides: TrialConfig values on top of the preset.
        n_runs: synthetic trial runs in the store the leaderboard reads (the trial above adds one); the
            ``leaderboard`` suite times the leaderboard alone, cold and warm.
        leaderboard_repeats: leaderboard calls; the median is reported.

    Returns:
        ``share`` (Tracker seconds / trial seconds including them), ``tracker_s`` per method with call
        counts, ``trial_s``, ``tracker_init_s`` (once per worker, reported apart), ``leaderboard_s`` and
        ``fill_s`` for ``n_runs`` runs.
    """
    from bench.leaderboard import leaderboard
    from bench.search.optuna_backend import SearchSettings, base_config
    from bench.tasks import TASKS
    from bench.tracking import MlflowReporter, Tracker
    from bench.trial import run_trial

    quiet()
    task = "xray-heart"
    with isolated_store():
        config = base_config(SearchSettings(task=task, preset=preset, overrides=dict(overrides or {})))
        # Data preparation is per search, not per trial (run_search does it before any trial): untimed.
        config = config.replace(split_hash=TASKS.get(task).prepare(config).split_hash)
        init_s, _, tracker = timed(lambda: Tracker(task))
        proxy = TimedTracker(tracker)

        def trial():
            run_id = proxy.start_trial(None, "perf tracking", config, {"trial_number": 0, "study": "perf"})
            result = run_trial(config, MlflowReporter(proxy, run_id))
            proxy.log_metrics(run_id, result.metrics)
            proxy.log_trial_artifacts(run_id, result.config, result.state_dicts, result.history)
            proxy.log_learning_curve(run_id, result.history)
            proxy.end(run_id, "COMPLETE")
            return result

        trial_s, trial_cpu_s, result = timed(trial)
        tracker_s = sum(proxy.seconds.values())

        fill_s, _, _ = timed(lambda: fill_store(n_runs, task))
        lb_times, rows = [], 0
        for _ in range(leaderboard_repeats):
            wall, _, table = timed(lambda: leaderboard(task))
            lb_times.append(wall)
            rows = len(table)
        load = os.getloadavg()
    share = tracker_s / trial_s
    return {
        "share": share,
        "goal": "<= 0.01",
        "met": share <= 0.01,
        "trial_s": trial_s,
        "trial_cpu_s": trial_cpu_s,
        "tracker_total_s": tracker_s,
        "tracker_s": {k: {"seconds": v, "calls": proxy.calls[k]} for k, v in sorted(proxy.seconds.items())},
        "tracker_init_s": init_s,
        "epochs": len(result.history),
        "leaderboard_s": median(lb_times),
        "leaderboard_rows": rows,
        "leaderboard_runs": n_runs,
        "fill_s": fill_s,
        "loadavg": list(load),
        "settings": {"preset": preset, "overrides": dict(overrides or {}), "n_runs": n_runs,
                     "leaderboard_repeats": leaderboard_repeats, "store": "sqlite (temp folder)"},
    }
