"""Library log levels for every bench process (the CLI and spawned search workers alike)."""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """MLflow, Alembic and Optuna chatter down to warnings; no artifact progress bars."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
    warnings.filterwarnings("ignore", message=".*experimental feature.*")
