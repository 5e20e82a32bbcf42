"""Read-only commands never import torch, MONAI or smp (checked in a fresh process by sys.modules, not by time)."""

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "monai", "segmentation_models_pytorch")

PROBE = """
import contextlib, io, json, sys
from bench.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        code = main({argv!r})
    except SystemExit as exc:
        code = exc.code
print(json.dumps({{"code": code, "heavy": [m for m in {heavy!r} if m in sys.modules]}}), file=sys.stderr)
"""


def _probe(argv, cwd, heavy=HEAVY):
    proc = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv, heavy=heavy)], cwd=cwd,
                          capture_output=True, text=True, timeout=600, check=False,
                          env={**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    last = [line for line in proc.stderr.splitlines() if line.startswith("{")]
    assert last, proc.stderr[-2000:]
    return json.loads(last[-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A folder whose MLflow store holds 30 finished trial runs of xray-heart (written like real runs) and
    one finished comparison, guidance-demo."""
    from tests.test_leaderboard_comparison import make_comparison

    folder = tmp_path_factory.mktemp("store")
    code = (f"import os; os.chdir({str(folder)!r}); os.environ['MLFLOW_TRACKING_URI'] = 'sqlite:///mlflow.db'; "
            "from bench.perf.synthetic import fill_store; fill_store(30, 'xray-heart')")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=600)
    make_comparison(f"sqlite:///{folder / 'mlflow.db'}")
    return folder


@pytest.mark.parametrize("argv", [
    ["--help"], ["tasks"], ["tasks", "--json"], ["tasks", "--reference"], ["list", "losses"], ["list", "losses", "--json"], ["list", "guidance"],
    ["list", "models", "--json"], ["list", "formats"], ["search", "--help"], ["compare", "--help"], ["cache", "ls"],
])
def test_describing_commands_import_no_torch(argv, tmp_path):
    result = _probe(argv, tmp_path)
    assert result["heavy"] == [], f"bench {' '.join(argv)} imported {result['heavy']}"
    assert result["code"] in (0, None)


@pytest.mark.parametrize("fmt", ["table", "csv", "md", "json"])
def test_leaderboard_imports_no_torch(store, fmt, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _probe(["leaderboard", "--task", "xray-heart", "--format", fmt], store)
    assert result["code"] == 0 and result["heavy"] == []


@pytest.mark.parametrize("fmt", ["table", "csv", "md", "json"])
def test_leaderboard_of_a_comparison_imports_no_torch(store, fmt, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _probe(["leaderboard", "--comparison", "guidance-demo", "--format", fmt], store)
    assert result["code"] == 0 and result["heavy"] == []


@pytest.mark.parametrize("argv", [["leaderboard", "--task", "xray-heart"],
                                  ["leaderboard", "--task", "xray-heart", "--format", "csv", "--where", "guidance=none"]])
def test_leaderboard_of_a_sql_store_does_not_import_mlflow(store, argv, monkeypatch):
    """On a SQL store it reads the tables itself (bench.store_read): importing MLflow and opening its store
    would cost more than the whole leaderboard of a search's store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = _probe(argv, store, heavy=("mlflow", "sqlalchemy", *HEAVY))
    assert result["code"] == 0 and result["heavy"] == []


@pytest.mark.parametrize(("argv", "unwanted"), [
    (["--help"], ("numpy", "yaml", "importlib.metadata")),
    (["datasets", "make-phantom", "--help"], ("numpy", "yaml", "importlib.metadata")),
    (["tasks"], ("numpy", "importlib.metadata")),  # it reads the reference configurations: YAML
    (["tasks", "--json"], ("numpy", "importlib.metadata")),
])
def test_the_first_commands_import_no_numpy(argv, unwanted, tmp_path):
    """Issue 32: `bench --help` 0.28 s and `bench tasks` 0.37 s once task specs pulled in numpy (phantom
    classes), YAML (config) and every data reader; what a person types first reads specs only."""
    result = _probe(argv, tmp_path, heavy=unwanted)
    assert result["heavy"] == [], f"bench {' '.join(argv)} imported {result['heavy']}"
