"""`bench search`: parse the request, hand it to the search backend, show progress and the leaderboard.

The search itself (settings, trials, repeats) lives in ``bench.search``; this module only turns flags into
``SearchSettings`` and prints what comes back.
"""

from __future__ import annotations

import contextlib
import re

from bench.cli._common import (
    PRESET_CHOICES,
    RAW,
    add_data_options,
    add_format,
    add_stage_cache,
    add_task,
    check_store_reachable,
    choice_type,
    console,
    data_options,
    data_path,
    describe,
    metric_list,
)
from bench.cli._progress import SearchStatus, running_trials_text  # noqa: F401  (re-exported)
from bench.errors import BenchError
from bench.search.backends import BACKENDS as _BACKENDS
from bench.search.samplers import PRUNERS as _PRUNERS
from bench.search.samplers import SAMPLERS as _SAMPLERS
from bench.search.samplers import SCHEDULERS as _SCHEDULERS
from bench.tasks.cli_params import add_task_params, task_param_overrides

EXAMPLES = (
    "examples:\n  bench search --task xray-heart\n"
    "  bench search --task xray-heart --preset smoke --trials 2\n"
    "  bench search --task xray-heart --study mine --resume\n"
    "  bench search --task xray-heart --workers 4\n"
    "  bench search --task xray-heart --preset gpu --precision bf16 --compile\n"
    "  bench search --task xray-heart --seeds 3 --seeds-top 3\n"
    "  bench search --task xray-heart --folds 5 --pruner wilcoxon\n"
    "  bench search --task xray-heart --sampler nsga2 --objectives val_auroc,n_weights\n"
    "  bench search --task xray-heart --backend ray --scheduler asha --cpus-per-trial 2"
)
# Names from the registries of bench.search (light: Optuna and Ray load only when a search starts).
SAMPLERS = tuple(_SAMPLERS.names())
PRUNERS = tuple(_PRUNERS.names())
SCHEDULERS = tuple(_SCHEDULERS.names())
BACKENDS = tuple(_BACKENDS.names())
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def add_parser(sub) -> None:
    s = sub.add_parser(
        "search",
        help="run a search; every trial is logged to MLflow",
        epilog=EXAMPLES,
        formatter_class=RAW,
        description=describe(
            "Search a task's space (architecture, loss, guidance, learning rates) under a "
            "budget preset; every trial is an MLflow run, the study an Optuna study."
        ),
    )
    add_task(s)
    s.add_argument("--data", help="data folder (default: the built-in phantom)")
    add_data_options(s, "--data")
    add_task_params(s)
    add_format(s, "data format of --data (default: the one format that recognises the folder, else the phantom; "
                  "see `bench list formats`)")
    s.add_argument(
        "--preset",
        metavar="PRESET",
        choices=PRESET_CHOICES,
        type=choice_type(PRESET_CHOICES, "preset"),
        help="budget preset, one of: %(choices)s (default cpu; trial counts: `bench tasks`)",
    )
    s.add_argument("--trials", type=int, help="number of trials (default: the preset's count)")
    s.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    s.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial (default 0)")
    s.add_argument(
        "--fold", type=int, default=0, help="cross-validation fold used for validation (default 0)"
    )
    s.add_argument(
        "--folds",
        type=int,
        default=1,
        metavar="K",
        help="cross-validate every trial: its objective is the mean over folds 0..K-1 of the split, "
        "logged fold by fold; the pruner then judges fold scores (default 1: validate on --fold only)",
    )
    s.add_argument(
        "--sampler", default="tpe", choices=SAMPLERS, help="Optuna sampler: %(choices)s (default tpe)"
    )
    s.add_argument(
        "--pruner",
        default="median",
        choices=PRUNERS,
        help="Optuna pruner: %(choices)s (default median; wilcoxon needs --folds 5 or more)",
    )
    s.add_argument(
        "--storage",
        help="Optuna storage: journal file path or RDB URL (default optuna.journal beside the MLflow store)",
    )
    s.add_argument("--study", help="study name (default: <task>-<preset>-<time>)")
    s.add_argument("--resume", action="store_true", help="continue the study named by --study")
    s.add_argument("--repair-journal", action="store_true",
                   help="move corrupt records of the Optuna journal file aside (to <journal>.torn-<time>) and keep "
                   "every whole one, instead of refusing the journal")
    s.add_argument("--space", help="search space YAML (default: the preset's file in search_spaces/)")
    s.add_argument(
        "--backend", default="optuna", choices=BACKENDS, help="search backend: %(choices)s (default optuna)"
    )
    s.add_argument(
        "--workers",
        type=int,
        help="optuna: worker processes on one shared study (default 1, or GPUs x --trials-per-gpu)",
    )
    s.add_argument(
        "--trials-per-gpu", type=int, help="optuna: concurrent trials per GPU (workers pinned round robin)"
    )
    s.add_argument(
        "--scheduler",
        default="asha",
        choices=SCHEDULERS,
        help="ray: trial scheduler (early stopping): %(choices)s (default asha)",
    )
    s.add_argument(
        "--cpus-per-trial", type=float, default=1.0, help="ray: CPUs reserved per trial (default 1)"
    )
    s.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="ray: GPUs per trial, fractions share a GPU (default 0)",
    )
    s.add_argument("--address", help="ray: HOST:PORT of a running Ray cluster (default: start Ray locally)")
    s.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="%(choices)s; auto: fp32 on CPU, bf16 autocast on GPUs that support it, else fp16 with "
        "GradScaler",
    )
    s.add_argument(
        "--compile",
        action="store_true",
        help="run training steps through torch.compile (falls back to eager with a warning)",
    )
    s.add_argument(
        "--deterministic",
        action="store_true",
        help="fp32, deterministic kernels, no cudnn benchmark (the default on CPU)",
    )
    s.add_argument(
        "--objectives",
        metavar="M1,M2",
        help="multi-objective search over these metrics (e.g. val_auroc,n_weights or "
        "val_auroc,trial_seconds), each in its declared direction; pruning is switched off",
    )
    s.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="K",
        help="after the search, repeat the top configs so each has K seeds: the search seed S (the "
        "original trial) and S+1..S+K-1; see `bench leaderboard --seeds`",
    )
    s.add_argument(
        "--seeds-top", type=int, default=3, metavar="N", help="configs to repeat with --seeds (default 3)"
    )
    add_stage_cache(s, "on")
    s.set_defaults(func=run)


