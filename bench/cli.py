"""Command line: parse, call, print. Heavy libraries are imported inside the commands that need them."""

from __future__ import annotations

import argparse
import json
import sys

from bench.errors import BenchError

EXAMPLES = {
    "search": "examples:\n  bench search --task xray-heart\n  bench search --task xray-heart --preset smoke --trials 2\n"
              "  bench search --task xray-heart --study mine --resume\n"
              "  bench search --task xray-heart --workers 4\n"
              "  bench search --task xray-heart --preset gpu --precision bf16 --compile\n"
              "  bench search --task xray-heart --seeds 3 --seeds-top 3\n"
              "  bench search --task xray-heart --sampler nsga2 --objectives val_auroc,n_weights\n"
              "  bench search --task xray-heart --backend ray --scheduler asha --cpus-per-trial 2",
    "leaderboard": "examples:\n  bench leaderboard --task xray-heart\n  bench leaderboard --task xray-heart --format md --out lb.md\n"
                   "  bench leaderboard --task xray-heart --where seg_loss=tversky --where guidance=soft_mask\n"
                   "  bench leaderboard --task xray-heart --group-by guidance\n"
                   "  bench leaderboard --task xray-heart --seeds\n"
                   "  bench leaderboard --task xray-heart --pareto val_auroc,n_weights\n"
                   "  bench leaderboard --task xray-heart --export results/xray-heart",
    "replay": "examples:\n  bench replay --task xray-heart\n  bench replay --task xray-heart --run-id <MLflow run id>\n"
              "  bench replay --task xray-heart --checkpoint\n  bench replay --task xray-heart --seeds 3\n"
              "  bench replay --task xray-heart --checkpoint --register xray-heart-best",
    "datasets": "examples:\n  bench datasets make-phantom --task xray-heart --out phantom --format png\n"
                "  bench datasets split phantom --task xray-heart --format png",
}


def _console():
    from rich.console import Console

    return Console()


def cmd_tasks(args) -> int:
    from bench.data.formats import FORMATS
    from bench.tasks import TASKS

    for entry in TASKS.entries():
        spec = entry.obj
        print(f"{spec.name}: {spec.description}")
        print(f"  objective: {spec.objective}   metrics: {', '.join(spec.metrics)}")
        print(f"  formats: phantom (built in), {', '.join(f for f in spec.formats if f in FORMATS)}")
        print("  presets: " + ", ".join(f"{k} ({p.description})" for k, p in spec.presets.items()))
        print(f"  default split: datasets/splits/{spec.name}-phantom.json")
    return 0


def _registries():
    from bench.data.formats import FORMATS
    from bench.guidance import GUIDANCE
    from bench.losses import SEG_LOSSES
    from bench.models import CLASSIFIERS, SEG_MODELS

    return {"losses": [SEG_LOSSES], "guidance": [GUIDANCE], "models": [SEG_MODELS, CLASSIFIERS], "formats": [FORMATS]}


def cmd_list(args) -> int:
    registries = _registries()[args.what]
    rows = [{"kind": r.kind, "name": e.name, "description": e.description,
             "parameters": {k: v for k, v in e.parameters().items()}, **({"tags": e.tags} if e.tags else {})}
            for r in registries for e in r.entries()]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    for row in rows:
        params = ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items())
        print(f"{row['name']:<18} {row['kind']:<20} {row['description']}" + (f"  [{params}]" if params else ""))
    return 0


def _task_hook(task: str, hook: str):
    from bench.tasks import TASKS

    func = getattr(TASKS.get(task), hook)
    if func is None:
        raise BenchError(f"this command needs task '{task}' to provide {hook}, but it has none.")
    return func


def cmd_make_phantom(args) -> int:
    out = _task_hook(args.task, "make_phantom")(args.out, args.format, args.cases, args.seed)
    print(f"wrote the {args.task} phantom as {args.format} to {out}")
    return 0


def cmd_inspect(args) -> int:
    report = _task_hook(args.task, "inspect")(args.path, args.format)
    if args.json:
        print(json.dumps(report, indent=1, default=str))
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 1 if report.get("problems") else 0


