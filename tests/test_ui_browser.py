"""`bench ui` in a real headless Chromium (scripts/check_ui_browser.py); skipped where no browser is installed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_ui_browser.py"


def _load():
    spec = importlib.util.spec_from_file_location("check_ui_browser", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_mlflow_ui_renders_the_runs_in_headless_chromium(workdir):
    check = _load()
    problem = check.browser_available()
    if problem:
        pytest.skip(f"no headless browser here: {problem}")
    result = check.check_ui(screenshot=workdir / "ui.png", timeout=120)
    assert result["ok"], result
    assert result["found"] == list(check.RUN_NAMES)
    assert (workdir / "ui.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
