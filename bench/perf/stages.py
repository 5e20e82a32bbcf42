"""Stage cache: one comparison run twice side by side in one process, stage cache off then on, on the same
box under the same load: wall times, their ratio, stage trainings saved, and whether the results tables
(every arm's value, difference, CI, p, verdict) are identical.

The data cache is built before either is timed, so both pay only for training and tracking. Off runs first,
so the on run's stage cache starts empty (each fold x seed's first arm trains the shared stage).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from bench.perf._common import cpu_count, isolated_store, quiet

# The measured comparison (results/perf/stages.json): ct-lung's guidance arms all share its lung stage, the
# stage the cache saves. Other tasks and dimensions are parameters.
WORKLOAD: dict[str, Any] = {"task": "ct-lung", "dimension": "guidance",
                            "arms": ("none", "restrict_output", "lung_channel", "lung_crop", "cascade")}


def stages(task: str | None = None, dimension: str | None = None, arms: Sequence[str] | None = None,
           folds: int = 2, seeds: int = 1, preset: str = "smoke", resamples: int = 500,
           workers: int | None = None) -> dict[str, Any]:
    """Time ``bench compare`` with the stage cache off and on.

    Args:
        task, dimension, arms, folds, seeds, preset: the comparison (as ``bench compare`` takes them; task,
            dimension and arms left out: :data:`WORKLOAD`).
        resamples: bootstrap resamples of the statistics (the same in both runs).
        workers: ``--workers N`` (None: one job after another).

    Returns:
        Wall seconds of each, ``ratio`` (on / off; goal <= 0.6), stage trainings and loads, ``identical``
        (results tables equal except time columns) and the load average before and after.
    """
    import pandas as pd

    from bench.compare import compare
    from bench.tasks import TASKS

    quiet()
    task, dimension = task or WORKLOAD["task"], dimension or WORKLOAD["dimension"]
    arms = arms or WORKLOAD["arms"]
    spec = TASKS.get(task)
    common = {"task": task, "dimension": dimension, "arms": list(arms), "folds": folds, "seeds": seeds,
              "preset": preset, "resamples": resamples, "workers": workers}
    load_before = os.getloadavg()
    timings: dict[str, Any] = {}
    with isolated_store():
        from bench.config import TrialConfig

        template = TrialConfig(task=task, **spec.preset(preset).config)
        for fold in range(folds):  # the data cache is built before anything is timed
            spec.prepare(template.replace(fold=fold))
        results = {}
        for label, on in (("off", False), ("on", True)):
            started = time.perf_counter()
            results[label] = compare(**common, name=f"perf-stages-{label}", stage_cache=on)
            timings[f"{label}_s"] = round(time.perf_counter() - started, 2)
            timings[f"{label}_trained"] = results[label].stages_trained
            timings[f"{label}_loaded"] = results[label].stages_loaded

    def table(result) -> pd.DataFrame:
        return result.table.drop(columns=[c for c in result.table.columns if "hour" in c or "second" in c])

    try:
        pd.testing.assert_frame_equal(table(results["on"]), table(results["off"]))
        identical = results["on"].verdicts == results["off"].verdicts
    except AssertionError:
        identical = False
    ratio = timings["on_s"] / timings["off_s"]
    return {"settings": {**common, "arms": list(arms)}, **timings, "ratio": round(ratio, 3), "goal": "<= 0.6",
            "met": bool(ratio <= 0.6), "identical": identical, "runs": len(arms) * folds * seeds,
            "cores": cpu_count(), "loadavg_before": load_before, "loadavg_after": os.getloadavg()}
