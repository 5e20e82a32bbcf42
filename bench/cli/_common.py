"""What the command modules share: lazy choice lists, the store check of read-only commands, parsing helpers.

Nothing here imports torch, MONAI, MLflow or pandas: ``bench --help`` and the parser itself stay light.
Registry-backed choice lists are read only when argparse shows or checks them.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable, Iterable, Iterator

from bench.errors import BenchError
from bench.store_location import check_store_reachable, store_location

RAW = (
    argparse.RawDescriptionHelpFormatter
)  # keeps the examples' line breaks; wrap descriptions with describe()


def describe(text: str) -> str:
    """A description wrapped as argparse would, for parsers whose RAW formatter keeps epilog line breaks."""
    import textwrap

    return textwrap.fill(text, 78)


class LazyChoices:
    """A choice list argparse reads only when it prints help or checks a value, so building the parser
    imports no registry. ``loader`` returns the names."""

    def __init__(self, loader: Callable[[], Iterable[str]], extra: Iterable[str] = ()):
        self._loader = loader
        self._extra = tuple(extra)
        self._names: list[str] | None = None

    def names(self) -> list[str]:
        if self._names is None:
            self._names = list(dict.fromkeys([*self._extra, *self._loader()]))
        return self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __contains__(self, name: object) -> bool:
        return name in self.names()

    def __len__(self) -> int:
        return len(self.names())


def _task_names() -> list[str]:
    from bench.tasks import TASKS

    return TASKS.names()


def _format_names() -> list[str]:
    from bench.data.formats import FORMATS

    return FORMATS.names()


def _preset_names() -> list[str]:
    from bench.tasks import TASKS

    return sorted({name for entry in TASKS.entries() for name in entry.obj.presets})


class LazyHelp(str):
    """A help text built only when argparse prints it (from the task specs, say), so building the parser
    imports nothing; ``text()`` returns it, with argparse's ``%(...)s`` fields."""

    def __new__(cls, text: Callable[[], str]):
        help_ = super().__new__(cls, "(built when shown)")
        help_.text = text
        return help_

    def __mod__(self, params):
        return self.text() % params


def per_task(line: Callable, separator: str = "; ") -> LazyHelp:
    """Help listing ``line(spec)`` for every task (``"xray-heart: ...; ct-lung: ..."``), built when shown."""

    def text() -> str:
        from bench.tasks import TASKS

        lines = ((spec.name, line(spec)) for spec in (e.obj for e in TASKS.entries()))
        return separator.join(f"{name}: {text}" for name, text in lines if text).replace("%", "%%")

    return LazyHelp(text)


