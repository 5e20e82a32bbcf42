"""ct-lung's numbers before and after a change to the shared segmentation code: one smoke trial (phantom,
seed 3), with volumes resident and streamed; every metric and history value written as JSON.

Run it once with the old code and once with the new, then compare::

    PYTHONPATH=<old checkout> python scripts/ct_lung_same_metrics.py run old.json
    PYTHONPATH=.              python scripts/ct_lung_same_metrics.py run new.json
    python scripts/ct_lung_same_metrics.py compare old.json new.json   # exit 1 when anything differs

(use a fresh BENCH_CACHE for each run, so neither reads the other's cache).
"""

from __future__ import annotations

import json
import sys


def run(out: str) -> None:
    from bench import runtime
    from bench.tasks import TASKS
    from bench.trial import run_trial

    spec = TASKS.get("ct-lung")
    result = {}
    for placement in ("resident", "stream"):
        config = spec.config(spec.preset("smoke").config, data="phantom", seed=3)
        with runtime.using(runtime.Runtime.choose(data_placement=placement)):
            trial = run_trial(config)
        result[placement] = {"metrics": trial.metrics, "history": trial.history}
    with open(out, "w") as f:
        json.dump(result, f, sort_keys=True, default=str)


def compare(old: str, new: str) -> int:
    from pathlib import Path

    a, b = (json.loads(Path(path).read_text()) for path in (old, new))
    same = True
    for placement in a:
        for what in ("metrics", "history"):
            equal = a[placement][what] == b[placement][what]
            same &= equal
            print(f"{placement} {what}: {len(a[placement][what])} values, {'identical' if equal else 'DIFFER'}")
    return 0 if same else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
