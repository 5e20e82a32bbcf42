"""`bench leaderboard`: trials ranked by the objective, read from an existing MLflow store."""

from __future__ import annotations

from bench.cli._common import RAW, add_task, describe, metric_list, require_experiment, require_store
from bench.errors import BenchError

EXAMPLES = (
    "examples:\n  bench leaderboard --task xray-heart\n  bench leaderboard --task xray-heart --wide\n"
    "  bench leaderboard --task xray-heart --format md --out lb.md\n"
    "  bench leaderboard --task xray-heart --where seg_loss=tversky --where guidance=soft_mask\n"
    "  bench leaderboard --task xray-heart --group-by guidance\n"
    "  bench leaderboard --task xray-heart --seeds\n"
    "  bench leaderboard --task xray-heart --pareto val_auroc,n_weights\n"
    "  bench leaderboard --task xray-heart --export results/xray-heart\n"
    "  bench leaderboard --comparison xray-heart-guidance-cpu\n"
    "  bench leaderboard --comparison 3f2a...e9 --format md --export results/compare/xray-heart-guidance"
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
            "metrics); --wide or --format csv|md|json give every column. With --comparison: "
            "the results table of a finished `bench compare` (--task optional)."
        ),
    )
    add_task(s, required=False)
    s.add_argument(
        "--comparison",
        metavar="RUN_ID|NAME",
        help="a finished comparison's results table (arm, n, mean [CI], Δ vs baseline [CI], p, adjusted p, "
        "verdict, trial-hours): its parent run id or --name; the table shows the primary metric, --wide "
        "and csv/md/json every metric, --export DIR its files",
    )
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


SEARCH_ONLY = ("study", "top", "where", "group_by", "seeds", "pareto")


def run(args) -> int:
    if args.comparison:
        return run_comparison(args)
    if not args.task:
        raise BenchError("bench leaderboard needs --task TASK (trials of a task) or --comparison RUN_ID|NAME "
                         "(a comparison's results), but got neither.")
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
        if fmt in ("table", "wide"):  # machine-readable formats stay the table alone
            print(predict_hint(table, args.task))
    if args.export:
        paths = export(table, args.task, args.export, study=args.study, by=args.group_by or "guidance")
        print("exported " + ", ".join(str(p) for p in paths))
    return 0


def predict_hint(table, task: str) -> str:
    """The `bench predict` command for the best COMPLETE trial of ``table`` (or why there is none)."""
    complete = table[table["state"] == "COMPLETE"] if "state" in table else table.iloc[:0]
    if complete.empty or "run_id" not in complete:
        return "No COMPLETE trial to predict with yet."
    run_id = complete.iloc[0]["run_id"]
    # one command per line: the table's 120 columns hold each, a run id is never cut
    return (f"Use the best trial:\n  bench predict --task {task} --run-id {run_id} --data IMAGES --out PREDICTIONS\n"
            f"  bench register --task {task} --run-id {run_id} --name NAME")


def run_comparison(args) -> int:
    """``--comparison``: the stored results table of one comparison, as text, CSV, Markdown or JSON."""
    given = [f"--{name.replace('_', '-')}" for name in SEARCH_ONLY if getattr(args, name)]
    if given:
        raise BenchError(f"--comparison shows one comparison's results table, so it takes --format, --wide, "
                         f"--out, --export and --task, but got {', '.join(given)}.")
    require_store("bench leaderboard --comparison", args.task, maker="bench compare")
    import json

    from bench.compare.read import export_comparison, find_comparison
    from bench.compare_stats import results_csv, results_display, results_markdown
    from bench.tables import render

    stored = find_comparison(args.comparison, args.task)
    table = stored.table
    if args.format == "csv":
        text = results_csv(table)
    elif args.format == "md":
        text = f"# Comparison {stored.name}\n\n{stored.header()}\n\n{results_markdown(table)}"
    elif args.format == "json":
        records = json.loads(table.to_json(orient="records"))
        about = {"comparison": stored.name, "run_id": stored.run_id, "task": stored.task,
                 "metric": stored.metric, "settings": stored.settings}
        text = json.dumps({**about, "results": records}, indent=1)
    else:
        if args.wide:
            shown = results_display(table)
        else:  # the primary metric only, named in the header line; its test in the footnote: 120 columns
            primary = results_display(table[table["metric"] == stored.metric])
            tests = sorted(set(primary["test"]) - {""})
            # the verdict's columns; the case-level Δ (given these models) is in --wide and the other formats
            shown = (primary.drop(columns=["metric", "unit", "test", "Δ vs baseline [CI]", "p"], errors="ignore")
                     .rename(columns={"adjusted p": "adj. p", "trial-hours": "hours", "detectable Δ": "detectable"})
                     .set_index("arm"))
        text = stored.header() + "\n" + render(shown, "wide" if args.wide else "table")
        others = sorted(set(table["metric"]) - {stored.metric})
        if not args.wide:
            text += (f"\nadj. p: {', '.join(tests)}, adjusted over the arms; detectable: the smallest Δ "
                     f"detectable with 80% power; hours: trial-hours of all runs of the arm; the case-level Δ "
                     f"(given these models): --wide")
        if others and not args.wide:
            text += f"\n{len(others)} more metrics ({', '.join(others)}): --wide or --format csv|md|json"
    if args.out:
        from bench.config import atomic_write_text

        print(f"wrote {atomic_write_text(args.out, text)}")
    else:
        print(text.rstrip("\n"))
    if args.export:
        paths = export_comparison(stored, args.export)
        print("exported " + ", ".join(str(p) for p in paths))
    return 0
