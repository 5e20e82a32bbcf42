"""`bench ui`: the MLflow UI on 127.0.0.1 over the working folder's store, opened on the leaderboard view.

The MLflow UI (3.x) keeps a runs view's state (filter, sort, shown columns) in the URL and, for its "share"
button, as an experiment tag ``mlflow.sharedViewState.<key>`` that ``#/experiments/<id>/runs?
viewStateShareKey=<key>`` restores. ``publish_view`` writes such a tag per task: the trials of the latest
search, best first by the task's objective, with the objective, the searched dimensions and the task's
headline metrics as columns. Sorting by a metric also lists nested trial runs flat, so no parent row has
to be expanded. The experiment's description (tag ``mlflow.note.content``, Markdown) says what the view
shows and links the search's parent run, whose own description is its top-10 leaderboard.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from bench.cli._common import add_task, require_store, store_location

VIEW_KEY = "bench-leaderboard"  # viewStateShareKey of the view `bench ui` opens (one per experiment)
VIEW_TAG = "mlflow.sharedViewState."  # MLflow UI's experiment tag prefix for shared views
NOTE_TAG = "mlflow.note.content"  # MLflow's description tag (experiments and runs), rendered as Markdown
KIND_TAG = "mlflow.experimentKind"  # without it MLflow 3 may infer a GenAI experiment and open "traces"
NOTE_START = "**Leaderboard of "  # how bench's experiment description starts (a person's own is kept)
DEFAULT_PORT = 5000  # `mlflow ui`'s port: what the URL `bench search` prints assumes


def add_parser(sub) -> None:
    s = sub.add_parser(
        "ui",
        help="MLflow UI on 127.0.0.1, opened on the leaderboard of the latest search",
        description="Start the MLflow UI on 127.0.0.1 over the store bench writes "
        "(MLFLOW_TRACKING_URI or ./mlflow.db; it must exist already) and print the URL of the "
        "leaderboard view: the trials of the latest search, best first, with the objective, the "
        "searched dimensions and the task's headline metrics as columns.",
    )
    add_task(s, required=False)
    s.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one, printed)")
    s.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    s.set_defaults(func=run)


@dataclass
class View:
    """The leaderboard view of one task's experiment."""

    task: str
    experiment_id: str
    study: str | None  # latest search's study; None when the store holds trials of no search
    parent_run_id: str | None
    started: int  # ms since the epoch of the latest search (0 without one): the newest task is opened

    def url(self, base: str) -> str:
        return f"{base}/#/experiments/{self.experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def view_state(task: str, study: str | None, searched: list[str]) -> dict:
    """The shared view state: URL facets (filter, order) and UI state (shown columns) of the runs table."""
    from bench.metrics import higher_is_better
    from bench.tasks import TASKS

    spec = TASKS.get(task)
    from bench.tracking import KIND_TAG

    flt = f"tags.`{KIND_TAG}` = 'trial'" + (f" AND tags.study = '{study}'" if study else "")
    metrics = [spec.objective, *[m for m in spec.headline if m != spec.objective]]
    columns = ([f"metrics.`{m}`" for m in metrics] + [f"params.`{p}`" for p in searched]
               + ["attributes.`Duration`"])
    return {
        "searchFilter": flt,
        "orderByKey": f"metrics.`{spec.objective}`",
        "orderByAsc": not higher_is_better(spec.objective),
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": columns,
        "columnOrder": columns,  # the objective first: MLflow would sort metric columns by name
        # narrow: MLflow prints every digit and cuts with "…"; 4 decimals and the sort arrow still show
        "columnWidths": {c: 105 for c in columns},
        "runListHidden": False,
        "viewMaximized": False,
    }


def description(task: str, view: View) -> str:
    """Markdown shown on the experiment page: what the leaderboard view holds and where the search run is."""
    from bench.metrics import higher_is_better
    from bench.tasks import TASKS

    spec = TASKS.get(task)
    direction = "higher" if higher_is_better(spec.objective) else "lower"
    scope = f"of the latest search, study **{view.study}**" if view.study else "of this experiment"
    first = (f"{NOTE_START}{task}**: trials {scope}, best first by **{spec.objective}** ({direction} is "
             "better), with the headline metrics and the searched dimensions as columns.")
    lines = [first]
    if view.parent_run_id:
        lines.append(f"The search's run [`{view.study}`](#/experiments/{view.experiment_id}/runs/"
                     f"{view.parent_run_id}) holds its top-10 table, counts and settings.")
    lines.append(f"Open this view again with `bench ui --task {task}`; `bench leaderboard --task {task}` prints "
                 "it in the terminal.")
    return "\n\n".join(lines)


def publish_view(task: str) -> View | None:
    """Write the leaderboard view (shared view state, kind, description) on ``task``'s experiment.

    Returns:
        The view, or None when the store has no experiment for the task (nothing is created).
    """
    from bench.tracking import client as store_client
    from bench.tracking import latest_search_run, task_experiment

    client = store_client()
    experiment = task_experiment(task, client)
    if experiment is None:
        return None
    latest = latest_search_run(client, experiment.experiment_id)
    study = latest.data.tags.get("study") if latest else None
    searched = [s for s in (latest.data.tags.get("search.searched", "") if latest else "").split(",") if s]
    if not searched:
        from bench.leaderboard import ALWAYS_SHOWN

        searched = list(ALWAYS_SHOWN)
    view = View(task, experiment.experiment_id, study, latest.info.run_id if latest else None,
                latest.info.start_time if latest else 0)
    tags = {VIEW_TAG + VIEW_KEY: json.dumps(view_state(task, study, searched))}
    if KIND_TAG not in experiment.tags:
        tags[KIND_TAG] = "custom_model_development"
    if experiment.tags.get(NOTE_TAG, NOTE_START).startswith(NOTE_START):  # never overwrite a person's own text
        tags[NOTE_TAG] = description(task, view)
    for key, value in tags.items():
        client.set_experiment_tag(experiment.experiment_id, key, value)
    return view


def publish_views(task: str | None = None) -> View | None:
    """Publish the view of ``task``, or of every task with an experiment; returns the one to open (the
    task's, else the one with the newest search), None when the store has no bench experiment."""
    from bench.tasks import TASKS

    views = [v for v in (publish_view(t) for t in ([task] if task else TASKS.names())) if v is not None]
    return max(views, key=lambda v: v.started) if views else None


def run(args) -> int:
    import socket
    import subprocess

    uri = require_store("bench ui", args.task)
    store_file = store_location()[1]
    view = publish_views(args.task)

    port = args.port
    if not port:
        # Ask the OS for a free port on loopback; a small race with other programs is acceptable here.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    print(f"MLflow UI on {base} over {uri} (Ctrl-C stops it)", flush=True)
    if view:
        print(f"Leaderboard of {view.task}" + (f", study {view.study}" if view.study else "")
              + f": {view.url(base)}", flush=True)
    journal = (store_file.parent if store_file else Path.cwd()) / "optuna.journal"  # where searches put it
    if journal.exists():
        print(f"Optuna studies: pip install optuna-dashboard && optuna-dashboard {journal}", flush=True)
    # One worker: a personal UI needs no more, and each extra worker costs seconds of start-up and memory.
    return subprocess.call(
        [
            sys.executable,
            "-m",
            "mlflow",
            "ui",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--backend-store-uri",
            uri,
        ]
    )
