"""Leaderboard: trial runs read back from MLflow, ranked by the task's objective in its own direction."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.config import atomic_write_text
from bench.errors import BenchError
from bench.metrics import higher_is_better
from bench.tasks import TASKS
from bench.tracking import KIND_TAG, STATE_TAG, Tracker, experiment_name

ALWAYS_SHOWN = ("seg_arch", "seg_loss", "guidance")
FORMATS = ("table", "csv", "md", "json")


def leaderboard(task: str, study: str | None = None, top: int | None = None, kind: str = "trial") -> pd.DataFrame:
    """Trials of ``task`` (optionally one study), best first; unfinished trials rank last."""
    import mlflow

    spec = TASKS.get(task)
    tracker = Tracker(task)
    flt = f"tags.`{KIND_TAG}` = '{kind}'"
    if study:
        flt += f" AND tags.study = '{study}'"
    runs = mlflow.search_runs(experiment_ids=[tracker.experiment_id], filter_string=flt, output_format="pandas",
                              max_results=100000)
    if runs.empty:
        where = f" in study '{study}'" if study else ""
        raise BenchError(
            f"the leaderboard needs finished trials in experiment '{experiment_name(task)}'{where}, but found none "
            f"in {tracker.uri}. Run `bench search --task {task}` first (in this folder, or set MLFLOW_TRACKING_URI)."
        )
    objective = f"metrics.{spec.objective}"
    if objective not in runs:
        runs[objective] = float("nan")
    params = [c for c in runs.columns if c.startswith("params.")]
    varying = [c for c in params if runs[c].nunique(dropna=True) > 1 or c[len("params."):] in ALWAYS_SHOWN]
    metric_cols = sorted(c for c in runs.columns if c.startswith("metrics.") and c[len("metrics."):].startswith(
        ("val_", "test_")))
    table = pd.DataFrame({
        "run": runs["tags.mlflow.runName"] if "tags.mlflow.runName" in runs else runs["run_id"],
        "run_id": runs["run_id"],
        "state": runs.get(f"tags.{STATE_TAG}", pd.Series("?", index=runs.index)).fillna("RUNNING"),
        "trial": pd.to_numeric(runs.get("tags.trial_number"), errors="coerce"),
    })
    table[spec.objective] = runs[objective]
    for c in sorted(varying):
        numeric = pd.to_numeric(runs[c], errors="coerce")
        table[c[len("params."):]] = numeric if numeric.notna().all() else runs[c]
    for c in metric_cols:
        name = c[len("metrics."):]
        if name != spec.objective:
            table[name] = runs[c]
    ascending = not higher_is_better(spec.objective)
    table["_complete"] = table["state"].eq("COMPLETE")
    table = table.sort_values(["_complete", spec.objective], ascending=[False, ascending], na_position="last")
    table = table.drop(columns="_complete").reset_index(drop=True)
    table.index = table.index + 1
    table.index.name = "rank"
    return table.head(top) if top else table


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt not in FORMATS:
        raise BenchError(f"format must be one of {list(FORMATS)}, but got '{fmt}'.")
    if fmt == "csv":
        return table.to_csv()
    if fmt == "json":
        return json.dumps(json.loads(table.reset_index().to_json(orient="records")), indent=1)
    if fmt == "md":
        return _markdown(table)
    return table.drop(columns=["run_id"]).to_string(float_format=lambda v: f"{v:.4f}")


def _markdown(table: pd.DataFrame) -> str:
    frame = table.reset_index()
    cells = [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    return "\n".join([header, rule] + ["| " + " | ".join(r) + " |" for r in cells]) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.4f}"
    return str(value)


def write(table: pd.DataFrame, fmt: str, out: str | Path) -> Path:
    return atomic_write_text(out, render(table, fmt))
