"""Fast bulk read of many runs from an MLflow SQL store, for the leaderboard.

``MlflowClient.search_runs`` turns every run into an entity object through the ORM (about 1.4 ms per run
here: 10,000 runs took 14 s, 98 % of it inside MLflow). A leaderboard needs only four flat tables —
runs, their tags, params and latest metrics — so on SQL stores we read exactly those with MLflow's own
SQLAlchemy models (``mlflow.store.tracking.dbmodels.models``) in four queries and pivot them with pandas.

Only filters made of ``tags.X = 'v'`` / ``params.X = 'v'`` conjunctions (what bench itself asks) take the
fast path, parsed by MLflow's ``SearchUtils``; anything else, a non-SQL store, or an MLflow whose internals
moved returns None and the caller uses the public API. A test checks both paths give the same frame.
"""

from __future__ import annotations

import logging

import pandas as pd

log = logging.getLogger(__name__)

_FAST_CLAUSES = {"tag", "parameter"}


def sql_runs_frame(client, experiment_id: str, filter_string: str) -> pd.DataFrame | None:
    """The frame ``leaderboard.runs_frame`` builds (``run_id``, ``status``, ``start_time``, ``end_time``,
    ``metrics.*``, ``params.*``, ``tags.*``; runs in MLflow's default order: newest start first), or None
    when the fast path does not apply."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlParam, SqlRun, SqlTag
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
        from mlflow.utils.search_utils import SearchUtils

        store = getattr(getattr(client, "_tracking_client", None), "store", None)
        if not isinstance(store, SqlAlchemyStore):
            return None
        clauses = SearchUtils.parse_search_filter(filter_string)
        if any(c["type"] not in _FAST_CLAUSES or c["comparator"] != "=" for c in clauses):
            return None
        with store.ManagedSessionMaker() as session:
            runs = session.query(SqlRun.run_uuid, SqlRun.status, SqlRun.start_time, SqlRun.end_time).filter(
                SqlRun.experiment_id == int(experiment_id), SqlRun.lifecycle_stage == "active")
            for clause in clauses:
                model = SqlTag if clause["type"] == "tag" else SqlParam
                matching = session.query(model.run_uuid).filter(model.key == clause["key"],
                                                                model.value == clause["value"])
                runs = runs.filter(SqlRun.run_uuid.in_(matching))
            ids = runs.with_entities(SqlRun.run_uuid)
            run_rows = runs.all()
            tags = session.query(SqlTag.run_uuid, SqlTag.key, SqlTag.value).filter(SqlTag.run_uuid.in_(ids)).all()
            params = session.query(SqlParam.run_uuid, SqlParam.key, SqlParam.value).filter(
                SqlParam.run_uuid.in_(ids)).all()
            metrics = session.query(SqlLatestMetric.run_uuid, SqlLatestMetric.key, SqlLatestMetric.value,
                                    SqlLatestMetric.is_nan).filter(SqlLatestMetric.run_uuid.in_(ids)).all()
    except Exception as exc:  # noqa: BLE001  any surprise in MLflow's internals: use the public API instead
        log.debug("fast run read not used: %s", exc)
        return None
    if not run_rows:
        return pd.DataFrame()
    base = pd.DataFrame(run_rows, columns=["run_id", "status", "start_time", "end_time"])
    base = base.sort_values(["start_time", "run_id"], ascending=[False, True])
    metric_frame = pd.DataFrame(metrics, columns=["run_id", "key", "value", "is_nan"])
    metric_frame.loc[metric_frame["is_nan"].astype(bool), "value"] = float("nan")
    wide = [_pivot(metric_frame, "metrics."), _pivot(pd.DataFrame(params, columns=["run_id", "key", "value"]), "params."),
            _pivot(pd.DataFrame(tags, columns=["run_id", "key", "value"]), "tags.")]
    frame = base.set_index("run_id").join(wide, how="left").reset_index()
    for col in [c for c in frame.columns if c.startswith("metrics.")]:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def _pivot(long: pd.DataFrame, prefix: str) -> pd.DataFrame:
    if long.empty:
        return pd.DataFrame(index=pd.Index([], name="run_id"))
    wide = long.pivot(index="run_id", columns="key", values="value")
    wide.columns = [f"{prefix}{k}" for k in wide.columns]
    return wide
