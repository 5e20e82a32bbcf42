"""Start many `bench search` processes at once on a loaded machine and count those that end in a traceback.

Issue 20: on a busy box most searches crashed at start with an ImportError from a thread race. This is the
check run before a session stops (not a test: its outcome on a quiet machine says little). Each start gets
its own working folder (store, journal, cache), so they share nothing but the CPU.

    python scripts/stress_search_starts.py --starts 20 --parallel 4 [--out results/perf/stress_search_starts.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def one_start(index: int, root: Path, extra: list[str]) -> dict:
    folder = root / f"start{index:02d}"
    folder.mkdir()
    env = {**os.environ, "BENCH_CACHE": str(folder / ".bench" / "cache")}
    env.pop("MLFLOW_TRACKING_URI", None)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "bench.cli", "search", "--task", "xray-heart", "--preset", "smoke",
                           "--trials", "1", *extra], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=1800, check=False)
    text = proc.stdout + proc.stderr
    last_error = next((line for line in reversed(proc.stderr.splitlines()) if "Error" in line), "")
    return {"start": index, "exit": proc.returncode, "seconds": round(time.monotonic() - started, 1),
            "traceback": "Traceback" in text, "last_error": last_error[:300]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("extra", nargs="*", help="more `bench search` flags (after --)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-stress-") as tmp, ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda i: one_start(i, Path(tmp), args.extra), range(args.starts)))
    summary = {
        "command": f"bench search --task xray-heart --preset smoke --trials 1 {' '.join(args.extra)}".strip(),
        "starts": args.starts, "parallel": args.parallel, "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "exit_0": sum(r["exit"] == 0 for r in results), "tracebacks": sum(r["traceback"] for r in results),
        "runs": results,
    }
    for r in results:
        print(f"start {r['start']:2d}: exit {r['exit']} in {r['seconds']:6.1f} s"
              + (f"  TRACEBACK {r['last_error']}" if r["traceback"] else ""))
    print(f"{summary['exit_0']}/{args.starts} exit 0, {summary['tracebacks']} with a traceback "
          f"({args.parallel} at a time on {os.cpu_count()} CPUs; load before {summary['load_average_before']})")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["tracebacks"] == 0 and summary["exit_0"] == args.starts else 1


if __name__ == "__main__":
    sys.exit(main())
