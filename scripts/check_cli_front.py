"""Run what a new user runs first, outside a terminal, and check what they would see.

Every command's and subcommand's ``--help``, then the README's cheap commands (those that neither search nor
compare) in README order in one scratch folder, each in a fresh process with stdout a pipe (as in a batch
job or `| less`). Each must:

- exit 0, or (a command that reads what the README made earlier by a search, or the user's own folder) exit 2
  with exactly one line on stderr;
- print no Python traceback;
- print no Python repr (``{'a': 1}``, ``['a']``, ``None``, ``KeyError(...)``, ``<... object at 0x...>``).

``--quick`` (what the test suite runs) takes the ``--help`` pages and the commands that answer without
writing data (tasks, list, and the store readers refusing in a folder without a store); the full run also
writes the phantoms the README writes and inspects them (about a minute on two cores).

Usage: python scripts/check_cli_front.py [--quick] [--readme README.md]; exit 0 when every check passes,
1 otherwise, with one line per failure.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A Python value printed where a person reads: a dict, a list of strings, None, an exception's repr, an object.
REPR = re.compile(r"\{'|\['|(?<![\w`'\"-])None(?![\w`'\"-])|\b[A-Z]\w*(?:Error|Exception)\(|<[\w.]+ object at 0x")
# Commands a search or comparison must come before, or that read a user's own folder: a one-line refusal is
# their correct answer in a fresh folder.
MAY_REFUSE = ("leaderboard", "replay", "ui")
# What is cheap: never a search, a comparison or a benchmark.
CHEAP = ("tasks", "list", "datasets", "leaderboard", "replay", "ui", "cache", "--version")
QUICK = ("tasks", "list", "leaderboard", "replay", "ui", "cache", "--version")
EXTRA = ("bench --version", "bench tasks --reference", "bench list formats", "bench cache ls")


def help_commands() -> list[list[str]]:
    """``[--help]`` of bench and of every command and subcommand, read from the parser itself."""
    sys.path.insert(0, str(ROOT))
    from bench.cli import build_parser

    found = [["--help"]]

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append([*path, name, "--help"])
                    walk(sub, [*path, name])

    walk(build_parser(), [])
    return found


def readme_commands(readme: Path, quick: bool) -> list[list[str]]:
    """The ``bench ...`` lines of the README's bash blocks that are cheap, in order, comments dropped."""
    commands, in_block = [], False
    for line in readme.read_text().splitlines():
        if line.startswith("```"):
            in_block = line.strip() == "```bash"
            continue
        text = line.split(" #")[0].strip()
        if in_block and text.startswith("bench "):
            commands.append(shlex.split(text)[1:])
    commands += [shlex.split(c)[1:] for c in EXTRA]
    wanted = QUICK if quick else CHEAP
    return [c for c in commands if c and c[0] in wanted]


def problems(argv: list[str], folder: Path, expect_help: bool, made: set[str]) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "BENCH_VERBOSE")}
    env.update(PYTHONPATH=str(ROOT), BENCH_CACHE=str(folder / ".bench" / "cache"), COLUMNS="100")
    proc = subprocess.run([sys.executable, "-m", "bench.cli", *argv], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    name = "bench " + " ".join(argv)
    found = []
    if "Traceback (most recent call last)" in proc.stdout + proc.stderr:
        found.append(f"{name}: printed a traceback")
    for stream, text in (("stdout", proc.stdout), ("stderr", proc.stderr)):
        for line in text.splitlines():
            if line.strip().startswith("python -c "):  # a help page's example of Python code, not a value shown
                continue
            if REPR.search(line):
                found.append(f"{name}: a Python repr on {stream}: {line.strip()[:160]}")
                break
    err_lines = proc.stderr.strip().splitlines()
    reads_made = len(argv) > 2 and argv[:2] == ["datasets", "inspect"] and argv[2] in made
    may_refuse = not expect_help and (argv[0] in MAY_REFUSE or (argv[:2] == ["datasets", "inspect"]
                                                                and not reads_made))
    if proc.returncode == 0:
        pass
    elif proc.returncode == 2 and may_refuse:
        if len(err_lines) != 1:
            found.append(f"{name}: refused (exit 2) in {len(err_lines)} lines, not one")
    else:
        found.append(f"{name}: exit {proc.returncode}" + (f" ({err_lines[-1][:160]})" if err_lines else ""))
    if argv[:2] == ["datasets", "make-phantom"] and "--out" in argv and proc.returncode == 0:
        made.add(argv[argv.index("--out") + 1])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="--help pages and the commands that write no data")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="README whose commands to run")
    parser.add_argument("--no-help", action="store_true", help="skip the --help pages (README commands only)")
    args = parser.parse_args(argv)
    failures, checked, made = [], 0, set()
    with tempfile.TemporaryDirectory(prefix="bench-front-") as tmp:
        folder = Path(tmp)
        for command in [] if args.no_help else help_commands():
            failures += problems(command, folder, True, made)
            checked += 1
        for command in readme_commands(args.readme, args.quick):
            failures += problems(command, folder, False, made)
            checked += 1
    for failure in failures:
        print(failure)
    print(f"{checked} commands checked, {len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
