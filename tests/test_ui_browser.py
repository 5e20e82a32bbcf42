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
def test_bench_ui_opens_the_leaderboard_in_headless_chromium(workdir):
    """The page `bench ui` opens lists the nested trials of the latest search, best first, with the
    objective's column and the best trial's value on screen."""
    check = _load()
    problem = check.browser_available()
    if problem:
        pytest.skip(f"no headless browser here: {problem}")
    result = check.check_ui(screenshot=workdir / "ui.png", timeout=120)
    assert result["ok"], result
    assert result["order"] == list(reversed(check.RUN_NAMES))  # objective 0.80, 0.75, 0.70: best first
    assert result["url"].endswith(f"/runs?viewStateShareKey={check.VIEW_KEY}")
    assert result["expected"]["best_value"] == 0.8 and "0.8" in result["found"]
    assert (workdir / "ui.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
