"""Stage cache: one comparison three ways, side by side in one process on the same box under the same load.

1. ``bench compare`` with the stage cache **off** (every run trains every stage);
2. ``bench compare`` with the stage cache **on** (each shared stage trained once per fold x seed);
3. **by hand**: the same runs as a user would write them — a plain loop over arms x folds x seeds calling
   the training code (:func:`bench.trial.run_trial`) one after another, no stage cache, no tracking, no
   statistics. Its configs are the ones the comparison trained (each run's logged ``config.yaml``), so its
   values are checked one for one against the comparison's runs.

Figures: wall times, ``ratio`` = on / off (goal <= 0.6), ``by_hand_over_on`` = by hand / on (goal >= 1.6:
bench faster than the hand-written loop), stage trainings saved, ``identical`` (the results tables on and off
equal in every arm's value, difference, CI, p and verdict, time columns aside) and ``by_hand_identical``
(every by-hand run's metrics equal those of the comparison's run of the same arm x fold x seed).

The data cache is built before anything is timed, so every variant pays only for training (and bench's
tracking and statistics). Off runs first, so the on run's stage cache starts empty.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

from bench.perf._common import cpu_count, isolated_store, quiet

RATIO_GOAL = 0.6  # cache on / off
BY_HAND_GOAL = 1.6  # by hand / cache on


# The figure: the xray-heart guidance comparison (its arms share the segmenter stage), 7 arms x 5 folds
# x 1 seed at the cpu preset. A workload, not a per-task rule: other tasks and dimensions are parameters.
WORKLOAD: dict[str, Any] = {"task": "xray-heart", "dimension": "guidance"}


def stages(task: str | None = None, dimension: str | None = None, arms: Sequence[str] | None = None,
           folds: int = 5, seeds: int = 1, preset: str = "cpu", resamples: int = 2000,
           workers: int | None = None, by_hand: bool = True) -> dict[str, Any]:
    """Time ``bench compare`` with the stage cache off and on, and the same runs written by hand.

    Args:
        task, dimension, arms, folds, seeds, preset: the comparison (as ``bench compare`` takes them; arms
            None: every value of the dimension in the preset's space; task and dimension left out:
            :data:`WORKLOAD`). The defaults are the issue's figure: 7 arms x 5 folds x 1 seed, cpu preset.
        resamples: bootstrap resamples of the statistics (the same in both comparisons).
        workers: ``--workers N`` for both comparisons (None: one job after another).
        by_hand: also time the hand-written loop (False: the two comparisons only).

    Returns:
        Wall seconds of each, the ratios and their goals, stage trainings and loads, ``identical``,
        ``by_hand_identical`` (with the differing runs, if any) and the load average before and after.
    """
    import pandas as pd

    from bench.compare import compare
    from bench.tasks import TASKS

    quiet()
    task, dimension = task or WORKLOAD["task"], dimension or WORKLOAD["dimension"]
    spec = TASKS.get(task)
    common = {"task": task, "dimension": dimension, "arms": list(arms) if arms else None, "folds": folds,
              "seeds": seeds, "preset": preset, "resamples": resamples, "workers": workers}
    load_before = os.getloadavg()
    timings: dict[str, Any] = {}
    hand: dict[str, Any] = {}
    with isolated_store():
        template = spec.config(spec.preset(preset).config)
        for fold in range(folds):  # the data cache is built before anything is timed
            spec.prepare(template.replace(fold=fold))
        results = {}
        for label, on in (("off", False), ("on", True)):
            started = time.perf_counter()
            results[label] = compare(**common, name=f"perf-stages-{label}", stage_cache=on)
            timings[f"{label}_s"] = round(time.perf_counter() - started, 2)
            timings[f"{label}_trained"] = results[label].stages_trained
            timings[f"{label}_loaded"] = results[label].stages_loaded
        if by_hand:
            hand = _by_hand(task, "perf-stages-on", results["on"].arms)

    def table(result) -> pd.DataFrame:
        return result.table.drop(columns=[c for c in result.table.columns if "hour" in c or "second" in c])

    try:
        pd.testing.assert_frame_equal(table(results["on"]), table(results["off"]))
        identical = results["on"].verdicts == results["off"].verdicts
    except AssertionError:
        identical = False
    ratio = timings["on_s"] / timings["off_s"]
    arm_names = results["on"].arms
    figures = {"settings": {**common, "arms": list(arm_names), "by_hand": by_hand}, **timings,
           "ratio": round(ratio, 3), "goal": f"<= {RATIO_GOAL}", "met": bool(ratio <= RATIO_GOAL),
           "identical": identical, "runs": len(arm_names) * folds * seeds, "cores": cpu_count()}
    if by_hand:
        over_on = hand["seconds"] / timings["on_s"]
        figures.update({"by_hand_s": round(hand["seconds"], 2), "by_hand_runs": hand["runs"],
                    "by_hand_over_on": round(over_on, 3),
                    "by_hand_over_off": round(hand["seconds"] / timings["off_s"], 3),
                    "by_hand_goal": f">= {BY_HAND_GOAL}", "by_hand_met": bool(over_on >= BY_HAND_GOAL),
                    "by_hand_identical": not hand["differing"], "by_hand_differing": hand["differing"]})
    return {**figures, "loadavg_before": load_before, "loadavg_after": os.getloadavg()}


def _by_hand(task: str, comparison: str, arms: Sequence[str]) -> dict[str, Any]:
    """Train the comparison's runs again the way a user's own loop would: ``run_trial`` per arm x fold x seed,
    one after another, the stage cache off, nothing logged; time it and check each run's metrics against the
    comparison's run (time-dependent metrics aside)."""
    from bench import stages as stage_cache
    from bench.compare.runs import comparison_runs
    from bench.tracking import Tracker
    from bench.trial import run_trial

    tracker = Tracker(task)
    runs = comparison_runs(tracker, comparison)
    logged = {}
    for row in runs.to_dict("records"):
        key = (row["tags.arm"], int(row["tags.fold"]), int(row["tags.seed"]))
        logged[key] = (tracker.load_config(row["run_id"]),  # the config the comparison trained
                       {k[len("metrics."):]: v for k, v in row.items() if k.startswith("metrics.")})
    # the user's loop: arms x folds x seeds, the configs written out, the training code called for each
    todo = sorted(logged, key=lambda k: (k[2], k[1], list(arms).index(k[0])))
    metrics = {}
    with stage_cache.switched(False):
        started = time.perf_counter()
        for key in todo:
            metrics[key] = run_trial(logged[key][0]).metrics
        seconds = time.perf_counter() - started
    differing = []
    for key in todo:
        mine, theirs = metrics[key], logged[key][1]
        shared = sorted(k for k in set(mine) & set(theirs) if "seconds" not in k)
        if not shared or any(not _same(mine[k], theirs[k]) for k in shared):
            differing.append({"arm": key[0], "fold": key[1], "seed": key[2],
                              "metrics": [k for k in shared if not _same(mine[k], theirs[k])] or "none shared"})
    return {"seconds": seconds, "runs": len(todo), "differing": differing}


def _same(a: Any, b: Any) -> bool:
    a, b = float(a), float(b)
    return a == b or (math.isnan(a) and math.isnan(b))