def _interrupt_on_sigterm() -> None:
    """Turn SIGTERM (kill, a scheduler's stop) into KeyboardInterrupt so open MLflow runs get closed."""
    import signal

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)


def data_overrides(args) -> dict:
    """Config overrides for the data's class list and reader options (:func:`data_options`)."""
    classes, options = data_options(args)
    overrides: dict = task_param_overrides(args)
    if classes:
        overrides["classes"] = classes
    if options:
        overrides["reader_options"] = options
    return overrides


def settings_from(args):
    from bench.search.driver import SearchSettings
    from bench.tasks import TASKS

    return SearchSettings(
        task=args.task,
        preset=args.preset,
        data=data_path(args.data) if args.data else "phantom",
        data_format=args.format or TASKS.get(args.task).default_format(args.data and data_path(args.data)),
        trials=args.trials,
        timeout=args.timeout,
        seed=args.seed,
        sampler=args.sampler,
        pruner=args.pruner,
        storage=args.storage,
        study=args.study,
        resume=args.resume,
        repair_journal=args.repair_journal,
        space=args.space,
        fold=args.fold,
        folds=args.folds,
        workers=args.workers,
        trials_per_gpu=args.trials_per_gpu,
        backend=args.backend,
        scheduler=args.scheduler,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        address=args.address,
        precision=args.precision,
        compile=args.compile,
        deterministic=True if args.deterministic else None,
        objectives=metric_list(args.objectives),
        overrides=data_overrides(args),
    )


def check_arguments(args) -> None:
    """Counts and times that cannot make a search, refused before a study, store or run exists."""
    if args.trials is not None and args.trials < 1:
        raise BenchError(f"--trials must be at least 1, but got {args.trials}. Leave it out for the preset's count.")
    if args.timeout is not None and not args.timeout > 0:
        raise BenchError(f"--timeout must be a positive number of seconds, but got {args.timeout:g}.")
    if args.seeds < 1 or args.seeds_top < 1:
        raise BenchError(
            f"--seeds and --seeds-top must be at least 1, but got {args.seeds} and {args.seeds_top}."
        )


def run(args) -> int:
    from bench import stages

    with stages.switched(args.stage_cache == "on"):  # worker processes and Ray trials inherit it
        return _run(args)


