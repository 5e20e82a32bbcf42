"""A comparison in MLflow: its parent run, its nested runs, and what ``--resume`` finds there.

Layout, in the task's experiment ``bench/<task>``: one parent run (``bench.kind = comparison``, tag
``comparison = <name>``, the settings as tags, the arm configurations and results as artifacts) and one
nested run per arm x fold x seed (``bench.kind = compare``, tags comparison, arm, dimension, fold, seed),
each made by :func:`bench.trial.tracked_trial`.

On ``--resume`` a run counts as finished, and is not repeated, when it is COMPLETE or FAILed with a reason
of its own (a NaN loss stays a failure: rerunning would fail again). Runs left RUNNING by a killed process
are closed FAIL "killed"; those and runs closed "interrupted" (Ctrl-C) are run again. ``--resume`` assumes
no other process is working on the same comparison.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import yaml

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.tracking import KIND_TAG, REASON_TAG, STATE_TAG, Tracker, ended_on_its_own

COMPARISON_KIND = "comparison"  # bench.kind of the parent run
RUN_KIND = "compare"  # bench.kind of each arm x fold x seed run
ARM_CONFIGS = "arm_configs.yaml"  # parent artifact: arm -> its configuration (fold and seed set per run)
SETTING_TAGS = ("dimension", "arms", "baseline", "folds", "seeds", "preset", "space", "metric", "mode",
                "config_source", "tune_trials", "data", "data_format")


def _quote(value: str) -> str:
    if "'" in value:
        raise ConfigError(f"a comparison name must not contain quotes, but got {value!r}. Pick another --name.")
    return value


def parents_filter(name: str | None = None) -> str:
    """MLflow filter of comparison parent runs: every one, or comparison ``name``'s."""
    flt = f"tags.`{KIND_TAG}` = '{COMPARISON_KIND}'"
    return flt if name is None else f"{flt} AND tags.comparison = '{_quote(name)}'"


def find_parent(tracker: Tracker, name: str) -> Any | None:
    """The parent run of comparison ``name`` (an MLflow Run), or None."""
    runs = tracker.search(parents_filter(name), limit=1, oldest_first=True)
    return runs[0] if runs else None


def stored_settings(parent: Any) -> dict[str, str]:
    """The settings a comparison was started with (its parent run's tags)."""
    return settings_of(parent.data.tags)


def settings_of(tags: Mapping[str, str]) -> dict[str, str]:
    """The comparison settings among a parent run's ``tags``."""
    return {k: tags[k] for k in SETTING_TAGS if k in tags}


def open_parent(tracker: Tracker, name: str, tags: Mapping[str, Any], existing: Any | None) -> str:
    """Start the parent run, or reopen ``existing`` (resume) with its status set back to RUNNING."""
    from bench.tracking import environment_tags

    if existing is not None:
        return tracker.reopen(existing.info.run_id)
    commit = environment_tags().get("git_commit", "unknown")
    return tracker.start_parent(COMPARISON_KIND, f"compare {name}", {"comparison": name, "commit": commit, **tags})


def comparison_runs(tracker: Tracker, name: str) -> pd.DataFrame:
    """Every nested run of comparison ``name``: run_id, status, start/end time, metrics.*, params.*, tags.*."""
    from bench.leaderboard import runs_frame

    return runs_frame(tracker, comparison_filter(name))


def comparison_filter(name: str) -> str:
    """MLflow filter of comparison ``name``'s nested runs."""
    return f"tags.`{KIND_TAG}` = '{RUN_KIND}' AND tags.comparison = '{_quote(name)}'"


def close_killed(tracker: Tracker, name: str) -> int:
    """Close the nested runs a killed process left RUNNING as FAIL "killed"; returns how many."""
    return len(tracker.close_open(comparison_filter(name)))


def run_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per nested run: run_id, arm, fold, seed, state, reason, seconds, finished, and its metrics."""
    columns = ["run_id", "arm", "fold", "seed", "state", "reason", "seconds", "start_time", "finished"]
    if runs.empty:
        return pd.DataFrame(columns=columns)

    def tag(key: str) -> pd.Series:
        return runs.get(f"tags.{key}", pd.Series(None, index=runs.index, dtype=object))

    table = pd.DataFrame({
        "run_id": runs["run_id"], "arm": tag("arm").astype(str),
        "fold": pd.to_numeric(tag("fold"), errors="coerce").astype("Int64"),
        "seed": pd.to_numeric(tag("seed"), errors="coerce").astype("Int64"),
        "state": tag(STATE_TAG).fillna("RUNNING"), "reason": tag(REASON_TAG).fillna(""),
        "seconds": (pd.to_numeric(runs["end_time"], errors="coerce")
                    - pd.to_numeric(runs["start_time"], errors="coerce")) / 1000.0,
        "start_time": pd.to_numeric(runs["start_time"], errors="coerce"),
    })
    table["finished"] = [ended_on_its_own(s, r) for s, r in zip(table["state"], table["reason"])]
    metrics = {c[len("metrics."):]: runs[c] for c in runs.columns if c.startswith("metrics.")}
    table = pd.concat([table, pd.DataFrame(metrics, index=runs.index)], axis=1)
    return table.sort_values(["seed", "fold", "arm", "start_time"], kind="stable").reset_index(drop=True)


def finished_keys(table: pd.DataFrame) -> set[tuple[str, int, int]]:
    """(arm, fold, seed) of the runs that ended on their own: not repeated on --resume."""
    if table.empty:
        return set()
    done = table[table["finished"].astype(bool)]
    return {(str(a), int(f), int(s)) for a, f, s in zip(done["arm"], done["fold"], done["seed"])}


def log_arm_configs(tracker: Tracker, parent: str, configs: Mapping[str, TrialConfig]) -> None:
    text = yaml.safe_dump({arm: config.to_dict() for arm, config in configs.items()}, sort_keys=False)
    tracker.log_bytes(parent, ARM_CONFIGS, text.encode())


def load_arm_configs(tracker: Tracker, parent: str) -> dict[str, TrialConfig]:
    """The arm configurations a resumed comparison was started with (empty when it logged none yet)."""
    if ARM_CONFIGS not in tracker.artifact_names(parent):
        return {}
    data = yaml.safe_load(tracker.read_artifact(parent, ARM_CONFIGS)) or {}
    return {str(arm): TrialConfig.from_dict(values) for arm, values in data.items()}