def cmd_split(args) -> int:
    from bench.data.sources import write_split
    from bench.tasks import TASKS

    split, out = write_split(args.path, args.task, args.format, n_folds=args.folds, seed=args.seed, out=args.out,
                             phantom_cases=TASKS.get(args.task).phantom_cases)
    print(f"wrote {out} (sha256 {split.sha256[:16]}…, {len(split.test)} test cases, {len(split.folds)} folds)")
    return 0


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM (kill, a scheduler's stop) into KeyboardInterrupt so open MLflow runs get closed."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def cmd_search(args) -> int:
    import optuna
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bench.leaderboard import compact, leaderboard, render
    from bench.search.optuna_backend import SearchSettings, run_search
    from bench.tasks import TASKS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _interrupt_on_sigterm()
    spec = TASKS.get(args.task)
    settings = SearchSettings(
        task=args.task, preset=args.preset, data=args.data or "phantom",
        data_format=args.format or ("phantom" if not args.data else "png"), trials=args.trials,
        timeout=args.timeout, seed=args.seed, sampler=args.sampler, pruner=args.pruner, storage=args.storage,
        study=args.study, resume=args.resume, space=args.space, fold=args.fold, workers=args.workers,
        trials_per_gpu=args.trials_per_gpu, backend=args.backend, scheduler=args.scheduler,
        cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial, address=args.address,
        precision=args.precision, compile=args.compile, deterministic=True if args.deterministic else None,
        objectives=_metric_list(args.objectives),
    )
    if args.seeds < 1 or args.seeds_top < 1:
        raise BenchError(f"--seeds and --seeds-top must be at least 1, but got {args.seeds} and {args.seeds_top}.")
    if args.backend == "ray":
        from bench.search.ray_backend import run_search
    n_trials = args.trials if args.trials is not None else spec.preset(args.preset).trials
    console = _console()
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[status]}"), console=console) as progress:
        bar = progress.add_task(f"search {args.task}", total=n_trials, status="preparing data…")

        def on_trial(study, trial):
            try:
                best = f"best {spec.objective}={study.best_value:.4f}"
            except (ValueError, AttributeError, RuntimeError):  # none finished yet; Ray; multi-objective
                best = "no finished trial yet" if study is not None else ""
            progress.update(bar, advance=1, status=f"t{trial.number:03d} {trial.state.name.lower()} · {best}")

        summary = run_search(settings, on_trial)
    console.print(f"\nstudy {summary.study}: {summary.n_complete} complete, {summary.n_pruned} pruned, "
                  f"{summary.n_failed} failed in {summary.seconds:.0f} s (storage {summary.storage})")
    for reason in summary.fail_reasons[:3]:
        console.print(f"  failed: {reason}", markup=False)
    if summary.n_complete:
        table = leaderboard(args.task, study=summary.study)
        print(render(compact(table.head(10), args.task), "table"))
        if settings.objectives:
            from bench.pareto import pareto_table

            print(f"\nPareto front of {', '.join(settings.objectives)} (pruning was off: Optuna cannot prune "
                  "multi-objective trials):")
            print(render(pareto_table(table, settings.objectives), "table"))
    if summary.n_complete and args.seeds > 1:
        _repeat_seeds(args, settings, summary, console)
    console.print(f"\nLeaderboard in the MLflow UI: run `mlflow ui` in this folder (or `bench ui`), "
                  f"experiment {summary.experiment}.\nReplay the best trial: bench replay --task {args.task}")
    return 0 if summary.n_complete else 1


def _metric_list(text: str | None) -> tuple[str, ...]:
    return tuple(m.strip() for m in (text or "").split(",") if m.strip())


def _repeat_seeds(args, settings, summary, console) -> None:
    """Retrain the top configs on more seeds, under the runtime policy the search asked for, and print their
    seed-pooled case-bootstrap summary."""
    from bench import runtime
    from bench.leaderboard import render, seed_summary
    from bench.search.seeds import repeat_top

    top = args.seeds_top
    console.print(f"\nrepeating the top {top} configs on seeds {args.seed + 1}..{args.seed + args.seeds - 1} "
                  f"({args.seeds} seeds with the original)")
    with runtime.using(settings.runtime_policy()):
        repeats = repeat_top(args.task, summary.study, summary.parent_run_id, args.seeds, top,
                             on_repeat=lambda r: console.print(f"  seed {r.seed} of {r.original_run_id[:8]}: "
                                                               f"{r.state} {r.objective:.4f}", markup=False))
    if any(r.state == "COMPLETE" for r in repeats):
        print(render(seed_summary(args.task, study=summary.study).drop(columns=["run_id"]), "table"))


