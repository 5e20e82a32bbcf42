"""MLflow layout: experiment ``bench/<task>``, one parent run per search, one nested run per trial.

All writes go through ``MlflowClient`` with explicit run ids (no global active run), so several workers
can log to one store. A PHI guard (:mod:`bench.phi`) refuses params/tags that can carry patient identifiers.

MLflow is imported when a :class:`Tracker` is made, not with this module: the leaderboard reads SQL stores
without it (:mod:`bench.store_read`) and imports the tag names from here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.config import TrialConfig
from bench.diskspace import DISK_FULL, disk_full, is_disk_full
from bench.errors import BenchError
from bench.phi import check_no_phi

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

KIND_TAG = "bench.kind"  # search | trial | replay
STATE_TAG = "bench.state"  # COMPLETE | PRUNED | FAIL (Optuna's words)
FOLD_KIND = "fold"  # bench.kind of a cross-validated trial's per-fold runs (the leaderboard lists "trial" runs)
FOLDS_TAG = "folds"  # tag on a cross-validated trial's run: K, the folds 0..K-1 its metrics are the mean of
FOLD_OF_TAG = "bench.fold_of"  # tag on a fold run: the run id of the cross-validated trial it belongs to
REASON_TAG = "bench.reason"  # why a run was pruned or failed
KILLED = "killed"  # reason of a run its dead process left RUNNING, closed by a later sweep
INTERRUPTED = "interrupted"  # reason of a run unwound by Ctrl-C / a stop request
# ended by a dead or stopped process or a full disk, not by the run itself: --resume runs them again
RERUN_REASONS = (KILLED, INTERRUPTED, DISK_FULL)
OPEN_STATUSES = ("RUNNING", "SCHEDULED")
REPEAT_TAG = "bench.repeat_of"  # a seed repeat's original run id
REPEAT_KIND = "repeat"  # bench.kind of seed repeats
PACKAGES = ("torch", "monai", "segmentation-models-pytorch", "optuna", "mlflow", "numpy", "bench")


def ended_on_its_own(state: str | None, reason: str | None) -> bool:
    """The one rule for "this run is finished" (``--resume`` skips it, ``--trials N`` counts it): COMPLETE or
    PRUNED, or FAIL with a reason of its own (a NaN loss stays a failure: running it again fails again);
    not a run its process left behind (no reason, ``killed``, ``interrupted``) or a full disk stopped."""
    if state in ("COMPLETE", "PRUNED"):
        return True
    return state == "FAIL" and bool(reason) and reason not in RERUN_REASONS


def full_store_path(exc: BaseException) -> Path:
    """Where a disk-full error met in a run's writes most likely is: the sqlite store's file when the store
    said so ("database or disk is full"), else the store's folder (an ``OSError`` names its own file)."""
    uri = tracking_uri()
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    if uri.startswith("sqlite:///") and any("database or disk is full" in text for text in chain):
        return Path(uri[len("sqlite:///") :])
    return store_dir()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def store_dir() -> Path:
    """Folder of the tracking store (for the Optuna journal beside it); the working folder otherwise."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///") :]).parent
    if uri.startswith("file:"):
        return Path(uri[len("file:") :].lstrip("/")).parent if uri.startswith("file:///") else Path.cwd()
    return Path.cwd()


EXPERIMENT_PREFIX = "bench/"  # every task's experiment: bench/<task>


def experiment_name(task: str) -> str:
    return f"{EXPERIMENT_PREFIX}{task}"


def git_commit() -> str:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10,
                             check=False)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if sha.returncode != 0:
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment_tags() -> dict[str, str]:
    """Versions, commit, device, torch threads and the active runtime policy (``bench.runtime.*``)."""
    import torch

    from bench import runtime

    return {**_static_environment(), "torch_threads": str(torch.get_num_threads()), **runtime.current().tags()}


@functools.lru_cache(maxsize=1)
def _static_environment() -> dict[str, str]:
    """Versions, commit and device do not change within a process; git is asked once, not per trial."""
    import torch  # only runs that train ask: reading the store never imports torch

    tags = {f"version.{p}": _version(p) for p in PACKAGES}
    tags.update({
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "device": "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    })
    return tags


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


class Tracker:
    """Writes the bench MLflow layout for one task."""

    def __init__(self, task: str, uri: str | None = None):
        self.task = task
        from mlflow.tracking import MlflowClient

        self.uri = uri or tracking_uri()
        self.client = MlflowClient(tracking_uri=self.uri)
        self._pending: dict[str, list] = {}  # run id -> MLflow RunOperations of asynchronous metric logging
        self._epochs: dict[str, int] = {}  # run id -> epochs reported so far (all stages)
        self._ended: set[str] = set()  # runs this tracker closed (``closing`` leaves them as they are)
        name = experiment_name(task)
        found = self.client.get_experiment_by_name(name)
        self.experiment_id = found.experiment_id if found else self.client.create_experiment(name)

    # --- runs ----------------------------------------------------------------------------------------
    def start_run(self, name: str, tags: Mapping[str, str], parent_id: str | None = None) -> str:
        tags = dict(tags)
        if parent_id:
            tags["mlflow.parentRunId"] = parent_id
        check_no_phi(tags, "tags")
        run = self.client.create_run(self.experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})
        return run.info.run_id

    def start_parent(self, kind: str, name: str, tags: Mapping[str, Any]) -> str:
        """Start a run that holds others (``kind`` search or comparison): its kind, the environment and
        ``tags``; close it through :meth:`closing`."""
        return self.start_run(name, {KIND_TAG: kind, **environment_tags(), **{k: str(v) for k, v in tags.items()}})

    def reopen(self, run_id: str) -> str:
        """Set a closed parent run back to RUNNING (``--resume``); close it again through :meth:`closing`."""
        self.client.update_run(run_id, status="RUNNING")
        self._ended.discard(run_id)
        self.set_tags(run_id, {"resumed": "true"})
        return run_id

    def start_search(self, name: str, settings: Mapping[str, Any]) -> str:
        return self.start_parent("search", name, {f"search.{k}": v for k, v in settings.items()})

    def start_trial(self, parent_id: str | None, name: str, config: TrialConfig, tags: Mapping[str, Any],
                    kind: str = "trial") -> str:
        all_tags = {KIND_TAG: kind, "seed": config.seed, "split_hash": config.split_hash,
                    "config_hash": config.config_hash(), **environment_tags(), **tags}
        run_id = self.start_run(name, {k: str(v) for k, v in all_tags.items()}, parent_id)
        try:
            self.log_params(run_id, config.flat())
            self.log_dataset(run_id, config)
        except BaseException as exc:  # the run exists: never leave it RUNNING behind a failed start
            self.end(run_id, "FAIL", f"could not record the run: {type(exc).__name__}: {exc}")
            raise
        return run_id

    def log_dataset(self, run_id: str, config: TrialConfig, context: str = "train") -> bool:
        """Record the trial's data as an MLflow dataset input (lineage); False when the split is unknown.

        The dataset is named after the source (``phantom`` or the data folder's name), its digest is the
        split's sha256 (first 36 hex digits, MLflow's limit; the full hash is the input tag
        ``bench.split_sha256``) and its source is the data path or ``builtin:phantom``. Only the source and
        the split hash are recorded: no case list, so no patient identifier can leak through it.

        Args:
            run_id: the trial (or replay) run.
            config: the trial config; ``data``, ``data_format`` and ``split_hash`` are used.
            context: the ``mlflow.data.context`` input tag.

        Returns:
            True when a dataset input was logged.
        """
        from mlflow.entities import Dataset, DatasetInput, InputTag

        if not config.split_hash:
            return False
        phantom = config.data == "phantom"
        dataset = Dataset(
            name="phantom" if phantom else (Path(config.data).name or "data"),
            digest=config.split_hash[:36],
            source_type="builtin" if phantom else "local",
            source=json.dumps({"uri": "builtin:phantom" if phantom else str(Path(config.data).resolve()),
                               "format": config.data_format}),
        )
        tags = [InputTag("mlflow.data.context", context), InputTag("bench.split_sha256", config.split_hash),
                InputTag("bench.fold", str(config.fold))]
        from mlflow.exceptions import MlflowException

        for attempt in range(3):
            try:
                self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])
                return True
            except MlflowException as exc:
                # Two workers logging the same new dataset at once: MLflow looks it up, finds none, and both
                # insert it; the loser hits the store's unique key. Once the row exists a retry links to it.
                if attempt == 2 or "unique constraint" not in str(exc).lower():
                    raise
                time.sleep(0.2 * (attempt + 1))

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        check_no_phi(params, "params")
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(run_id, params=items[start : start + 100])

    def log_metrics(self, run_id: str, metrics: Mapping[str, float], step: int = 0, wait: bool = True) -> None:
        """Log metrics at ``step``; ``wait=False`` hands them to MLflow's background logging queue (per-epoch
        curves: the trial does not wait for the store's write), and ``end`` waits for them before closing."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()
                 if not math.isnan(float(v))]  # NaN is not logged
        if not items:
            return
        if wait:
            self.client.log_batch(run_id, metrics=items)
        else:
            self._pending.setdefault(run_id, []).append(
                self.client.log_batch(run_id, metrics=items, synchronous=False))

    def log_epoch(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        """One epoch's curves (asynchronous); ``end`` logs how many epochs the run reported as
        ``epochs_trained``, for pruned and failed runs too (the report's anytime curve over epochs)."""
        self._epochs[run_id] = self._epochs.get(run_id, 0) + 1
        self.log_metrics(run_id, metrics, step, wait=False)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        check_no_phi(tags, "tags")
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def set_description(self, run_id: str, markdown: str) -> None:
        """The run's description (MLflow tag ``mlflow.note.content``), rendered as Markdown on its page."""
        self.client.set_tag(run_id, "mlflow.note.content", markdown[:60000])

    def log_trial_artifacts(self, run_id: str, config: TrialConfig, state_dicts: Mapping[str, Any] | None,
                            history: list | None = None, model: Mapping[str, Any] | None = None) -> None:
        """config.yaml, history.json and, with weights, checkpoint.pt and model.json (what predicting with
        them needs: ``bench.model_file``; ``model`` is the task's part of it)."""
        from bench import model_file

        files = {"config.yaml": config.to_yaml().encode()}
        if history is not None:
            files["history.json"] = json.dumps(history, indent=1).encode()
        if state_dicts:
            import io

            import torch

            # Serialised in memory, written as plain bytes: a full disk is then an OSError naming the file,
            # not torch's "unexpected pos" RuntimeError.
            buffer = io.BytesIO()
            torch.save({k: dict(v) for k, v in state_dicts.items()}, buffer)
            files[model_file.WEIGHTS_FILE] = buffer.getvalue()
            files[model_file.MODEL_FILE] = model_file.dumps(model_file.manifest(config, model)).encode()
        self._log_files(run_id, files)

    def _log_files(self, run_id: str, files: Mapping[str, bytes]) -> None:
        """Log ``files`` (name -> bytes) as artifacts of the run through a temporary folder (MLflow uploads
        files). A full disk is :class:`bench.diskspace.DiskFull`, and the files this call began in a local
        artifact store are removed: a failed write leaves no half file in the run."""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                for name, data in files.items():
                    (Path(tmp) / name).write_bytes(data)
                self.client.log_artifacts(run_id, tmp)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            folder = self._local_artifacts(run_id)
            for name in files if folder else ():
                with contextlib.suppress(OSError):
                    (folder / name).unlink(missing_ok=True)
            raise disk_full(exc, folder or tempfile.gettempdir()) from None

    def _local_artifacts(self, run_id: str) -> Path | None:
        """The run's artifact folder when the artifact store is a local folder, else None."""
        try:
            uri = self.client.get_run(run_id).info.artifact_uri
        except Exception:  # noqa: BLE001  a store that cannot answer (full) has nothing to clean here
            return None
        if uri.startswith("file://"):
            return Path(uri[len("file://"):])
        return Path(uri) if "://" not in uri and uri.startswith("/") else None

    def log_result(self, run_id: str, result: Any, seconds: float | None = None) -> dict[str, float]:
        """Everything a finished trial logs: final and cost metrics, config/history/checkpoint, curve, previews.

        Args:
            run_id: the trial's run.
            result: its ``TrialResult``.
            seconds: the trial's wall time (logged as ``trial_seconds``).

        Returns:
            The final metrics it logged, cost metrics included.
        """
        from bench.metrics import cost_metrics

        logged = {**result.metrics, **cost_metrics(result.state_dicts, seconds)}
        self.log_metrics(run_id, logged)
        if getattr(result, "tags", None):  # e.g. bench.runtime.compile_fallback
            self.set_tags(run_id, result.tags)
        self.log_trial_artifacts(run_id, result.config, result.state_dicts, result.history,
                                 getattr(result, "model", None))
        self.log_learning_curve(run_id, result.history)
        self.log_previews(run_id, result.previews)
        return logged

    def log_learning_curve(self, run_id: str, history: list | None) -> bool:
        """Log ``learning_curve.png`` drawn from a trial's history; False (nothing logged) when it is empty.

        Kept separate from :meth:`log_trial_artifacts` so plotting problems can never lose the checkpoint.
        """
        if not history:
            return False
        from bench.report import learning_curve_png

        self.log_bytes(run_id, "learning_curve.png", learning_curve_png(history))
        return True

    def log_previews(self, run_id: str, previews: Mapping[str, bytes] | None) -> int:
        """Log a trial's previews (``TrialResult.previews``: artifact name -> bytes, e.g. ``overlay.png``,
        ``val_cases.json``); returns how many."""
        for name, data in (previews or {}).items():
            self.log_bytes(run_id, name, data)
        return len(previews or {})

    def log_bytes(self, run_id: str, name: str, data: bytes) -> None:
        """Log ``data`` as the run artifact ``name`` (see :meth:`_log_files`)."""
        self._log_files(run_id, {name: data})

    def read_artifact(self, run_id: str, artifact: str) -> bytes:
        """One artifact of a run as bytes (:func:`read_run_artifact`)."""
        return read_run_artifact(self.client, run_id, artifact)

    def end(self, run_id: str, state: str, reason: str | None = None) -> None:
        """Close a run with the MLflow status matching the trial's state; never leaves it RUNNING."""
        for operation in self._pending.pop(run_id, []):
            operation.wait()

        epochs = self._epochs.pop(run_id, 0)
        tags = {STATE_TAG: state}
        if reason:
            tags[REASON_TAG] = reason[:5000]
        from mlflow.entities import Metric, RunTag

        check_no_phi(tags, "tags")
        # state and epoch count in one write: this runs once per trial, on its clock
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()],
                              metrics=[Metric("epochs_trained", float(epochs), int(time.time() * 1000), 0)]
                              if epochs else [])
        status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[state]
        self.client.set_terminated(run_id, status=status)
        self._ended.add(run_id)

    @contextlib.contextmanager
    def closing(self, run_id: str, *, interrupted: tuple[str, str] = ("FAIL", INTERRUPTED),
                describe: Callable[[BaseException], str] | None = None) -> Iterator[str]:
        """The one close rule of every run bench opens (trial, fold, search, comparison, replay): whatever the
        body did not close itself with :meth:`end` ends COMPLETE when the body returns, PRUNED when it raises
        ``TrialPruned``, FAIL "<error>" on any other exception, and ``interrupted`` (FAIL "interrupted"; a Ray
        trial stopped by its scheduler: PRUNED "stopped") on Ctrl-C or a stop request; the exception goes on,
        so no run stays RUNNING behind a live process (one a dead process left is for :meth:`close_open`).
        ``describe``: the reason an exception gives (default ``"<type>: <message>"``)."""
        from bench.errors import TrialPruned

        describe = describe or (lambda exc: f"{type(exc).__name__}: {exc}")
        try:
            yield run_id
        except BaseException as exc:
            if run_id not in self._ended:
                if isinstance(exc, TrialPruned):
                    self.end_quietly(run_id, "PRUNED", str(exc))
                elif is_disk_full(exc):
                    self.end_quietly(run_id, "FAIL", DISK_FULL)  # not finished: --resume runs it again
                elif isinstance(exc, Exception):
                    self.end_quietly(run_id, "FAIL", describe(exc))
                else:
                    self.end_quietly(run_id, *interrupted)
            raise
        if run_id not in self._ended:
            try:
                self.end(run_id, "COMPLETE")
            except Exception as exc:  # the store refused the close: the run must not stay open or look COMPLETE
                self.end_quietly(run_id, "FAIL", DISK_FULL if is_disk_full(exc) else describe(exc))
                raise

    def end_quietly(self, run_id: str, state: str, reason: str) -> None:
        """:meth:`end`, a failure of which is one warning (none when the disk is full: that error is printed
        anyway): the error that brought the close is the one to see. The run counts as closed here either
        way; one the store could not close is closed by the next ``--resume``."""
        try:
            self.end(run_id, state, reason)
        except Exception as closing_error:  # noqa: BLE001
            self._ended.add(run_id)
            if not is_disk_full(closing_error):
                logging.getLogger(__name__).warning("run %s could not be closed (%s); the next --resume closes it",
                                                    run_id, closing_error)

    def search(self, filter_string: str, limit: int | None = None, page_size: int = 1000,
               oldest_first: bool = False) -> list:
        """Runs of this experiment matching ``filter_string``, newest first (``oldest_first``: by start time),
        every page of them (or the first ``limit``): MLflow's own pagination helper over ``search_runs``."""
        from mlflow.utils import get_results_from_paginated_fn

        order = ["attributes.start_time ASC"] if oldest_first else None
        return get_results_from_paginated_fn(
            lambda size, token: self.client.search_runs([self.experiment_id], filter_string=filter_string,
                                                        max_results=size, page_token=token, order_by=order),
            page_size if limit is None else min(page_size, limit), limit)

    def run(self, run_id: str):
        """The run ``run_id`` (MLflow's ``Run``: info, data.params/metrics/tags).

        Raises:
            BenchError: no such run in this store.
        """
        try:
            return self.client.get_run(run_id)
        except Exception as exc:  # MLflow raises its own exception type for a missing run
            raise BenchError(f"run '{run_id}' is not in {self.uri}.") from exc

    def fold_runs(self, run_id: str) -> list:
        """A cross-validated trial's fold runs (tag ``bench.fold_of``), fold 0 first."""
        found = self.search(f"tags.`{FOLD_OF_TAG}` = '{run_id}'")
        return sorted(found, key=lambda r: int(r.data.tags.get("fold", 0)))

    def metric_history(self, run_id: str, key: str) -> list:
        """Every logged value of metric ``key`` on the run (MLflow ``Metric``s: step, value, timestamp)."""
        return self.client.get_metric_history(run_id, key)

    def artifact_names(self, run_id: str) -> set[str]:
        """The names of the run's top-level artifacts."""
        return {Path(a.path).name for a in self.client.list_artifacts(run_id)}

    def log_artifacts(self, run_id: str, folder: str | os.PathLike) -> None:
        """Every file under ``folder`` as an artifact of the run."""
        self.client.log_artifacts(run_id, str(folder))

    def study_trials(self, study: str) -> list:
        """A search's trial runs (``bench.kind = trial``, tag ``study``), newest first."""
        return self.search(f"tags.study = '{study}' AND tags.`{KIND_TAG}` = 'trial'")

    def close_open(self, filter_string: str, *, state: str = "FAIL", reason: str = KILLED,
                   alive: Callable[[Any], bool] | None = None) -> list:
        """The one sweep of runs left open: close every run of this experiment matching ``filter_string``
        whose status is still RUNNING or SCHEDULED as ``state`` / ``reason`` (by default FAIL "killed": its
        process died), except those ``alive(run)`` says another live process still owns. Returns the runs
        closed."""
        closed = [r for r in self.search(filter_string)
                  if r.info.status in OPEN_STATUSES and not (alive and alive(r))]
        for run in closed:
            self.end(run.info.run_id, state, reason)
        return closed

    def log_pyfunc_model(self, run_id: str, model_dir: str | os.PathLike, loader: str, signature_input: Any,
                         input_example: Any = None, output_example: Any = None, artifact_path: str = "model") -> str:
        """Log ``model_dir`` as an MLflow pyfunc model under the run's ``artifact_path`` and return its URI.

        The model is code-based (MLflow's "models from code"): a small script, written here, whose
        ``PythonModel`` builds ``loader`` (``"module:callable"``, called with the artifact folder and the
        model config) when loaded and hands it ``predict``'s DataFrame, so nothing is pickled and only bench
        (installed) is needed to load it. The signature is inferred from the examples (a DataFrame in, a
        DataFrame out); it is saved to a temporary folder and copied onto the existing run (the run's status
        is untouched, as no MLflow run is made active).
        """
        import mlflow.pyfunc
        from mlflow.models import infer_signature

        module, sep, attribute = loader.partition(":")
        if not (module and sep and attribute):
            raise BenchError(f"a pyfunc loader must read 'module:callable', but got '{loader}'.")
        # no example: the input columns alone (``signature_input``)
        signature = infer_signature(signature_input if input_example is None else input_example, output_example)
        with tempfile.TemporaryDirectory(prefix="bench-pyfunc-") as tmp:
            code = Path(tmp) / "bench_model.py"
            code.write_text(_PYFUNC_CODE.format(loader=loader))
            saved = Path(tmp) / artifact_path
            mlflow.pyfunc.save_model(str(saved), python_model=str(code), artifacts={"model": str(model_dir)},
                                     signature=signature, input_example=input_example)
            self.client.log_artifacts(run_id, str(saved), artifact_path)
        return f"{self.client.get_run(run_id).info.artifact_uri.rstrip('/')}/{artifact_path}"

    def register_model(self, name: str, run_id: str, source: str, tags: Mapping[str, Any] | None = None,
                       description: str | None = None) -> str:
        """Register ``source`` (a model logged on run ``run_id``) as a new version of ``name`` (made when
        missing), with ``tags``; returns the version."""
        from mlflow.exceptions import MlflowException

        tags = {k: str(v) for k, v in (tags or {}).items()}
        check_no_phi(tags, "model version tags")
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, tags={"bench.task": self.task})
        version = self.client.create_model_version(name, source=source, run_id=run_id,
                                                   tags={"bench.task": self.task, **tags}, description=description)
        self.set_tags(run_id, {"bench.registered_model": f"{name}/{version.version}"})
        return str(version.version)

    def load_config(self, run_id: str) -> TrialConfig:
        text = self.read_artifact(run_id, "config.yaml").decode()
        return TrialConfig.from_yaml(text, source=f"run {run_id} config.yaml")


