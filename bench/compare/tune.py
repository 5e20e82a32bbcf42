"""``bench compare --tune N``: each arm gets its own small study of N trials with an equal budget.

The arm's study searches the rest of the task's space with D fixed to the arm (a copy of the space file
whose D has that single choice), on fold 0 of the standard split, through the ordinary search driver
(:func:`bench.search.backends.run_search`, Optuna, TPE + median pruner); its best trial's configuration is
then evaluated on every fold x seed like a fixed one. No arm wins because it got more tuning ("tuned
baselines"). The studies are named ``<comparison>-tune-<arm>`` in the default Optuna journal, so a resumed
comparison continues an interrupted study instead of starting over.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bench.compare.plan import PARAMS_OF, RUN_FIELDS, Dimension
from bench.config import TrialConfig, atomic_write_text
from bench.errors import BenchError
from bench.tracking import Tracker, store_dir


def arm_space(space_path: str | Path, dimension: str, arm: Any, out: Path, spellings: tuple[str, ...] = ()) -> Path:
    """Write the space of ``space_path`` with ``dimension`` (also spelt as one of ``spellings`` in the file,
    e.g. a task parameter without its ``task_params.``) fixed to ``arm`` to ``out``."""
    data = yaml.safe_load(Path(space_path).read_text())
    fixed = {"type": "categorical", "choices": [arm]}
    params = dict(data["params"])
    spelt = next((name for name in (dimension, *spellings) if name in params), None)
    data["params"] = ({(dimension if k == spelt else k): (fixed if k == spelt else v) for k, v in params.items()}
                      if spelt else {dimension: fixed, **params})
    atomic_write_text(out, yaml.safe_dump(data, sort_keys=False))
    return out


def tune_arm(task: str, preset: str, space_path: str, dimension: Dimension, arm: Any, template: TrialConfig,
             trials: int, comparison: str, seed: int = 0) -> tuple[TrialConfig, str, str]:
    """Run (or resume) the arm's study; returns its best configuration, the study name and the search's
    parent run id (tagged with the comparison by the driver).

    Raises:
        BenchError: no trial of the study completed.
    """
    import optuna

    from bench.search.driver import SearchSettings
    from bench.search.optuna_backend import default_storage, make_storage, run_search

    label = dimension.label(arm)
    study = f"{comparison}-tune-{label}"
    path = arm_space(space_path, dimension.key, arm,
                     store_dir() / ".bench" / "compare" / comparison / f"space-{label}.yaml", (dimension.name,))
    skip = set(RUN_FIELDS) | {PARAMS_OF.get(dimension.name, "")}
    overrides: Mapping[str, Any] = {k: v for k, v in template.to_dict().items() if k not in skip}
    storage = default_storage()
    exists = study in optuna.get_all_study_names(make_storage(storage, heartbeat=False))
    settings = SearchSettings(task=task, preset=preset, data=template.data, data_format=template.data_format,
                              trials=trials, seed=seed, study=study, resume=exists, space=str(path), fold=0,
                              overrides=dict(overrides), storage=storage)
    summary = run_search(settings)
    if not summary.best_run_id:
        raise BenchError(f"--tune needs a completed trial per arm, but the study {study} of arm {label} has none "
                         f"({'; '.join(summary.fail_reasons[:2]) or 'all pruned'}). Raise --tune or check the arm.")
    return Tracker(task).load_config(summary.best_run_id), study, summary.parent_run_id
