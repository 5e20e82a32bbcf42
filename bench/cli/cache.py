"""`bench cache`: what the stage cache holds (`ls`) and clearing it (`prune`); see :mod:`bench.stages`.

Light: reads the cache folder and the entries' metadata, never torch.
"""

from __future__ import annotations

import json
import time

from bench.cli._common import RAW, describe

EXAMPLES = (
    "examples:\n  bench cache ls\n  bench cache ls --json\n  bench cache prune --older-than 30\n"
    "  bench cache prune --stage lung\n  bench cache prune"
)


def add_parser(sub) -> None:
    c = sub.add_parser(
        "cache",
        help="list or prune the stage cache (stages trained once and loaded by later runs)",
        epilog=EXAMPLES,
        formatter_class=RAW,
        description=describe(
            "The stage cache (.bench/cache/stages, or $BENCH_CACHE/stages) keeps what a shared stage produced "
            "(weights, predictions, per-epoch history, random state), so later runs load it instead of "
            "training it again. It is bounded by BENCH_STAGE_CACHE_GB (default 20; least recently used "
            "entries go first)."
        ),
    )
    actions = c.add_subparsers(dest="action", required=True, metavar="ACTION")
    s = actions.add_parser("ls", help="entries: stage, task, size, age, last use",
                           description="List the stage cache's entries: task, stage, size, age, last use and key.")
    s.add_argument("--json", action="store_true", help="print the entries as JSON")
    s.set_defaults(func=ls, prog=s.prog)
    s = actions.add_parser("prune", help="remove entries (all, or those matching the options)",
                           description="Remove stage cache entries: all of them, or those of one --stage, or those "
                                       "last used more than --older-than DAYS ago. Entries another process is "
                                       "using stay.")
    s.add_argument("--older-than", type=float, metavar="DAYS", help="only entries last used more than DAYS ago")
    s.add_argument("--stage", metavar="NAME", help="only entries of this stage (e.g. lung, segmenter)")
    s.set_defaults(func=prune, prog=s.prog)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def ls(args) -> int:
    from bench import stages

    entries = stages.entries()
    now = time.time()
    if args.json:
        print(json.dumps([{"task": e.task, "stage": e.stage, "key": e.key, "bytes": e.bytes, "created": e.created,
                           "last_used": e.used, "path": str(e.path)} for e in entries], indent=1))
        return 0
    limit = stages.limit_bytes()
    total = sum(e.bytes for e in entries)
    print(f"stage cache {stages.root()}: {len(entries)} entries, {_size(total)} of {_size(limit)} "
          f"({stages.SIZE_ENV})")
    if entries:
        rows = [("task", "stage", "size", "age", "last use", "key")]
        rows += [(e.task, e.stage, _size(e.bytes), _age(now - e.created), _age(now - e.used) + " ago", e.key)
                 for e in sorted(entries, key=lambda e: -e.used)]
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def prune(args) -> int:
    from bench import stages

    if args.stage is not None:
        _check_stage(args.stage, stages.entries())
    removed, kept = stages.prune(args.older_than, args.stage)
    print(f"removed {len(removed)} entries ({_size(sum(e.bytes for e in removed))}); kept {len(kept)} "
          f"({_size(sum(e.bytes for e in kept))})")
    return 0


def _check_stage(name: str, held) -> None:
    """Refuse a ``--stage`` no task declares and no entry holds, naming the stages there are."""
    from bench.errors import BenchError
    from bench.tasks import TASKS

    declared = {f"{stage.name} ({spec.name})": stage.name for spec in (e.obj for e in TASKS.entries())
                for stage in spec.stages}
    if name in declared.values() or any(e.stage == name for e in held):
        return
    kept_only = sorted({e.stage for e in held} - set(declared.values()))
    names = ", ".join([*declared, *kept_only])
    raise BenchError(f"--stage must name a stage of the cache, one of {names}, but got '{name}'.")
