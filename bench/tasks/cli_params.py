"""Task parameters on the command line: ``--NAME VALUE`` for what a task declares in ``TaskSpec.cli_params``
(e.g. the segmentation task's ``--target`` and ``--guide``), shared by `bench search` and `bench compare`, so
that no command names a task or its parameters."""

from __future__ import annotations

import argparse

from bench.errors import ConfigError


def add_task_params(parser: argparse.ArgumentParser) -> None:
    """``--NAME VALUE`` for every task parameter a registered task declares (``TaskSpec.cli_params``); the
    help says which tasks take it. Read back by :func:`task_param_overrides`."""
    from bench.tasks import TASKS

    takers: dict[str, list[str]] = {}
    helps: dict[str, str] = {}
    for name in TASKS.names():
        for param, help_ in TASKS.get(name).cli_params.items():
            takers.setdefault(param, []).append(name)
            helps.setdefault(param, help_)
    for param, tasks in takers.items():
        parser.add_argument("--" + param.replace("_", "-"), dest=f"task_param_{param}", metavar="VALUE",
                            help=f"{'/'.join(tasks)}: {helps[param]}")


def task_param_overrides(args) -> dict:
    """``{"task_params": {...}}`` of the task parameters given (:func:`add_task_params`), else ``{}``; one
    refused in one line when the task does not declare it."""
    from bench.tasks import TASKS

    given = {k.removeprefix("task_param_"): v for k, v in vars(args).items()
             if k.startswith("task_param_") and v is not None}
    takes = TASKS.get(args.task).cli_params
    refused = sorted(set(given) - set(takes))
    if refused:
        flags = ", ".join("--" + k.replace("_", "-") for k in refused)
        accepted = ", ".join("--" + k.replace("_", "-") for k in takes) or "none"
        what = "a task parameter" if len(refused) == 1 else "task parameters"
        raise ConfigError(f"{flags} must be {what} of task {args.task}, but it takes {accepted}. Leave "
                          f"{'it' if len(refused) == 1 else 'them'} out.")
    return {"task_params": given} if given else {}
