"""`bench leaderboard`: trials ranked by the objective, read from an existing MLflow store."""

from __future__ import annotations

from bench.cli._common import RAW, add_task, describe, metric_list, require_experiment

EXAMPLES = (
    "examples:\n  bench leaderboard --task xray-heart\n  bench leaderboard --task xray-heart --wide\n"
    "  bench leaderboard --task xray-heart --format md --out lb.md\n"
    "  bench leaderboard --task xray-heart --where seg_loss=tversky --where guidance=soft_mask\n"
    "  bench leaderboard --task xray-heart --group-by guidance\n"
    "  bench leaderboard --task xray-heart --seeds\n"
    "  bench leaderboard --task xray-heart --pareto val_auroc,n_weights\n"
    "  bench leaderboard --task xray-heart --export results/xray-heart"
)
FORMATS = ("table", "csv", "md", "json")


def add_parser(sub) -> None:
    s = sub.add_parser(
        "leaderboard",
        help="trials ranked by the objective, read from MLflow",
        epilog=EXAMPLES,
        formatter_class=RAW,
        description=describe(
            "Trials of a task ranked by its objective. The terminal table fits 120 "
            "columns (rank, run, state, objective, searched dimensions, headline "
            "metrics); --wide or --format csv|md|json give every column."
        ),
    )
    add_task(s)
    s.add_argument("--study", help="only this study's trials (default: every study of the task)")
    s.add_argument("--top", type=int, metavar="N", help="only the N best trials")
    s.add_argument(
        "--format",
        default="table",
        choices=FORMATS,
        help="%(choices)s (default table: fits 120 columns; the others hold every column)",
    )
    s.add_argument("--wide", action="store_true", help="terminal table with every column, however wide")
    s.add_argument("--out", help="write the table in --format to this file instead of printing it")
    s.add_argument(
        "--where",
        action="append",
        metavar="KEY=VALUE",
        help="keep trials whose column/param matches (also KEY!=VALUE); repeat to combine",
    )
    s.add_argument(
        "--group-by",
        metavar="DIM",
        help="compare strategies: per value of DIM (guidance, seg_loss, seg_arch...) n, mean, "
        "95%% bootstrap CI (none for n = 1) and best of the objective over COMPLETE trials",
    )
    s.add_argument(
        "--seeds",
        action="store_true",
        help="configs repeated on several seeds (bench search --seeds K): n seeds, mean objective and "
        "95%% bootstrap CI over validation cases, pooled over seeds",
    )
    s.add_argument(
        "--pareto",
        metavar="M1,M2",
        help="only the COMPLETE trials on the Pareto front of these metrics (each in its direction)",
    )
    s.add_argument(
        "--export",
        metavar="DIR",
        help="write leaderboard.csv, leaderboard.md, groups-DIM.csv and a self-contained report.html",
    )
    s.set_defaults(func=run)


def run(args) -> int:
    require_experiment(args.task, "bench leaderboard")
    from bench.leaderboard import compact, export, group_summary, leaderboard, render, write
    from bench.tasks import TASKS

    fmt = "wide" if args.wide and args.format == "table" else args.format
    if args.seeds:
        from bench.leaderboard import seed_summary

        print(render(seed_summary(args.task, study=args.study), fmt))
        return 0
    table = leaderboard(args.task, study=args.study, top=args.top, where=args.where or ())
    if args.pareto:
        from bench.pareto import pareto_table

        print(render(pareto_table(table, metric_list(args.pareto)), fmt))
    elif args.group_by:
        groups = group_summary(table, args.group_by, TASKS.get(args.task).objective).set_index(args.group_by)
        print(render(groups, fmt))
        if fmt in ("table", "wide") and groups["n"].eq(1).any():
            print("ci95 '-': a group of one trial (n = 1) has no confidence interval")
    elif args.out:
        print(f"wrote {write(table, args.format, args.out)}")
    else:
        print(render(compact(table, args.task) if fmt == "table" else table, fmt))
    if args.export:
        paths = export(table, args.task, args.export, study=args.study, by=args.group_by or "guidance")
        print("exported " + ", ".join(str(p) for p in paths))
    return 0
