"""`bench replay`: retrain (or re-score) a logged trial and say whether it reproduces."""

from __future__ import annotations

from bench.cli._common import RAW, add_stage_cache, add_task, describe, require_experiment

EXAMPLES = (
    "examples:\n  bench replay --task xray-heart\n  bench replay --task xray-heart --run-id <MLflow run id>\n"
    "  bench replay --task xray-heart --checkpoint\n  bench replay --task xray-heart --seeds 3\n"
    "  bench replay --task xray-heart --checkpoint --register xray-heart-best"
)


def add_parser(sub) -> None:
    s = sub.add_parser(
        "replay",
        help="retrain a logged trial and say whether it reproduces",
        epilog=EXAMPLES,
        formatter_class=RAW,
        description=describe(
            "Retrain the best COMPLETE trial (or --run-id) from its logged config and "
            "compare the objective; exit 0 only when it reproduces."
        ),
    )
    add_task(s)
    s.add_argument("--run-id", help="MLflow run id of the trial (default: the best COMPLETE trial)")
    s.add_argument("--study", help="pick the best trial of this study only")
    s.add_argument(
        "--tolerance",
        type=float,
        default=1e-6,
        help="largest objective difference that still counts as reproduced (default 1e-6)",
    )
    s.add_argument(
        "--checkpoint", action="store_true", help="re-evaluate the logged checkpoint.pt instead of retraining"
    )
    s.add_argument(
        "--seeds",
        type=int,
        default=0,
        metavar="K",
        help="also retrain on seeds original+1..original+K and report mean/min/max of the objective",
    )
    s.add_argument(
        "--register",
        metavar="NAME",
        help="when the replay reproduces, register the trial's model (MLflow pyfunc) as a new version of NAME",
    )
    s.add_argument(
        "--deterministic",
        action="store_true",
        help="replay fp32 with deterministic kernels instead of the runtime policy the run recorded",
    )
    add_stage_cache(s, "off")
    s.set_defaults(func=run)


def run(args) -> int:
    import time

    require_experiment(args.task, "bench replay")
    from bench.replay import diff_table, replay

    started = time.monotonic()

    def progress(text: str) -> None:
        print(f"[{time.monotonic() - started:5.0f} s] {text}", flush=True)

    v = replay(
        args.task,
        run_id=args.run_id,
        study=args.study,
        tolerance=args.tolerance,
        checkpoint=args.checkpoint,
        seeds=args.seeds,
        register=args.register,
        deterministic=args.deterministic,
        on_progress=progress,
        stage_cache=args.stage_cache == "on",
    )
    print(
        f"run {v.original_run_id}: {v.metric} original {v.original:.6f}, replayed {v.replayed:.6f}, "
        f"difference {v.difference:.2e} (tolerance {v.tolerance:g}, mode {v.mode})"
    )
    print(f"runtime: {v.runtime}" + ("" if args.deterministic else " (as recorded on the original run)"))
    print(diff_table(v.differences))
    if v.seed_spread is not None:
        mean, low, high = v.seed_spread
        print(
            f"other seeds {', '.join(map(str, v.seed_values))}: {v.metric} mean {mean:.6f}, min {low:.6f}, "
            f"max {high:.6f}; original {'within' if v.within_seed_range else 'outside'} [min, max]"
        )
    if v.registered:
        print(f"registered the model of run {v.original_run_id} as {v.registered}")
    if v.not_registered:
        print(v.not_registered)
    print(f"verdict: {v.verdict} (replay run {v.replay_run_id})")
    return 0 if v.reproduced else 1
