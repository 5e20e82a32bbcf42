"""Progress of a running search: the data step's messages and the trials running in the store (any backend)."""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time


class SearchStatus:
    """The progress line's text: the data step, the last finished trial and the running trials' stage and
    epoch. Running trials are read from the MLflow store every few seconds (their ``*_train_loss`` curve's
    latest step), so trials in worker processes or on Ray show as well as local ones.

    With ``line`` (outside a terminal: a log file, CI, nohup) nothing is redrawn: each data step, each trial
    entering a training stage and each finished trial is handed to ``line`` once, as it happens."""

    POLL_SECONDS = 5.0

    def __init__(self, show, line=None):
        self.show = show
        self.line = line
        self.last = ""  # the last finished trial and the best so far
        self.running = ""
        self._running_stages = ""  # the running trials' stages without epochs: a change is a line
        self._lock = threading.Lock()

    def stage(self, text: str) -> None:
        with self._lock:
            self.last = text
            self._show(text)

    def finished(self, text: str) -> None:
        with self._lock:
            self.last = text
            self._show(text)

    def _show(self, new: str) -> None:
        if self.line is not None:
            self.line(new)
            return
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
            stages = re.sub(r" epoch \d+(/\d+)?", "", text)
            if self.line is None:
                self._show(text)
            elif text and stages != self._running_stages:
                self.line(text)
            self._running_stages = stages


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


@contextlib.contextmanager
def search_display(out, task: str, n_trials: int):
    """``(advance, status)`` of a search: on a terminal a rich progress bar whose status line
    :class:`SearchStatus` redraws; elsewhere (stdout a file or pipe: a batch job's log) one plain line per
    data step, trial stage and finished trial, flushed as it happens, prefixed by the elapsed time and the
    trials done."""
    if out.is_terminal:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TextColumn("{task.fields[status]}"), console=out) as progress:
            bar = progress.add_task(f"search {task}", total=n_trials, status="checking settings…")
            yield (lambda: progress.advance(bar)), SearchStatus(lambda text: progress.update(bar, status=text))
        return
    start = time.monotonic()
    done = [0]
    lock = threading.Lock()  # the poller thread and the search thread both print

    def line(text: str) -> None:
        seconds = int(time.monotonic() - start)
        with lock:
            try:
                print(f"search {task} {seconds // 60}:{seconds % 60:02d} [{done[0]}/{n_trials}] {text}", flush=True)
            except BrokenPipeError:  # `| head` went away: the search's own thread stops (bench.cli.main)
                if threading.current_thread() is threading.main_thread():
                    raise

    def advance() -> None:
        done[0] += 1

    line("checking settings")
    yield advance, SearchStatus(lambda text: None, line=line)
