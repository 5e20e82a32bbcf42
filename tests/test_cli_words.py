"""Words that agree (issue 32, part 4): every command has a description, the README's first screen says what
bench answers, how to install it, the main job and where the results are, and its numbers match `bench tasks`."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from bench.cli import build_parser
from bench.tasks import TASKS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(parser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_command_has_a_description_line():
    missing = [" ".join(path) for path, sub in _commands(build_parser()) if not (sub.description or "").strip()]
    assert missing == []


def test_compare_help_lists_the_tasks(capsys):
    parser = dict(_commands(build_parser()))[("compare",)]
    parser.print_help()
    text = " ".join(capsys.readouterr().out.split())
    assert all(name in text for name in TASKS.names())


def test_the_readme_first_screen_has_the_install_the_main_job_and_where_the_results_are():
    first = "\n".join(README.splitlines()[:40])
    for needed in ("## Install", "pip install", "bench search --task xray-heart", "bench leaderboard",
                   "Where the results are", "mlflow.db"):
        assert needed in first, needed
    assert len(re.findall(r"^## Your own data", README, re.MULTILINE)) == 1


def test_the_readme_times_agree_with_the_presets():
    xray = TASKS.get("xray-heart").presets
    minutes = re.search(r"(\d+-\d+ min)", xray["cpu"].description).group(1)
    assert f"({minutes}, 2 cores)" in README  # the main job's comment says what `bench tasks` says
    for spec in (e.obj for e in TASKS.entries()):
        assert "not yet timed" in spec.presets["gpu"].description, spec.name  # never run on a GPU
    assert "about an hour" not in README


def test_split_and_search_name_the_patient_regex_alike(capsys):
    parser = dict(_commands(build_parser()))
    split_help = parser[("datasets", "split")].format_help()
    search_help = parser[("search",)].format_help()
    assert "--grouping-regex" in split_help and "--grouping-regex" in search_help
