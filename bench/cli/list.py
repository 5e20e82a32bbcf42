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


def run(args) -> int:
    rows = [
        {
            "kind": r.kind,
            "name": e.name,
            "description": e.description,
            "parameters": dict(e.parameters()),
            **({"tags": e.tags} if e.tags else {}),
        }
        for r in _registries(args.what)
        for e in r.entries()
    ]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    for row in rows:
        params = ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items())
        task = row.get("tags", {}).get("task")  # guidance: the task a strategy applies to
        kind = f"{row['kind']} ({task})" if isinstance(task, str) else row["kind"]
        print(f"{row['name']:<18} {kind:<32} {row['description']}" + (f"  [{params}]" if params else ""))
    return 0
