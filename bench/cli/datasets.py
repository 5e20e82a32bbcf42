"""`bench datasets make-phantom | inspect | split`: write, check and split data folders."""

from __future__ import annotations

import json

from bench.cli._common import (
    RAW,
    add_data_options,
    add_format,
    add_task,
    data_options,
    data_path,
    describe,
    per_task,
    positive_int,
)
from bench.errors import BenchError

PHANTOM = "phantom"  # bench.data.stream.PHANTOM, not imported here: building the parser stays light

EXAMPLES = (
    "examples:\n  bench datasets make-phantom --task xray-heart --out xray_png --cases 20\n"
    "  bench datasets inspect xray_png\n"
    "  bench datasets split xray_png --task xray-heart\n"
    "  bench datasets inspect phantom --task ct-lung      # the built-in phantom (a folder named phantom is read "
    "as a folder)"
)


def add_parser(sub) -> None:
    d = sub.add_parser(
        "datasets",
        help="make, inspect and split data sets",
        epilog=EXAMPLES,
        formatter_class=RAW,
        description=describe(
            "Write the built-in phantom in a real on-disk format, check a data folder, "
            "or write a patient-grouped stratified split file."
        ),
    )
    actions = d.add_subparsers(dest="action", required=True, metavar="ACTION")

    s = actions.add_parser("make-phantom", help="write the built-in phantom in a real on-disk format",
                           description="Write a task's phantom in an on-disk format its readers take back.",
                           epilog=EXAMPLES, formatter_class=RAW)
    add_task(s)
    s.add_argument("--out", required=True, help="folder to write (written whole or not at all)")
    s.add_argument("--format", metavar="FORMAT",
                   help=per_task(lambda spec: spec.phantom_format_names()))
    s.add_argument("--cases", type=positive_int("--cases"), metavar="N",
                   help=per_task(lambda spec: spec.phantom_cases_help))
    s.add_argument("--seed", type=int, default=0, help="phantom generator seed (default 0)")
    s.set_defaults(func=make_phantom, prog=s.prog)

    s = actions.add_parser(
        "inspect", help="counts and problems of a data folder (exit 1 when it has problems)",
        description=describe("What a data folder holds as the task reads it (cases, patients, classes, sizes, "
                             "spacing, masks, the split) and every problem a search would stop at, one line each. "
                             "Exit 0: no problem; 1: problems listed; 2: the folder cannot be read as the task's "
                             "data (one line)."),
    )
    s.add_argument("path", help="data folder, or 'phantom' for the built-in one (unless a folder of that name is here)")
    add_task(s, required=False, when="(default: the one task that reads PATH)")
    add_format(s, "data format of PATH (omit for 'phantom', or to use the one format that recognises the folder)")
    add_data_options(s, "PATH")
    s.add_argument("--sample", type=int, metavar="N",
                   help="xray-heart: decode only N images, evenly spread, for sizes, spacing and masks (default: "
                        "every image, one at a time); counts, labels and the split always cover every case")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.set_defaults(func=inspect, prog=s.prog)

    s = actions.add_parser("split", help="patient-grouped stratified split file (held-out test + folds)",
                           description=describe("Write the patient-grouped stratified split a search of PATH uses: "
                                                "a held-out test part and --folds folds over the rest. A folder's "
                                                "own folds (nnU-Net's splits_final.json, LUNA16's subsets) win "
                                                "over --folds, and the command says so."))
    s.add_argument("path", help="data folder, or 'phantom' for the built-in one (unless a folder of that name is here)")
    add_task(s, required=False, when="(default: the one task that reads PATH)")
    add_format(s, "data format of PATH (omit for 'phantom', or to use the one format that recognises the folder)")
    # no --classes here: a class order other than the data's own gets its own split, made by the first
    # search that asks for it (bench.tasks.xray_heart.data)
    add_data_options(s, "PATH", classes=False)
    s.add_argument(
        "--folds", type=int, default=5, help="cross-validation folds of the non-test part (default 5)"
    )
    s.add_argument("--seed", type=int, default=0, help="seed of the split's shuffling (default 0)")
    s.add_argument(
        "--out",
        help="split file to write (default: the kept-splits folder under the cache, "
        "where searches look it up)",
    )
    s.add_argument("--grouping-regex", "--patient-regex", dest="patient_regex", metavar="REGEX",
                   help="formats that name cases by id (nnunet, msd): a regex whose one group over the case id is "
                        "the patient, so a patient's cases stay in one part, e.g. '^(P\\d+)-' (default: each case "
                        "its own patient)")
    s.add_argument("--export-nnunet", metavar="PATH",
                   help="also write the folds as nnU-Net's splits_final.json (a file, or a folder to put it in); "
                        "the test cases are in no fold")
    s.set_defaults(func=split, prog=s.prog)


def _task_hook(task: str, hook: str):
    from bench.tasks import TASKS

    func = getattr(TASKS.get(task), hook)
    if func is None:
        raise BenchError(f"this command needs task '{task}' to provide {hook}, but it has none.")
    return func


