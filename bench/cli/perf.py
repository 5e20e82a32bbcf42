"""`bench perf`: benchmarks of the toolkit itself; writes results/perf/<suite>.json."""

from __future__ import annotations

import json

from bench.cli._common import RAW, LazyChoices, describe
from bench.errors import BenchError

EXAMPLES = (
    "examples:\n  bench perf --suite overhead --json\n  bench perf --suite data --out results/perf\n"
    "  bench perf --suite search --param seeds=[0,1,2] --param trials=6\n"
    "  bench perf --suite scale --quick\n  bench perf --suite leaderboard --param runs=10000"
)


def _suites() -> tuple[str, ...]:
    from bench.perf import SUITES

    return SUITES


def add_parser(sub) -> None:
    s = sub.add_parser(
        "perf",
        help="benchmarks of the toolkit itself; writes results/perf/<suite>.json",
        formatter_class=RAW,
        epilog=EXAMPLES,
        description=describe(
            "Time the toolkit against a bare baseline (training loop, data, search, "
            "tracking, leaderboard) and write the figures as JSON."
        ),
    )
    s.add_argument(
        "--suite",
        required=True,
        metavar="SUITE",
        choices=LazyChoices(_suites),
        help="benchmark suite, one of: %(choices)s",
    )
    s.add_argument("--json", action="store_true", help="print the whole result as JSON")
    s.add_argument(
        "--out", default="results/perf", help="folder for <suite>.json and plots (default results/perf)"
    )
    s.add_argument("--quick", action="store_true", help="tiny settings: checks the plumbing, not a figure")
    s.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="suite argument (YAML value); repeat"
    )
    s.set_defaults(func=run)


def run(args) -> int:
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