def cmd_leaderboard(args) -> int:
    from bench.leaderboard import compact, export, group_summary, leaderboard, render, write
    from bench.tasks import TASKS

    if args.seeds:
        from bench.leaderboard import seed_summary

        print(render(seed_summary(args.task, study=args.study), args.format))
        return 0
    table = leaderboard(args.task, study=args.study, top=args.top, where=args.where or ())
    if args.pareto:
        from bench.pareto import pareto_table

        print(render(pareto_table(table, _metric_list(args.pareto)), args.format))
    elif args.group_by:
        groups = group_summary(table, args.group_by, TASKS.get(args.task).objective).set_index(args.group_by)
        print(render(groups, args.format))
    elif args.out:
        print(f"wrote {write(table, args.format, args.out)}")
    else:
        print(render(compact(table, args.task) if args.format == "table" else table, args.format))
    if args.export:
        paths = export(table, args.task, args.export, study=args.study, by=args.group_by or "guidance")
        print("exported " + ", ".join(str(p) for p in paths))
    return 0


def cmd_replay(args) -> int:
    from bench.replay import diff_table, replay

    v = replay(args.task, run_id=args.run_id, study=args.study, tolerance=args.tolerance, checkpoint=args.checkpoint,
               seeds=args.seeds, register=args.register, deterministic=args.deterministic)
    print(f"run {v.original_run_id}: {v.metric} original {v.original:.6f}, replayed {v.replayed:.6f}, "
          f"difference {v.difference:.2e} (tolerance {v.tolerance:g}, mode {v.mode})")
    print(f"runtime: {v.runtime}" + ("" if args.deterministic else " (as recorded on the original run)"))
    print(diff_table(v.differences))
    if v.seed_spread is not None:
        mean, low, high = v.seed_spread
        print(f"other seeds {', '.join(map(str, v.seed_values))}: {v.metric} mean {mean:.6f}, min {low:.6f}, "
              f"max {high:.6f}; original {'within' if v.within_seed_range else 'outside'} [min, max]")
    if v.registered:
        print(f"registered checkpoint.pt of run {v.original_run_id} as {v.registered}")
    print(f"verdict: {v.verdict} (replay run {v.replay_run_id})")
    return 0 if v.reproduced else 1


def cmd_ui(args) -> int:
    import socket
    import subprocess

    from bench.tracking import store_dir, tracking_uri

    port = args.port
    if not port:
        # Ask the OS for a free port on loopback; a small race with other programs is acceptable here.
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    print(f"MLflow UI on http://127.0.0.1:{port} over {tracking_uri()} (Ctrl-C stops it)", flush=True)
    journal = store_dir() / "optuna.journal"
    if journal.exists():
        print(f"Optuna studies: pip install optuna-dashboard && optuna-dashboard {journal}", flush=True)
    # One worker: a personal UI needs no more, and each extra worker costs seconds of start-up and memory.
    return subprocess.call([sys.executable, "-m", "mlflow", "ui", "--host", "127.0.0.1", "--port", str(port),
                            "--workers", str(args.workers), "--backend-store-uri", tracking_uri()])


