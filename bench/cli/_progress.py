"""Progress of a running search: the data step's messages and the trials running in the store (any backend)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time


class SearchStatus:
    """The progress line's text: the data step, the last finished trial and the running trials' stage and
    epoch. Running trials are read from the MLflow store every few seconds (their ``*_train_loss`` curve's
    latest step), so trials in worker processes or on Ray show as well as local ones."""

    POLL_SECONDS = 5.0

    def __init__(self, show):
        self.show = show
        self.last = ""  # the last finished trial and the best so far
        self.running = ""
        self._lock = threading.Lock()

    def stage(self, text: str) -> None:
        with self._lock:
            self.last = text
            self._show()

    def finished(self, text: str) -> None:
        with self._lock:
            self.last = text
            self._show()

    def _show(self) -> None:
        self.show(" · ".join(t for t in (self.running, self.last) if t))  # what runs now first: lines get cut

    @contextlib.contextmanager
    def watching(self, task: str):
        """Show the data step (logger ``bench.search.prepare``) and poll the store for running trials."""
        handler = _CallbackHandler(self.stage)
        logger = logging.getLogger("bench.search.prepare")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the progress line shows it; no second copy on the terminal
        stop = threading.Event()
        since = int(time.time() * 1000)
        # The first poll runs here, in the caller's thread, before the poller exists: it imports MLflow and
        # bench.tracking and opens the store, so the poller never imports a module while this thread is
        # still importing it (two threads inside MLflow's circular imports hand one of them a partially
        # initialised module: "cannot import name '_get_store'").
        self._poll_once(task, since)
        poller = threading.Thread(target=self._poll, args=(task, since, stop), daemon=True)
        poller.start()
        try:
            yield self
        finally:
            stop.set()
            logger.removeHandler(handler)
            poller.join(timeout=10)

    def _poll(self, task: str, since: int, stop: threading.Event) -> None:
        while not stop.wait(self.POLL_SECONDS):
            self._poll_once(task, since)

    def _poll_once(self, task: str, since: int) -> None:
        try:
            text = running_trials_text(task, since)
        except Exception:  # noqa: BLE001  a busy or locked store: keep the last text, try again later
            return
        with self._lock:
            self.running = text
            self._show()


class _CallbackHandler(logging.Handler):
    """Hands each log message to a callable (the progress line)."""

    def __init__(self, callback):
        super().__init__(logging.INFO)
        self.callback = callback

    def emit(self, record) -> None:
        self.callback(record.getMessage())


def running_trials_text(task: str, since_ms: int) -> str:
    """``running: t004 seg epoch 3/10, t005 cls epoch 1/5`` for the task's trial runs that are RUNNING and
    started after ``since_ms``; "" when none. Stage and epoch come from the run's latest ``<stage>_train_loss``
    step and its ``<stage>_epochs`` param."""
    from bench.tracking import KIND_TAG, running_runs, task_experiment
    from bench.tracking import client as store_client
    from bench.trial import FOLD_KIND, FOLDS_TAG

    client = store_client()
    experiment = task_experiment(task, client)
    if experiment is None:
        return ""
    runs = running_runs(client, experiment.experiment_id, since_ms)
    parts = []
    for run in runs:
        kind, tags = run.data.tags.get(KIND_TAG), run.data.tags
        # a cross-validated trial trains in its fold runs: show the running fold, not the idle trial run
        if not (kind == "trial" and FOLDS_TAG not in tags) and kind != FOLD_KIND:
            continue
        name = (run.info.run_name or run.info.run_id[:8]).split(" ")[0]
        if kind == FOLD_KIND:
            name += f" fold {tags.get('fold', '?')}"
        latest = None  # (timestamp, stage, step)
        for key in (k for k in run.data.metrics if k.endswith("_train_loss")):
            history = client.get_metric_history(run.info.run_id, key)
            if history:
                last = max(history, key=lambda m: (m.timestamp, m.step))
                candidate = (last.timestamp, key[: -len("_train_loss")], last.step)
                latest = max(latest, candidate) if latest else candidate
        if latest is None:
            parts.append(f"{name} starting")
            continue
        _, stage, step = latest
        total = run.data.params.get(f"{stage}_epochs") or run.data.params.get(f"task_params.{stage}_epochs")
        parts.append(f"{name} {stage} epoch {step + 1}" + (f"/{total}" if total else ""))
    if len(parts) > 3:
        parts = parts[:3] + [f"+{len(parts) - 3} more"]
    return ("running: " + ", ".join(parts)) if parts else ""
