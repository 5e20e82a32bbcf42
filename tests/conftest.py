"""Shared fixtures: every test that touches MLflow, Optuna or the cache works in its own temp folder."""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A fresh working folder: MLflow store, Optuna journal and data cache all land inside it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / ".bench" / "cache"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return tmp_path
