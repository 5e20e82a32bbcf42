"""What reaches the terminal from every bench process (the CLI and spawned search workers alike).

bench's own warnings are one line, ``bench: warning: ...``; library chatter (MLflow's migrations, Alembic,
Optuna, Ray's banners, deprecation warnings from inside libraries) stays out unless ``bench -v`` (which sets
``BENCH_VERBOSE=1``, so worker processes inherit it).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

VERBOSE_ENV = "BENCH_VERBOSE"
_BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0")


def quiet_libraries() -> None:
    """MLflow, Alembic, Optuna and Ray chatter down to warnings; no artifact progress bars; warnings as one
    line (bench's own) or none (a library's), unless verbose."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    if verbose():
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name in ("mlflow", "alembic", "optuna"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # A failed trial: Optuna warns twice, once with the objective's traceback; bench prints one line naming the
    # trial and its reason instead (the traceback with -v).
    for name in ("optuna.study._optimize", "optuna.study._tell"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # MLflow logs a database error (with its traceback) and a failed background metric batch, then raises them
    # (the batch's when the run is closed): bench reports the raised one (a full disk as one line,
    # bench.diskspace), so the log would be a second, longer copy.
    for name in ("mlflow.store.db.utils", "mlflow.utils.async_logging"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    for name in ("ray", "ray.tune", "ray.train"):  # Ray warns about its own bookkeeping (result files, banners)
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
    warnings.filterwarnings("ignore", message=".*experimental feature.*")
    warnings.showwarning = show_warning


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """``bench: warning: <message>`` for a warning raised by bench's code; a library's warning is dropped
    (``bench -v`` shows them all in Python's form)."""
    from bench.errors import BenchWarning

    if not (issubclass(category, BenchWarning) or os.path.abspath(str(filename)).startswith(_BENCH_DIR)):
        return
    text = str(message).strip().replace("\n", " ")
    try:
        print(f"bench: warning: {text}", file=file or sys.stderr, flush=True)
    except (OSError, ValueError):  # a closed stream at shutdown
        pass