# The script of a registered bench model (``Tracker.log_pyfunc_model``): MLflow runs it when the model loads.
_PYFUNC_CODE = '''"""A bench model: MLflow loads it through the installed bench package; nothing is unpickled."""
import importlib

import mlflow
from mlflow.pyfunc import PythonModel


class BenchModel(PythonModel):
    def load_context(self, context):
        module, _, name = "{loader}".partition(":")
        self._model = getattr(importlib.import_module(module), name)(context.artifacts["model"],
                                                                     dict(context.model_config or {{}}))

    def predict(self, context, model_input, params=None):
        return self._model.predict(model_input, dict(params or {{}}))


mlflow.models.set_model(BenchModel())
'''


def client(uri: str | None = None) -> MlflowClient:
    """An MLflow client on the tracking store (``uri``, else :func:`tracking_uri`): the only way into MLflow
    for modules outside this one, so the store's layout and its client live in one place."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri or tracking_uri())


def task_experiment(task: str, reader: MlflowClient | None = None, uri: str | None = None):
    """The task's experiment (``bench/<task>``) or None; nothing is created."""
    return (reader or client(uri)).get_experiment_by_name(experiment_name(task))


def latest_search_run(reader: MlflowClient, experiment_id: str):
    """The newest search parent run of an experiment, or None."""
    found = reader.search_runs([experiment_id], f"tags.`{KIND_TAG}` = 'search'", max_results=1,
                               order_by=["attributes.start_time DESC"])
    return found[0] if found else None


