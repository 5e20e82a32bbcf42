"""Every registered task through the real CLI (issue 37): a smoke search, the leaderboard, a replay and a
2-arm x 2-fold x 1-seed comparison, each in a fresh folder's store, each exiting 0 without a traceback.

The tasks come from the registry and the compared dimension from each task's smoke space, so a new task is
covered without a line added here. ct-lung's `search` and `compare` exited 2 on 5761ea9 (a task parameter
tripped the PHI guard) while the suite stayed green: no test ran ct-lung through the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.search.space import load_space
from bench.tasks import TASKS


def _bench(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)  # the default store: sqlite mlflow.db in the fresh folder
    return subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)


def _ok(proc: subprocess.CompletedProcess, what: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{out[-3000:]}"
    assert "Traceback" not in out, f"{what} printed a traceback:\n{out[-3000:]}"


def compared_arms(task: str) -> tuple[str, list[str]]:
    """The first categorical dimension of the task's smoke space with two choices, and two of them."""
    spec = TASKS.get(task)
    space = load_space(spec.space_path("smoke"), task=task)
    for param in space.params:
        if param.type == "categorical" and len(param.choices) >= 2 and not param.when:
            return param.name, [str(c) for c in param.choices[:2]]
    raise AssertionError(f"the {task} smoke space has no categorical dimension to compare")


@pytest.mark.parametrize("task", TASKS.names())
def test_search_leaderboard_replay_and_compare_through_the_cli(task, workdir):
    _ok(_bench("search", "--task", task, "--preset", "smoke", "--trials", "1", "--study", "ci", cwd=workdir),
        f"bench search --task {task}")
    _ok(_bench("leaderboard", "--task", task, cwd=workdir), f"bench leaderboard --task {task}")
    _ok(_bench("replay", "--task", task, cwd=workdir), f"bench replay --task {task}")
    dimension, arms = compared_arms(task)
    compare = _bench("compare", "--task", task, "--dimension", dimension, "--arms", ",".join(arms), "--folds", "2",
                     "--seeds", "1", "--preset", "smoke", "--resamples", "50", "--name", "ci", cwd=workdir)
    _ok(compare, f"bench compare --task {task} --dimension {dimension}")