def positive_int(what: str) -> Callable[[str], int]:
    """An argparse ``type``: a whole number >= 1, else one line naming the flag (exit 2)."""

    def check(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = None
        if number is None or number < 1:
            raise argparse.ArgumentTypeError(f"must be a whole number >= 1, but got '{value}'.")
        return number

    check.__name__ = what
    return check


def data_path(value: str) -> str:
    """``bench.data.stream.data_path``: ``phantom`` is the built-in phantom unless a folder of that name is here."""
    from bench.data.stream import data_path as resolved

    return resolved(value)


TASK_CHOICES = LazyChoices(_task_names)
FORMAT_CHOICES = LazyChoices(_format_names, extra=("phantom",))
PRESET_CHOICES = LazyChoices(_preset_names)


def close_match(value: str, names: Iterable[str]) -> str:
    """`` Did you mean X?`` when one name is close to ``value`` (a typo, not a shared word); else ``""``."""
    close = difflib.get_close_matches(value, list(names), n=1, cutoff=0.75)
    return f" Did you mean {close[0]}?" if close else ""


def choice_type(choices: LazyChoices, what: str) -> Callable[[str], str]:
    """An argparse ``type`` that checks ``value`` against ``choices`` and suggests only a close name."""

    def check(value: str) -> str:
        if value in choices:
            return value
        raise argparse.ArgumentTypeError(
            f"{what} must be one of {', '.join(choices)}, but got '{value}'.{close_match(value, choices)}"
        )

    check.__name__ = what  # argparse names the type in some messages
    return check


def add_task(parser: argparse.ArgumentParser, required: bool = True, when: str = "") -> None:
    parser.add_argument(
        "--task",
        required=required,
        metavar="TASK",
        choices=TASK_CHOICES,
        type=choice_type(TASK_CHOICES, "task"),
        help="benchmark task, one of: %(choices)s (details: `bench tasks`)" + (f" {when}" if when else ""),
    )


def add_format(parser: argparse.ArgumentParser, help_: str) -> None:
    parser.add_argument(
        "--format",
        metavar="FORMAT",
        choices=FORMAT_CHOICES,
        type=choice_type(FORMAT_CHOICES, "format"),
        help=help_ + ", one of: %(choices)s",
    )


def add_data_options(parser: argparse.ArgumentParser, where: str, classes: bool = True) -> None:
    """The data's class list and reader options (those a task takes: ``TaskSpec.data_options``), for the
    commands that read data (``where`` names the data argument in the help; ``classes=False`` leaves
    --classes out)."""
    if classes:
        parser.add_argument("--classes", metavar="A,B,...",
                            help=f"xray-heart: fix the class list of {where} and its order (labels outside it "
                                 "are refused); default: the data's own (phantom: 4 CHD classes; ChestX-ray14/"
                                 "CheXpert/CheXmask: cardiomegaly)")
    parser.add_argument("--min-dice", type=float, metavar="X",
                        help="chexmask: keep masks with Dice RCA (Mean) >= X (default 0.7)")
    parser.add_argument("--uncertain", choices=("ignore", "ones", "zeros"),
                        help="chexpert/chexmask: uncertain (-1) Cardiomegaly labels: %(choices)s (default ignore)")
    parser.add_argument("--missing", choices=("error", "skip"),
                        help="chestxray14/chexpert/chexmask: table rows whose image file is missing: stop with "
                             "one error listing them (default) or skip them with one warning")


# The data options of add_data_options (and --sample of `datasets inspect`): a task's spec says which of
# them its data takes (TaskSpec.data_options).
DATA_OPTIONS = ("classes", "min_dice", "uncertain", "missing", "sample")


def check_data_options(args) -> None:
    """Refuse, in one line, the data options given that the task's data does not take."""
    from bench.tasks import TASKS

    takes = TASKS.get(args.task).data_options
    refused = [k for k in DATA_OPTIONS if getattr(args, k, None) not in (None, "") and k not in takes]
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        accepted = ", ".join("--" + k.replace("_", "-") for k in DATA_OPTIONS if k in takes) or "none"
        raise BenchError(f"{flags} must be data options of task {args.task}, but its data takes {accepted}. "
                         "Leave them out.")


def data_options(args) -> tuple[tuple[str, ...], dict]:
    """(class list, reader options) of :func:`add_data_options`: only what the user gave, so runs without
    these flags keep their config hashes, caches and split names. Options the task's data does not take
    (``TaskSpec.data_options``) are refused."""
    check_data_options(args)
    classes = metric_list(getattr(args, "classes", None))
    options = {k: getattr(args, k, None) for k in ("min_dice", "uncertain", "missing")}
    options = {k: v for k, v in options.items() if v is not None}
    return classes, options


def metric_list(text: str | None) -> tuple[str, ...]:
    """``"a, b,"`` -> ``("a", "b")``."""
    return tuple(m.strip() for m in (text or "").split(",") if m.strip())


def console():
    from rich.console import Console

    return Console()


def require_store(command: str, task: str | None = None, maker: str = "bench search") -> str:
    """Stop a read-only command before MLflow opens (and so creates) a store that is not there.

    MLflow creates a missing sqlite file or store folder the moment a client touches it; a leaderboard or
    replay lookup in the wrong folder must say so instead of leaving an empty ``mlflow.db`` behind.
    ``maker`` is the command that makes what ``command`` reads (named in the error).

    Returns:
        The tracking URI, when the store exists (or is a server, which this cannot check without a request).

    Raises:
        BenchError: naming the store looked for and how to get one.
    """
    uri, path = store_location()
    if path is None:
        check_store_reachable(command)
    if path is not None and not path.exists():
        where = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "this folder"
        raise BenchError(
            f"`{command}` reads an existing MLflow store, but there is none at {path} ({where}). Run "
            f"`{maker} --task {task or 'TASK'}` here first, or cd to the folder of an earlier "
            f"{maker.split()[1]}, or set MLFLOW_TRACKING_URI to its store."
        )
    return uri


def require_experiment(task: str, command: str) -> None:
    """:func:`require_store`, and the store must hold the task's experiment (a Tracker would add it)."""
    uri = require_store(command, task)
    from bench.store_read import experiment_id
    from bench.tracking import experiment_name

    found = experiment_id(uri, experiment_name(task))  # a SQL store: read without importing MLflow
    if found is False:
        from bench.tracking import task_experiment

        found = task_experiment(task, uri=uri)
    if found is None:
        raise BenchError(
            f"`{command}` needs runs of task {task} (experiment '{experiment_name(task)}'), but the store at "
            f"{uri} has none. Run `bench search --task {task}` first."
        )



def add_stage_cache(parser: argparse.ArgumentParser, default: str) -> None:
    """``--stage-cache on|off`` (:mod:`bench.stages`): load stages earlier runs trained, or train every one."""
    what = ("on (default): stages that do not depend on what differs between runs (e.g. a segmenter shared by "
            "every guidance arm) are trained once and loaded after; off: train every stage of every run"
            if default == "on" else
            "off (default): train every stage, as a replay checks that training reproduces; on: load the stages "
            "the stage cache holds")
    parser.add_argument("--stage-cache", choices=("on", "off"), default=default, help=what)