def _run(args) -> int:
    check_arguments(args)
    check_store_reachable("bench search")
    import optuna

    from bench.cli._progress import search_display
    from bench.search.backends import check_supported, run_search
    from bench.tasks import TASKS

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _interrupt_on_sigterm()
    spec = TASKS.get(args.task)
    settings = settings_from(args)
    check_supported(settings)  # an option this backend would ignore stops here, before any data or run
    n_trials = args.trials if args.trials is not None else spec.preset(args.preset).trials
    out = console()
    with search_display(out, args.task, n_trials) as (advance, status):

        def on_trial(study, trial):
            try:
                best = f"best {spec.objective}={study.best_value:.4f}"
            except (ValueError, AttributeError, RuntimeError):  # none finished yet; Ray; multi-objective
                best = "no finished trial yet" if study is not None else ""
            advance()
            state = trial.state.name.lower()
            reason = getattr(trial, "user_attrs", {}).get("fail_reason") if state == "fail" else None  # Ray: none
            if reason and status.line is None:  # the bar's status line is redrawn: the failure stays above it
                out.print(f"t{trial.number:03d} failed: {short_reason(reason)}", markup=False)
            status.finished(f"t{trial.number:03d} " + (f"failed: {short_reason(reason)}" if reason else state)
                            + (f" · {best}" if best else ""))

        with status.watching(args.task), printed_notes(out):
            summary = run_search(settings, on_trial)
    out.print(
        f"\nstudy {summary.study}: {summary.n_complete} complete, {summary.n_pruned} pruned, "
        f"{summary.n_failed} failed in {summary.seconds:.0f} s (storage {summary.storage})", soft_wrap=True
    )
    if settings.folds > 1:
        out.print(f"each trial's objective is the mean of folds 0..{settings.folds - 1} (per fold: metric "
                  "fold/<objective> on the trial run, one nested run per fold)")
    for reason in summary.fail_reasons[:3]:
        out.print(f"  failed: {short_reason(reason)}", markup=False, soft_wrap=True)
    if summary.n_complete:
        _print_leaderboard(args.task, summary.study, settings.objectives)
    if summary.n_complete and args.seeds > 1:
        _repeat_seeds(args, settings, summary, out)
    _print_ui_hint(args.task, out)
    return 0 if summary.n_complete else 1


def short_reason(reason: str) -> str:
    """A failed trial's reason as a person reads it: bench's own errors by their message, a library's by its
    class name and message (no module path), on one line."""
    first, sep, message = reason.partition(": ")
    if sep and re.fullmatch(r"[\w.]+", first):
        name = first.rsplit(".", 1)[-1]
        reason = message if first.startswith("bench.") else f"{name}: {message}"
    return " ".join(reason.split())


@contextlib.contextmanager
def printed_notes(out):
    """Print what the data decided for the search (``bench.search.driver.NOTES_LOGGER``) as its own line."""
    import logging

    from bench.search.driver import NOTES_LOGGER

    class Printer(logging.Handler):
        def emit(self, record) -> None:
            out.print(record.getMessage(), markup=False)

    logger, handler = logging.getLogger(NOTES_LOGGER), Printer(logging.INFO)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def _print_ui_hint(task: str, out) -> None:
    """Where the leaderboard is in the MLflow UI: the view `bench ui` opens, at the URL it will have on
    `mlflow ui`'s default port."""
    from bench.cli.ui import DEFAULT_PORT, publish_view

    view = publish_view(task)
    port = f" --port {DEFAULT_PORT}"
    if view:
        out.print(f"\nLeaderboard in the MLflow UI: run `bench ui --task {task}{port}` (or `mlflow ui`) in this "
                  "folder, then open\n"
                  f"  {view.url(f'http://127.0.0.1:{DEFAULT_PORT}')}", markup=False, soft_wrap=True)
    out.print(f"Replay the best trial: bench replay --task {task}", markup=False)


def _print_leaderboard(task: str, study: str, objectives: tuple[str, ...]) -> None:
    from bench.leaderboard import compact, leaderboard, render

    table = leaderboard(task, study=study)
    print(render(compact(table.head(10), task), "table"))
    if objectives:
        from bench.pareto import pareto_table

        print(
            f"\nPareto front of {', '.join(objectives)} (pruning was off: Optuna cannot prune "
            "multi-objective trials):"
        )
        print(render(pareto_table(table, objectives), "table"))


def _repeat_seeds(args, settings, summary, out) -> None:
    """Retrain the top configs on more seeds, under the runtime policy the search asked for, and print their
    seed-pooled case-bootstrap summary."""
    from bench import runtime
    from bench.leaderboard import render, seed_summary
    from bench.search.seeds import repeat_top

    top = args.seeds_top
    out.print(
        f"\nrepeating the top {top} configs on seeds {args.seed + 1}..{args.seed + args.seeds - 1} "
        f"({args.seeds} seeds with the original)"
    )
    with runtime.using(settings.runtime_policy()):
        repeats = repeat_top(
            args.task,
            summary.study,
            summary.parent_run_id,
            args.seeds,
            top,
            on_repeat=lambda r: out.print(
                f"  seed {r.seed} of {r.original_run_id[:8]}: {r.state} {r.objective:.4f}", markup=False
            ),
        )
    if any(r.state == "COMPLETE" for r in repeats):
        print(render(seed_summary(args.task, study=summary.study).drop(columns=["run_id"]), "table"))