def running_runs(reader: MlflowClient, experiment_id: str, since_ms: int, limit: int = 100) -> list:
    """Runs of an experiment still RUNNING that started at or after ``since_ms``, oldest first."""
    return reader.search_runs([experiment_id],
                              f"attributes.status = 'RUNNING' AND attributes.start_time >= {int(since_ms)}",
                              max_results=limit, order_by=["attributes.start_time ASC"])


def read_run_artifact(client: MlflowClient, run_id: str, artifact: str) -> bytes:
    """One artifact of a run as bytes; the downloaded copy is removed at once (a checkpoint is tens of MB,
    and a leaderboard or comparison reads one file per run: kept copies filled the temp folder)."""
    with tempfile.TemporaryDirectory(prefix="bench-artifact-") as tmp:
        return Path(client.download_artifacts(run_id, artifact, tmp)).read_bytes()


class MlflowReporter:
    """A Reporter that logs each epoch's metrics to a trial run; it never asks the trial to stop."""

    def __init__(self, tracker: Tracker, run_id: str):
        self.tracker, self.run_id = tracker, run_id

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.tracker.log_epoch(self.run_id, metrics, step)

    def report(self, objective: float, step: int) -> bool:
        return False


def run_status_name(status: int | str) -> str:
    from mlflow.entities import RunStatus

    return RunStatus.to_string(status) if isinstance(status, int) else status
