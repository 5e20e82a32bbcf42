"""Command line: one module per command, each with ``add_parser(sub)`` and the function it runs.

Commands parse, call and print; heavy libraries are imported inside the function a command runs, so the
parser (``bench --help``) and the light commands stay quick. Errors are one line naming the command.
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.cli import cache, datasets, leaderboard, perf, predict, register, replay, search, tasks, ui
from bench.cli import list as list_command
from bench.compare import command as compare
from bench.errors import BenchError
from bench.logs import VERBOSE_ENV, quiet_libraries

COMMANDS = (tasks, list_command, datasets, search, leaderboard, replay, predict, register, ui, perf, cache)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench",
        description="AutoML benchmarking for medical imaging: search, "
        "rank and replay architectures, losses and mask guidance on standard tasks.",
    )
    p.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show library logs and warnings (MLflow, Ray, Optuna, torch) as they come")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    compare.add_parser(sub)
    return p


class _Version(argparse.Action):
    """``--version``: the installed version, read (importlib.metadata) only when asked for."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"bench {_version()}")
        parser.exit()


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("bench")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        from bench import __version__

        return __version__


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.verbose:
        os.environ[VERBOSE_ENV] = "1"  # worker processes inherit it
    quiet_libraries()
    try:
        return args.func(args)
    except BrokenPipeError:
        # the reader went away (`bench ... | head`): no traceback, and none at exit when Python flushes stdout
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # as a shell reports a command ended by SIGPIPE
    except BenchError as exc:
        # "bench datasets split: error: ..." like argparse's own messages, so the failing command is named
        prog = getattr(args, "prog", None) or f"bench {args.command}"
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)  # 2: bad arguments or data; 1: a run that failed (a full disk)


__all__ = ["build_parser", "main"]
