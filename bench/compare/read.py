"""A finished comparison read back from the store: ``bench leaderboard --comparison RUN_ID|NAME``.

Reads the comparison's parent run (its settings tags) and its ``results.csv`` artifact; ``--export`` copies
the parent run's artifacts (the files ``bench compare --export`` writes) into a folder. Light: MLflow and
pandas only, no torch, no training code.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.compare.runs import COMPARISON_KIND, parents_filter, settings_of
from bench.errors import BenchError
from bench.tracking import EXPERIMENT_PREFIX, KIND_TAG, read_run_artifact
from bench.tracking import client as store_client

RESULTS_CSV = "results.csv"  # the parent run's results table (written by bench.compare.export)
RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class StoredComparison:
    """A comparison's parent run: id, name, task, settings tags, and its results table (one row per
    metric x arm, the columns of :func:`bench.compare_stats.compare_arms` plus unit and trial_hours)."""

    run_id: str
    name: str
    task: str
    tags: dict[str, str]
    table: pd.DataFrame

    @property
    def settings(self) -> dict[str, str]:
        """The settings the comparison was started with (its parent run's setting tags)."""
        return settings_of(self.tags)

    @property
    def metric(self) -> str:
        """The primary metric (the verdicts' one)."""
        return self.tags.get("metric") or str(self.table["metric"].iloc[0])

    def header(self) -> str:
        t = self.tags
        return (f"comparison {self.name} (run {self.run_id}), task {self.task}\n"
                f"dimension {t.get('dimension', '?')}, baseline {t.get('baseline', '?')}, "
                f"{t.get('folds', '?')} folds x seeds {t.get('seeds', '?')}, preset {t.get('preset', '?')}; "
                f"primary metric {self.metric}")


def _experiments(client, task: str | None) -> dict[str, str]:
    """experiment id -> task, of the task's experiment or of every bench task in the store."""
    found = {}
    for experiment in client.search_experiments():
        if experiment.name.startswith(EXPERIMENT_PREFIX):
            name = experiment.name[len(EXPERIMENT_PREFIX) :]
            if task is None or name == task:
                found[experiment.experiment_id] = name
    return found


def _parents(client, experiments: dict[str, str], name: str | None = None) -> list:
    if not experiments:
        return []
    return client.search_runs(list(experiments), filter_string=parents_filter(name), max_results=200,
                              order_by=["attributes.start_time ASC"])


def find_comparison(ref: str, task: str | None = None) -> StoredComparison:
    """The comparison whose parent run id or name (``bench compare --name``) is ``ref``.

    A name is looked up in the task's experiment (every ``bench/<task>`` experiment when ``task`` is None);
    the first comparison started under that name wins, as for ``bench compare --resume``.

    Raises:
        BenchError: no comparison with that id or name (naming the known ones), or it has no results yet.
    """
    client = store_client()
    experiments = _experiments(client, task)
    run = None
    if RUN_ID.fullmatch(ref):
        try:
            candidate = client.get_run(ref)
        except Exception:  # noqa: BLE001  MLflow raises several types for an unknown run id
            candidate = None
        if candidate is not None and candidate.data.tags.get(KIND_TAG) == COMPARISON_KIND:
            run = candidate
    if run is None and "'" not in ref:
        matches = _parents(client, experiments, ref)
        run = matches[0] if matches else None
    if run is None:
        known = sorted({r.data.tags.get("comparison", r.info.run_id) for r in _parents(client, experiments)})
        where = f"task {task}" if task else "this store"
        raise BenchError(f"--comparison must be the parent run id or the name of a comparison in {where}, "
                         f"but got '{ref}'. Known comparisons: {known or 'none'} (`bench compare` prints "
                         f"the id).")
    name = run.data.tags.get("comparison", run.info.run_id)
    try:
        stored = read_run_artifact(client, run.info.run_id, RESULTS_CSV)
    except Exception:  # noqa: BLE001  no such artifact (a comparison still running or killed)
        raise BenchError(f"comparison {name} must have finished to show its results, but its parent run "
                         f"{run.info.run_id} has no {RESULTS_CSV} yet. Finish it with `bench compare --name "
                         f"{name} --resume`.") from None
    task_name = run.data.tags.get("task") or _experiments(client, None).get(run.info.experiment_id, "?")
    return StoredComparison(run.info.run_id, name, task_name, dict(run.data.tags), pd.read_csv(io.BytesIO(stored)))


def export_comparison(stored: StoredComparison, out_dir: str | Path) -> list[Path]:
    """Copy the parent run's artifacts (results.csv, results.md, runs.csv, verdicts.txt, the plots,
    report.html, arm_configs.yaml: what ``bench compare --export`` writes) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    client = store_client()
    names = [f.path for f in client.list_artifacts(stored.run_id) if not f.is_dir]
    for name in names:
        client.download_artifacts(stored.run_id, name, str(out))
    return [out / name for name in names]