def cmd_perf(args) -> int:
    import yaml

    from bench.perf import run_suite

    params = {}
    for item in args.param or ():
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise BenchError(f"--param must look like KEY=VALUE, but got '{item}'. Example: --param epochs=5")
        params[key] = yaml.safe_load(value)  # numbers, lists and booleans typed as YAML reads them
    result = run_suite(args.suite, out=args.out, quick=args.quick, **params)
    if args.json:
        print(json.dumps(result, default=str))
        return 0
    headline = {k: result[k] for k in ("ratio", "share", "fraction", "speedup", "goal", "met") if k in result}
    print(f"{args.suite}: " + ", ".join(f"{k}={v}" for k, v in headline.items()))
    print(f"wrote {args.out}/{args.suite}.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description="AutoML benchmarking for medical imaging.")
    sub = p.add_subparsers(dest="command", required=True)
    fmt = argparse.RawDescriptionHelpFormatter

    s = sub.add_parser("tasks", help="list tasks, formats, metrics and presets")
    s.set_defaults(func=cmd_tasks)

    s = sub.add_parser("list", help="what can be searched: losses, guidance strategies, models, formats")
    s.add_argument("what", choices=["losses", "guidance", "models", "formats"])
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_list)

    d = sub.add_parser("datasets", help="make, inspect and split data sets", epilog=EXAMPLES["datasets"],
                       formatter_class=fmt).add_subparsers(dest="action", required=True)
    s = d.add_parser("make-phantom", help="write the built-in phantom in a real on-disk format")
    s.add_argument("--task", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--format", default="png", help="xray-heart: png|dicom; ct-lung: dicom|nifti|mhd")
    s.add_argument("--cases", type=int, help="number of patients")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_make_phantom)
    for name, func, help_ in (("inspect", cmd_inspect, "counts and problems of a data folder"),
                              ("split", cmd_split, "patient-grouped stratified split file")):
        s = d.add_parser(name, help=help_)
        s.add_argument("path")
        s.add_argument("--task", required=True)
        s.add_argument("--format", help="data format (see `bench list formats`); omit for path 'phantom'")
        if name == "inspect":
            s.add_argument("--json", action="store_true")
        else:
            s.add_argument("--folds", type=int, default=5)
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--out")
        s.set_defaults(func=func)

    s = sub.add_parser("search", help="run a search; every trial is logged to MLflow", epilog=EXAMPLES["search"],
                       formatter_class=fmt)
    s.add_argument("--task", required=True)
    s.add_argument("--data", help="data folder (default: the built-in phantom)")
    s.add_argument("--format", help="data format of --data (see `bench list formats`)")
    s.add_argument("--preset", help="budget preset: smoke, cpu (default), gpu")
    s.add_argument("--trials", type=int)
    s.add_argument("--timeout", type=float, help="seconds")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fold", type=int, default=0)
    s.add_argument("--sampler", default="tpe", choices=["tpe", "random", "cmaes", "nsga2", "grid"])
    s.add_argument("--pruner", default="median", choices=["median", "hyperband", "none"])
    s.add_argument("--storage", help="Optuna storage: journal file path or RDB URL (default optuna.journal "
                                     "beside the MLflow store)")
    s.add_argument("--study", help="study name (default: <task>-<preset>-<time>)")
    s.add_argument("--resume", action="store_true", help="continue the study named by --study")
    s.add_argument("--space", help="search space YAML (default: the preset's file in search_spaces/)")
    s.add_argument("--backend", default="optuna", choices=["optuna", "ray"])
    s.add_argument("--workers", type=int, help="optuna: worker processes on one shared study (default 1, or "
                                               "GPUs x --trials-per-gpu)")
    s.add_argument("--trials-per-gpu", type=int, help="optuna: concurrent trials per GPU (workers pinned round robin)")
    s.add_argument("--scheduler", default="asha", choices=["asha", "hyperband", "none"],
                   help="ray: trial scheduler (early stopping)")
    s.add_argument("--cpus-per-trial", type=float, default=1.0, help="ray: CPUs reserved per trial")
    s.add_argument("--gpus-per-trial", type=float, default=0.0, help="ray: GPUs per trial (fractions share a GPU)")
    s.add_argument("--address", help="ray: HOST:PORT of a running Ray cluster (default: start Ray locally)")
    s.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: fp32 on CPU, bf16 autocast on GPUs that support it, else fp16 with GradScaler")
    s.add_argument("--compile", action="store_true",
                   help="run training steps through torch.compile (falls back to eager with a warning)")
    s.add_argument("--deterministic", action="store_true",
                   help="fp32, deterministic kernels, no cudnn benchmark (the default on CPU)")
    s.add_argument("--objectives", metavar="M1,M2",
                   help="multi-objective search over these metrics (e.g. val_auroc,n_weights or "
                        "val_auroc,trial_seconds), each in its declared direction; pruning is switched off")
    s.add_argument("--seeds", type=int, default=1, metavar="K",
                   help="after the search, repeat the top configs so each has K seeds: the search seed S (the "
                        "original trial) and S+1..S+K-1; see `bench leaderboard --seeds`")
    s.add_argument("--seeds-top", type=int, default=3, metavar="N", help="configs to repeat with --seeds (default 3)")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("leaderboard", help="trials ranked by the objective, read from MLflow",
                       epilog=EXAMPLES["leaderboard"], formatter_class=fmt)
    s.add_argument("--task", required=True)
    s.add_argument("--study")
    s.add_argument("--top", type=int)
    s.add_argument("--format", default="table", choices=["table", "csv", "md", "json"])
    s.add_argument("--out", help="write the table in --format to this file instead of printing it")
    s.add_argument("--where", action="append", metavar="KEY=VALUE",
                   help="keep trials whose column/param matches (also KEY!=VALUE); repeat to combine")
    s.add_argument("--group-by", metavar="DIM",
                   help="compare strategies: per value of DIM (guidance, seg_loss, seg_arch...) n, mean, "
                        "95%% bootstrap CI and best of the objective over COMPLETE trials")
    s.add_argument("--seeds", action="store_true",
                   help="configs repeated on several seeds (bench search --seeds K): n seeds, mean objective and "
                        "95%% bootstrap CI over validation cases, pooled over seeds")
    s.add_argument("--pareto", metavar="M1,M2",
                   help="only the COMPLETE trials on the Pareto front of these metrics (each in its direction)")
    s.add_argument("--export", metavar="DIR",
                   help="write leaderboard.csv, leaderboard.md, groups-DIM.csv and a self-contained report.html")
    s.set_defaults(func=cmd_leaderboard)

    s = sub.add_parser("replay", help="retrain a logged trial and say whether it reproduces",
                       epilog=EXAMPLES["replay"], formatter_class=fmt)
    s.add_argument("--task", required=True)
    s.add_argument("--run-id")
    s.add_argument("--study")
    s.add_argument("--tolerance", type=float, default=1e-6)
    s.add_argument("--checkpoint", action="store_true",
                   help="re-evaluate the logged checkpoint.pt instead of retraining")
    s.add_argument("--seeds", type=int, default=0, metavar="K",
                   help="also retrain on seeds original+1..original+K and report mean/min/max of the objective")
    s.add_argument("--register", metavar="NAME",
                   help="register the trial's checkpoint.pt as a new version of model NAME in the MLflow registry")
    s.add_argument("--deterministic", action="store_true",
                   help="replay fp32 with deterministic kernels instead of the runtime policy the run recorded")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("ui", help="MLflow UI on 127.0.0.1 over the same store")
    s.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one, printed)")
    s.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    s.set_defaults(func=cmd_ui)

    s = sub.add_parser("perf", help="benchmarks of the toolkit itself; writes results/perf/<suite>.json",
                       formatter_class=fmt,
                       epilog="examples:\n  bench perf --suite overhead --json\n  bench perf --suite data --out "
                              "results/perf\n  bench perf --suite search --param seeds=[0,1,2] --param trials=6\n"
                              "  bench perf --suite scale --quick\n  bench perf --suite leaderboard --param runs=10000")
    s.add_argument("--suite", required=True, choices=["overhead", "data", "search", "scale", "tracking", "leaderboard"])
    s.add_argument("--json", action="store_true", help="print the whole result as JSON")
    s.add_argument("--out", default="results/perf", help="folder for <suite>.json and plots")
    s.add_argument("--quick", action="store_true", help="tiny settings: checks the plumbing, not a figure")
    s.add_argument("--param", action="append", metavar="KEY=VALUE", help="suite argument (YAML value); repeat")
    s.set_defaults(func=cmd_perf)
    return p


def _quiet_libraries() -> None:
    import logging
    import os
    import warnings

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=UserWarning, module="optuna")
    warnings.filterwarnings("ignore", message=".*experimental feature.*")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
