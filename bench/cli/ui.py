"""`bench ui`: the MLflow UI on 127.0.0.1 over the working folder's existing store."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.cli._common import require_store, store_location


def add_parser(sub) -> None:
    s = sub.add_parser(
        "ui",
        help="MLflow UI on 127.0.0.1 over the same store",
        description="Start the MLflow UI on 127.0.0.1 over the store bench writes "
        "(MLFLOW_TRACKING_URI or ./mlflow.db); it must exist already.",
    )
    s.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one, printed)")
    s.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    s.set_defaults(func=run)


def run(args) -> int:
    import socket
    import subprocess

    uri = require_store("bench ui")
    store_file = store_location()[1]

    port = args.port
    if not port:
        # Ask the OS for a free port on loopback; a small race with other programs is acceptable here.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    print(f"MLflow UI on http://127.0.0.1:{port} over {uri} (Ctrl-C stops it)", flush=True)
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