def make_phantom(args) -> int:
    from bench.tasks import TASKS

    fmt = TASKS.get(args.task).phantom_format(args.format)  # refuses a format the task does not write
    out = _task_hook(args.task, "make_phantom")(args.out, fmt, args.cases, args.seed)
    print(f"wrote the {args.task} phantom as {fmt} to {out}")
    return 0


def inspect(args) -> int:
    from bench.cli._report import problem_text, report_lines

    args.path = data_path(args.path)
    args.task = args.task or task_reading(args.path, args.format)
    classes, options = data_options(args)  # refuses those the task's data does not take, --sample too
    given = {"classes": classes, **options} if classes or options else {}
    if args.sample is not None:
        given["sample"] = args.sample
    fmt = _format_of(args)
    try:
        report = _task_hook(args.task, "inspect")(args.path, fmt, **given)
    except BenchError as exc:
        return _unreadable(args, fmt, str(exc))
    if not report.get("cases") and report.get("problems"):  # the read stopped before it found a case
        return _unreadable(args, report.get("format") or fmt, problem_text(report["problems"][0]))
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        print("\n".join(report_lines(report)))
    return 1 if report.get("problems") else 0


def _unreadable(args, fmt: str | None, message: str) -> int:
    """A folder that cannot be read as the task's data: one error line (exit 2), and with --json the same as
    JSON on stdout, so a script reading it gets JSON either way."""
    if args.json:
        print(json.dumps({"path": args.path, "task": args.task, "format": fmt, "error": message}, indent=1))
    raise BenchError(message)


def _format_of(args) -> str | None:
    """The task's format ``--format`` names (its aliases applied, another task's format refused); None when
    left out (the task recognises the folder) or for the phantom."""
    from bench.tasks import TASKS

    if not args.format or args.path == PHANTOM:
        return None
    return TASKS.get(args.task).resolve_format(args.format)


def task_reading(path: str, fmt: str | None) -> str:
    """The one task that reads the folder ``path`` (as ``fmt``, or as the format it recognises), when
    ``--task`` is left out; else one error naming the tasks to choose from."""
    from pathlib import Path

    from bench.data.formats import FORMATS, detect_format
    from bench.errors import DataError
    from bench.tasks import TASKS

    names = ", ".join(TASKS.names())
    if path == PHANTOM:
        raise BenchError(f"--task must be given for the built-in phantom (every task has its own), one of {names}.")
    if not Path(path).exists():
        raise DataError(f"{path}: the data path must exist, but it does not.")
    readers = {}
    for spec in (entry.obj for entry in TASKS.entries()):
        try:
            name = spec.resolve_format(fmt, path) if fmt else detect_format(spec.name, spec.formats, path)
        except BenchError:
            continue
        if getattr(FORMATS.get(name), "recognise", lambda _: True)(Path(path)):  # --format given: the folder fits
            readers[spec.name] = name
    if len(readers) == 1:
        return next(iter(readers))
    found = (f"no task reads it{' as ' + fmt if fmt else ''}" if not readers else
             "several tasks read it: " + ", ".join(f"{t} (as {f})" for t, f in readers.items()))
    raise BenchError(f"{path}: --task can be left out only when one task reads the folder, but {found}. Give --task, "
                     f"one of {', '.join(readers) or names}.")


def split(args) -> int:
    from bench.data.sources import write_split
    from bench.tasks import TASKS

    args.path = data_path(args.path)
    args.task = args.task or task_reading(args.path, args.format)
    _, options = data_options(args)
    fmt = _format_of(args)
    if not fmt and args.path != PHANTOM:
        fmt = TASKS.get(args.task).resolve_format(None, args.path)
    if args.patient_regex:
        options["patient_regex"] = _reader_takes("patient_regex", "--grouping-regex", fmt, args.patient_regex)
    split_, out = write_split(
        args.path, args.task, fmt, n_folds=args.folds, seed=args.seed, out=args.out,
        phantom_cases=TASKS.get(args.task).phantom_cases, **options,
    )
    own = "" if len(split_.folds) == args.folds else (
        f"; the folder's own {len(split_.folds)} folds win over --folds {args.folds}")
    print(
        f"wrote {out} (sha256 {split_.sha256[:16]}…, {len(split_.test)} test cases, "
        f"{len(split_.folds)} folds{own})"
    )
    if args.export_nnunet:
        from bench.data.seg_splits import nnunet_folds, write_splits_final

        exported = write_splits_final(nnunet_folds(split_), args.export_nnunet)
        print(f"wrote {exported} (nnU-Net splits_final.json, {len(split_.folds)} folds; the "
              f"{len(split_.test)} test cases are in none)")
    return 0


def _reader_takes(param: str, flag: str, fmt: str | None, value):
    """``value`` if the reader of ``fmt`` has the parameter ``param``, else one error naming the formats that do."""
    from bench.data.formats import FORMATS

    takes = [e.name for e in FORMATS.entries() if param in e.parameters()]
    if fmt not in takes:
        raise BenchError(f"{flag} applies to the data formats {', '.join(takes)}, but got "
                         f"{'--format ' + fmt if fmt else 'the phantom'}. Leave it out.")
    return value
