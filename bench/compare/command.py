"""``bench compare`` on the command line: parse, call :func:`bench.compare.compare`, print.

Wired into the ``bench`` CLI with ``add_parser(subparsers)``; ``run(args)`` returns the exit status and lets
a :class:`bench.errors.BenchError` propagate (the CLI prints it and exits 2).
"""

from __future__ import annotations

import argparse
import sys

from bench.errors import ConfigError
from bench.tasks.cli_params import add_task_params, task_param_overrides

EXAMPLES = """examples:
  bench compare --task xray-heart --dimension guidance --preset smoke --arms none,soft_mask --folds 2
  bench compare --task xray-heart --dimension guidance --export results/compare/xray-heart-guidance
  bench compare --task xray-heart --dimension guidance --arms none,gate --seeds 2   (descriptive only)
  bench compare --task ct-lung --dimension seg_loss --arms dice,dice_ce,spread_dice --baseline dice
  bench compare --task xray-heart --dimension seg_loss --from-run <RUN_ID>
  bench compare --task xray-heart --dimension guidance --tune 8
  bench compare --task xray-heart --name my-comparison --resume
  bench compare --task xray-heart --dimension guidance --workers 4
  bench compare --task ct-lung --dimension seg_loss --backend ray --address HEAD:6379 --gpus-per-trial 0.5
  bench compare --summarize <PARENT_RUN_1>,<PARENT_RUN_2> --export results/compare/summary
  bench compare --name xray-heart-guidance-cpu --plan-for 0.01"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``compare`` command to ``subparsers`` (of ``argparse``) and return its parser."""
    s = subparsers.add_parser(
        "compare", help="controlled cross-validated paired comparison of the arms of one dimension",
        description="Train every arm of one dimension (guidance, seg_loss, seg_arch, classifier, ...) at one fixed "
                    "or equally tuned configuration on K folds x S seeds, and compare each arm with the "
                    "baseline on the same validation cases.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    from bench.tasks import TASKS  # read anyway by add_task_params below

    s.add_argument("--task", metavar="TASK",
                   help=f"benchmark task, one of: {', '.join(TASKS.names())} (details: `bench tasks`)")
    s.add_argument("--dimension", metavar="D", help="categorical dimension compared: guidance, seg_loss, seg_arch, "
                                                    "classifier, or any categorical parameter of the space")
    s.add_argument("--arms", metavar="A,B,...", help="values of D to compare (default: every choice of D in the space)")
    s.add_argument("--baseline", help="arm the others are compared with (default: none or dice when an arm, "
                                      "else the first arm)")
    s.add_argument("--folds", type=int, metavar="K", help="folds of the standard split (default 5)")
    s.add_argument("--seeds", type=int, metavar="S",
                   help="seeds per fold: --seed .. --seed+S-1 (default 5, the fewest that give verdicts; fewer are "
                        "allowed and descriptive only)")
    s.add_argument("--seed", type=int, default=0, help="first seed (default 0)")
    s.add_argument("--preset", help="budget preset: smoke, cpu (default), gpu")
    s.add_argument("--space", help="search space YAML whose categorical D gives the arms (default: the preset's)")
    s.add_argument("--data", help="data folder (default: the built-in phantom)")
    s.add_argument("--format", help="data format of --data (see `bench list formats`)")
    add_task_params(s)
    source = s.add_mutually_exclusive_group()
    source.add_argument("--config", metavar="FILE", help="fixed configuration: YAML of TrialConfig fields "
                                                          "(default: search_spaces/reference/<task>-<preset>.yaml)")
    source.add_argument("--from-run", metavar="RUN_ID", help="fixed configuration of a logged trial")
    source.add_argument("--study", metavar="NAME", help="fixed configuration of the best trial of a study")
    source.add_argument("--tune", type=int, metavar="N", default=0,
                        help="tune each arm with its own N-trial study over the rest of the space (fold 0), "
                             "then evaluate its best configuration on every fold x seed")
    s.add_argument("--metric", help="primary metric (default: declared per task and dimension)")
    s.add_argument("--name", help="comparison name (default: <task>-<dimension>-<preset>-<time>)")
    s.add_argument("--resume", action="store_true",
                   help="continue comparison --name: finished runs are kept, killed ones re-run")
    s.add_argument("--export", metavar="DIR", help="write results.csv, results.md, plots and report.html here")
    s.add_argument("--summarize", metavar="RUN1,RUN2",
                   help="combine finished comparisons (parent run ids) of several tasks or data sets: mean ranks, "
                        "Friedman test and critical-difference diagram")
    s.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    s.add_argument("--rope", type=float, metavar="X",
                   help="region of practical equivalence of the primary metric: an arm whose difference lies "
                        "within +-X (two one-sided tests) is 'practically equivalent' (default: the metric's "
                        "declared one, 0.01 for AUROC and Dice scores)")
    s.add_argument("--plan-for", type=float, metavar="DELTA",
                   help="train nothing: from the finished pilot comparison --name (its run-to-run and fold "
                        "variances), print how many seeds each arm would need to detect a difference DELTA of the "
                        "primary metric (80%% power, Holm alpha)")
    s.add_argument("--workers", type=int, metavar="N",
                   help="run the arm x fold x seed jobs in N local processes sharing one job queue, torch threads "
                        "= cores // N each (default 1: one after another)")
    s.add_argument("--backend", default="optuna", choices=("optuna", "ray"),
                   help="optuna (default): this machine, --workers N processes; ray: one Ray task per job")
    s.add_argument("--address", help="ray: HOST:PORT of a running Ray cluster (default: start Ray locally)")
    s.add_argument("--cpus-per-trial", type=float, help="ray: CPUs reserved per job (default 1)")
    s.add_argument("--gpus-per-trial", type=float, help="ray: GPUs per job, fractions share a GPU (default 0)")
    s.add_argument("--stage-cache", choices=("on", "off"), default="on",
                   help="on (default): a stage every arm shares (xray-heart's segmenter in a guidance comparison, "
                        "ct-lung's lung stage) is trained once per fold x seed and loaded by the other arms; off: "
                        "every run trains every stage")
    s.set_defaults(func=run)
    return s


def _interrupt_on_sigterm() -> None:
    """SIGTERM (kill, a scheduler's stop) becomes KeyboardInterrupt, so the open runs are closed."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def _config_source(args) -> str | None:
    if args.config:
        return f"file:{args.config}"
    if args.from_run:
        return f"run:{args.from_run}"
    if args.study:
        return f"study:{args.study}"
    return None


def run(args) -> int:
    """Run ``bench compare`` with parsed ``args``; 0 when the comparison finished (or the summary was written)."""
    if args.summarize:
        return _summarize(args)
    if args.rope is not None and not args.rope > 0:
        raise ConfigError(f"--rope must be a difference > 0 of the primary metric, but got {args.rope:g}.")
    if args.plan_for is not None:
        return _plan_for(args)
    if not args.task:
        raise ConfigError("bench compare needs --task (or --summarize RUN1,RUN2), but got neither.")
    from bench.store_location import check_store_reachable

    check_store_reachable("bench compare")
    from bench.compare import compare
    from bench.compare_stats import results_markdown
    from bench.data.stream import data_path
    from bench.tasks import TASKS

    _interrupt_on_sigterm()

    if args.tune:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)

    def progress(p) -> None:
        job = p.job
        if p.stage == "tune":
            print(f"tuning arm {job.arm} ({p.done}/{p.total}): a {args.tune}-trial study on fold 0", flush=True)
            return
        if p.outcome is None:
            status = "finished earlier"
        else:
            value = f" {p.outcome.objective:.4f}" if p.outcome.state == "COMPLETE" else f" ({p.outcome.reason})"
            status = f"{p.outcome.state}{value} in {p.outcome.seconds:.0f} s"
        print(f"[{p.done}/{p.total}] {job.arm} fold {job.fold} seed {job.seed}: {status}", flush=True)

    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    from bench.compare_stats import MIN_SEEDS

    if args.seeds is not None and args.seeds < MIN_SEEDS:
        print(f"note: --seeds {args.seeds} is below {MIN_SEEDS}: the table will show estimates and CIs, and its "
              f"verdict column 'too few runs (n): descriptive only' (never better/worse)", flush=True)
    result = compare(args.task, args.dimension, arms=arms, baseline=args.baseline, folds=args.folds,
                     seeds=args.seeds, preset=args.preset, space=args.space, config_from=_config_source(args),
                     tune=args.tune or 0, metric=args.metric, resume=args.resume, name=args.name,
                     on_progress=progress, data=data_path(args.data) if args.data else "phantom",
                     data_format=args.format or TASKS.get(args.task).default_format(args.data and data_path(args.data)),
                     seed=args.seed,
                     export=args.export, workers=args.workers, backend=args.backend, address=args.address,
                     cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                     resamples=args.resamples, stage_cache=args.stage_cache == "on",
                     task_params=task_param_overrides(args).get("task_params"), rope=args.rope)
    print(f"\ncomparison {result.name} (parent run {result.parent_run_id}): {result.n_ran} runs now, "
          f"{result.n_skipped} finished earlier, {result.n_failed} failed, {result.killed_closed} killed runs "
          f"closed; {result.seconds:.0f} s, {result.trial_hours_total:.3f} trial-hours")
    if result.stages_trained or result.stages_loaded:
        print(f"stage cache: {result.stages_loaded} stage trainings saved (loaded), {result.stages_trained} "
              f"trained" + ("" if args.stage_cache == "on" else " (--stage-cache off)"))
    if result.dropped_cells:
        print(f"left out (fold, seed) cells where some arm did not finish: {result.dropped_cells}")
    print()
    print(results_markdown(result.table[result.table["metric"] == result.metric]))
    print(f"Verdicts ({result.metric}):")
    for line in result.verdicts:
        print(f"  {line}")
    for note in result.analysis.notes:
        print(f"note: {note}")
    if result.exported:
        print(f"exported {', '.join(str(p) for p in result.exported)}")
    print(f"all metrics: results.md on the parent run, or --export DIR; resume with --name {result.name} --resume")
    return 0


def _plan_for(args) -> int:
    """``--plan-for DELTA``: seeds needed per arm from a finished pilot comparison; trains nothing."""
    if not args.name:
        raise ConfigError("--plan-for needs the pilot comparison's --name (a finished comparison), but got none. "
                          "Add --name NAME (`bench leaderboard --comparison NAME` shows it).")
    if not args.plan_for > 0:
        raise ConfigError(f"--plan-for must be a difference > 0 of the primary metric, but got {args.plan_for}.")
    from bench.compare.analysis import seeds_for
    from bench.compare.read import find_comparison

    stored = find_comparison(args.name, args.task)
    metric = args.metric or stored.metric
    plan = seeds_for(stored.table, metric, args.plan_for, folds=args.folds)
    print(stored.header())
    print(f"\nseeds per fold to detect a difference of {args.plan_for:g} in {metric} (80% power, two-sided, "
          f"Holm alpha 0.05 / {max(1, len(plan))}), from the pilot's variance components:")
    for r in plan.itertuples():
        seeds = r.seeds_needed if r.seeds_needed == r.seeds_needed else None  # NaN: not reachable
        need = (f"{int(seeds)} seeds x {r.folds} folds = {int(seeds) * r.folds} runs"
                if seeds else f"not reachable with {r.folds} folds by seeds alone (the fold term, sd "
                                        f"{r.sd_fold:.4f}, is too large: more folds or cases)")
        print(f"  {r.arm}: {need}; pilot {r.pilot} (sd_fold {r.sd_fold:.4f}, sd_seed {r.sd_seed:.4f}) detects "
              f"{r.detectable_now:.4f} now")
    return 0


def _summarize(args) -> int:
    from bench.compare import summarize

    run_ids = [r.strip() for r in args.summarize.split(",") if r.strip()]
    scores, friedman, paths = summarize(run_ids, args.export)
    print(scores.to_string(float_format=lambda x: f"{x:.4f}"))
    print("\nmean ranks (1 = best):")
    print(friedman.mean_ranks.to_string(float_format=lambda x: f"{x:.3f}"))
    print(f"Friedman chi2 = {friedman.statistic:.3f}, p = {friedman.p:.3g}; Iman-Davenport F = "
          f"{friedman.iman_davenport:.3f}, p = {friedman.p_iman_davenport:.3g}; Nemenyi CD = {friedman.cd:.3f} over "
          f"{friedman.n_tasks} comparisons. {friedman.note}")
    if not friedman.rejects:
        print("Friedman's test does not reject that all arms rank alike: the critical difference is not a verdict "
              "(no CD diagram drawn).")
    if paths:
        print(f"exported {', '.join(str(p) for p in paths)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.compare.command ...`` until the command is wired into ``bench``."""
    from bench.errors import BenchError
    from bench.logs import quiet_libraries

    quiet_libraries()
    parser = argparse.ArgumentParser(prog="bench")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["compare", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
