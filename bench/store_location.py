"""Where bench's MLflow store is, and whether it answers: checked before a command creates anything.

Light (no MLflow import), so read-only commands and the checks before a search stay quick.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.errors import BenchError


def store_location() -> tuple[str, Path | None]:
    """The MLflow tracking URI bench uses and the local file or folder it lives in (None for a server)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        return uri, Path(uri[len("sqlite:///") :])
    if uri.startswith("sqlite://"):  # sqlite:// alone is an in-memory database
        return uri, None
    if uri.startswith("file:"):
        from urllib.parse import urlparse

        return uri, Path(urlparse(uri).path)
    if "://" not in uri:  # a plain path is MLflow's file store
        return uri, Path(uri)
    return uri, None



STORE_PROBE_SECONDS = 5.0
# The URI schemes MLflow's tracking client takes (mlflow.tracking._tracking_service.utils); a driver after
# "+" (postgresql+psycopg2) counts as its database.
MLFLOW_SCHEMES = ("file", "sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks", "databricks-uc",
                  "uc")


def check_store_reachable(command: str) -> str:
    """Stop before a command starts when its MLflow tracking server or database does not answer.

    MLflow's client retries a dead server for minutes and then prints a traceback; one short request here
    says in one line which URI could not be reached. A local sqlite or file store needs its folder to exist.
    Mid-search outages are not this check's business (the tracker rides them out).

    Returns:
        The tracking URI.

    Raises:
        BenchError: naming the URI, what went wrong and how to fix it.
    """
    uri, path = store_location()
    where = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "the default store"
    problem = None
    scheme = uri.split("://", 1)[0].split("+")[0] if "://" in uri else ""
    if scheme and scheme not in MLFLOW_SCHEMES:
        raise BenchError(f"`{command}` needs an MLflow tracking store URI whose scheme is one of "
                         f"{', '.join(MLFLOW_SCHEMES)}, but got {uri} ({where}). Fix MLFLOW_TRACKING_URI, or unset it "
                         "for the mlflow.db in this folder.")
    if path is not None:
        if not path.parent.exists():
            problem = f"its folder {path.parent} does not exist"
    elif uri.startswith(("http://", "https://")):
        problem = _probe_http(uri)
    elif "://" in uri and uri.split("://", 1)[0].split("+")[0] in ("postgresql", "mysql", "mssql"):
        problem = _probe_database(uri)
    if problem:
        raise BenchError(f"`{command}` needs the MLflow tracking store {uri} ({where}), but {problem}. Start the "
                         "server (or database), or set MLFLOW_TRACKING_URI to one that runs.")
    return uri


def _probe_http(uri: str) -> str | None:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=STORE_PROBE_SECONDS):
            return None
    except urllib.error.HTTPError:
        return None  # something answered (an old server without /health, a proxy asking for a login)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"it could not be reached ({reason})"


def _probe_database(uri: str) -> str | None:
    import sqlalchemy

    args = {"connect_timeout": int(STORE_PROBE_SECONDS)} if uri.startswith(("postgresql", "mysql")) else {}
    try:
        engine = sqlalchemy.create_engine(uri, connect_args=args)
        with engine.connect():
            return None
    except Exception as exc:  # noqa: BLE001  any driver's connection error becomes the one line below
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return f"it could not be reached ({first})"
    finally:
        if "engine" in locals():
            engine.dispose()
