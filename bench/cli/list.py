"""`bench list`: what a search can choose from, read from the registries."""

from __future__ import annotations

import json

WHAT = ("losses", "guidance", "models", "formats")


def add_parser(sub) -> None:
    s = sub.add_parser(
        "list",
        help="what can be searched: losses, guidance strategies, models, formats",
        description="Entries of a registry with their description, parameters and tags.",
    )
    s.add_argument("what", choices=WHAT, help="which registry: %(choices)s")
    s.add_argument(
        "--json", action="store_true", help="print the entries as JSON (name, kind, parameters, tags)"
    )
    s.set_defaults(func=run)


def _registries(what: str) -> list:
    if what == "losses":
        from bench.losses import SEG_LOSSES

        return [SEG_LOSSES]
    if what == "guidance":
        from bench import guidance

        # both families (image guidance for classifiers, lesion guidance for CT) where the module has them
        return [
            getattr(guidance, name) for name in ("GUIDANCE", "LESION_GUIDANCE") if hasattr(guidance, name)
        ]
    if what == "models":
        from bench.models import CLASSIFIERS, SEG_MODELS

        return [SEG_MODELS, CLASSIFIERS]
    from bench.data.formats import FORMATS

    return [FORMATS]


def _tasks_using(registry) -> list[str]:
    """The tasks whose spec names ``registry`` as their guidance (``TaskSpec.guidance``)."""
    from bench.tasks import TASKS

    return [e.name for e in TASKS.entries() if e.obj.guidance is registry]


def run(args) -> int:
    users = {id(r): _tasks_using(r) for r in _registries(args.what)} if args.what == "guidance" else {}
    rows = [
        {
            "kind": r.kind,
            "name": e.name,
            "description": e.description,
            "parameters": dict(e.parameters()),
            **({"tags": e.tags} if e.tags else {}),
            **({"tasks": users[id(r)]} if id(r) in users else {}),
        }
        for r in _registries(args.what)
        for e in r.entries()
    ]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    for row in rows:
        params = ", ".join(f"{k}={_shown(v)}" for k, v in row["parameters"].items())
        tasks = row.get("tasks")  # guidance: the tasks that use the strategy's family
        kind = f"{row['kind']} ({', '.join(tasks) or 'no task'})" if tasks is not None else row["kind"]
        print(f"{row['name']:<18} {kind:<32} {row['description']}" + (f"  [{params}]" if params else ""))
    return 0


def _shown(value) -> str:
    """A parameter's default as a person reads it: ``none`` (not ``None``), text without quotes, numbers as
    Python writes them, a list or tuple joined by commas."""
    if value is None:
        return "none"
    if isinstance(value, (list, tuple)):
        return ",".join(_shown(v) for v in value) or "empty"
    return str(value)
