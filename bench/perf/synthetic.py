"""Synthetic MLflow stores for leaderboard timing: thousands of trial runs written in one SQL transaction.

Creating runs through ``MlflowClient`` costs one transaction per call (~20 ms each on SQLite, so 10,000
runs with their params, metrics and tags took about half an hour). Here the rows go straight into
MLflow's own tables (``mlflow.store.tracking.dbmodels.models``: runs, params, tags, metrics,
latest_metrics) with SQLAlchemy ``executemany`` in one transaction, after ``MlflowClient`` has created
the schema (migrations), the experiment and the parent runs. The rows are what ``SqlAlchemyStore``
would write for ``create_run`` + ``log_batch`` + ``set_terminated``: run name in ``runs.name`` and tag
``mlflow.runName``, each final metric in both ``metrics`` and ``latest_metrics``. :func:`check_store`
reads them back through ``MlflowClient.search_runs`` so a schema change in MLflow shows up as an error,
not as a wrong figure.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np

GUIDANCE = ("none", "soft_mask", "multiply", "crop", "channel", "gate")
LOSSES = ("dice", "dice_ce", "tversky", "focal_tversky", "generalized_dice")
ARCHS = ("unet", "fpn", "deeplabv3plus", "unetplusplus")
METRIC_NAMES = ("val_auroc", "test_auroc", "test_shifted_auroc", "val_heart_dice", "n_weights")


def synthetic_run(i: int, rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    """Params, tags and final metrics of synthetic trial ``i`` (the searched dimensions of the cpu space)."""
    guidance, loss, arch = GUIDANCE[i % len(GUIDANCE)], LOSSES[(i // 6) % len(LOSSES)], ARCHS[(i // 30) % len(ARCHS)]
    params = {"seg_arch": arch, "seg_loss": loss, "guidance": guidance, "lr": float(10 ** rng.uniform(-4, -2)),
              "task_params.cls_lr": float(10 ** rng.uniform(-4, -2)), "batch_size": int(rng.choice([8, 16, 32])),
              "optimiser": str(rng.choice(["adam", "adamw", "sgd"])), "seed": 0, "seg_encoder": "resnet18"}
    if loss in ("tversky", "focal_tversky"):
        params["seg_loss_params.alpha"] = float(rng.uniform(0.3, 0.7))
    auroc = float(np.clip(0.7 + 0.05 * (guidance == "soft_mask") + 0.03 * rng.standard_normal(), 0, 1))
    metrics = {"val_auroc": auroc, "test_auroc": auroc - 0.01, "test_shifted_auroc": auroc - 0.08,
               "val_heart_dice": float(rng.uniform(0.6, 0.95)), "n_weights": float(rng.integers(10**5, 10**7))}
    return {"params": params, "metrics": metrics}


def fill_store(n: int, task: str, study: str = "perf-synthetic", parents: int = 4,
               seed: int = 0) -> dict[str, Any]:
    """Write ``n`` finished trial runs, nested under ``parents`` search runs, into the tracker's SQL store.

    Every 7th trial is PRUNED (status KILLED, no test metrics), the rest COMPLETE (FINISHED).

    Args:
        n: trial runs.
        task: whose experiment (``bench/<task>``) receives them (the runs carry xray-heart's params and
            metrics, whatever the task).
        study: ``study`` tag of every run.
        parents: search (parent) runs; trial i nests under parent i % parents.
        seed: RNG seed of the synthetic values.

    Returns:
        ``parents`` (run ids), ``trials`` (run ids in order), ``rows`` (rows inserted per table).
    """
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlParam, SqlRun, SqlTag
    from sqlalchemy import create_engine, insert

    from bench.tracking import KIND_TAG, STATE_TAG, Tracker

    tracker = Tracker(task)  # creates the schema and experiment through MLflow itself
    if not tracker.uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        raise ValueError(f"fill_store needs an SQL tracking store, but got {tracker.uri}.")
    parent_ids = [tracker.start_run(f"search {study} {k}", {KIND_TAG: "search", "study": study})
                  for k in range(parents)]
    for pid in parent_ids:
        tracker.end(pid, "COMPLETE")
    location = tracker.client.get_experiment(tracker.experiment_id).artifact_location.rstrip("/")
    rng = np.random.default_rng(seed)
    now = int(time.time() * 1000)
    tables: dict[str, list[dict[str, Any]]] = {"runs": [], "params": [], "tags": [], "metrics": []}
    trial_ids = []
    for i in range(n):
        run_id, name = uuid.uuid4().hex, f"t{i:05d}"
        trial_ids.append(run_id)
        pruned = i % 7 == 6
        content = synthetic_run(i, rng)
        start = now - (n - i) * 60_000
        tables["runs"].append({
            "run_uuid": run_id, "name": name, "source_type": "LOCAL", "source_name": "", "entry_point_name": "",
            "user_id": "bench-perf", "status": "KILLED" if pruned else "FINISHED", "start_time": start,
            "end_time": start + 55_000, "deleted_time": None, "source_version": "", "lifecycle_stage": "active",
            "artifact_uri": f"{location}/{run_id}/artifacts", "experiment_id": int(tracker.experiment_id)})
        tags = {KIND_TAG: "trial", STATE_TAG: "PRUNED" if pruned else "COMPLETE", "trial_number": i,
                "study": study, "mlflow.parentRunId": parent_ids[i % parents], "mlflow.runName": name,
                "seed": 0, "backend": "optuna", "split_hash": "0" * 64}
        tables["tags"] += [{"key": k, "value": str(v), "run_uuid": run_id} for k, v in tags.items()]
        tables["params"] += [{"key": k, "value": str(v), "run_uuid": run_id} for k, v in content["params"].items()]
        metrics = {k: v for k, v in content["metrics"].items() if not (pruned and k.startswith("test"))}
        tables["metrics"] += [{"key": k, "value": v, "timestamp": start + 55_000, "step": 0, "is_nan": False,
                               "run_uuid": run_id} for k, v in metrics.items()]
    engine = create_engine(tracker.uri)
    try:
        with engine.begin() as conn:  # one transaction: SQLite syncs once, not once per row
            conn.execute(insert(SqlRun.__table__), tables["runs"])
            conn.execute(insert(SqlParam.__table__), tables["params"])
            conn.execute(insert(SqlTag.__table__), tables["tags"])
            conn.execute(insert(SqlMetric.__table__), tables["metrics"])
            conn.execute(insert(SqlLatestMetric.__table__), tables["metrics"])
    finally:
        engine.dispose()
    return {"task": task, "parents": parent_ids, "trials": trial_ids, "rows": {k: len(v) for k, v in tables.items()}}


def check_store(filled: dict[str, Any], seed: int = 0, sample: int = 20) -> int:
    """Read the runs :func:`fill_store` wrote (``filled``, its answer) back through ``MlflowClient``; raise if any
    count, param, metric or tag differs.

    Returns:
        The number of trial runs found (``len(filled["trials"])`` when all is well).
    """
    from bench.leaderboard import runs_frame
    from bench.tracking import KIND_TAG, Tracker

    tracker = Tracker(filled["task"])
    frame = runs_frame(tracker, f"tags.`{KIND_TAG}` = 'trial'").set_index("run_id")
    if set(frame.index) != set(filled["trials"]):
        raise AssertionError(f"expected {len(filled['trials'])} trial runs back, found {len(frame)}")
    rng = np.random.default_rng(seed)
    expected = [synthetic_run(i, rng) for i in range(len(filled["trials"]))]
    for i in np.linspace(0, len(filled["trials"]) - 1, min(sample, len(filled["trials"])), dtype=int):
        run = tracker.client.get_run(filled["trials"][i])
        want = expected[i]
        pruned = i % 7 == 6
        if run.data.params != {k: str(v) for k, v in want["params"].items()}:
            raise AssertionError(f"run {i}: params differ: {run.data.params} vs {want['params']}")
        metrics = {k: v for k, v in want["metrics"].items() if not (pruned and k.startswith("test"))}
        if run.data.metrics != metrics:
            raise AssertionError(f"run {i}: metrics differ: {run.data.metrics} vs {metrics}")
        if run.data.tags.get("mlflow.parentRunId") != filled["parents"][i % len(filled["parents"])]:
            raise AssertionError(f"run {i}: not nested under its parent")
        if run.info.status != ("KILLED" if pruned else "FINISHED") or run.info.run_name != f"t{i:05d}":
            raise AssertionError(f"run {i}: status {run.info.status} / name {run.info.run_name} wrong")
    return len(frame)
