"""Benchmarks of the toolkit itself: harness overhead, data loading, pruning efficiency, scaling, tracking,
leaderboard time on a big store.

Each suite is a plain function returning a JSON-able dict; :func:`run_suite` runs one by name and writes
``<out>/<suite>.json`` atomically, which is what ``bench perf --suite NAME`` calls. Timings are medians of
interleaved repetitions (wall and process CPU time), because the machines these run on are shared.

Example:
    >>> from bench.perf import run_suite
    >>> result = run_suite("overhead", out="results/perf", quick=True)  # doctest: +SKIP
    >>> result["ratio"] > 0  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import ConfigError

__all__ = ["QUICK", "SUITES", "markdown_table", "run_suite", "suite"]


def _load(name: str) -> Callable[..., dict[str, Any]]:
    # Imported on demand: each suite pulls in torch, MLflow or Optuna, which `bench --help` must not pay for.
    import importlib

    name = name.replace("-", "_")  # suite scale-data is bench.perf.scale_data.scale_data
    return getattr(importlib.import_module(f"bench.perf.{name}"), name)


SUITES = ("overhead", "data", "search", "scale", "tracking", "leaderboard", "cli", "stats", "scale-data", "stages")

# Tiny settings: seconds per suite, used by the tests and `bench perf --quick` to check the plumbing.
QUICK: dict[str, dict[str, Any]] = {
    "overhead": {"image_size": 32, "n_train": 16, "n_val": 8, "batch_size": 8, "epochs": 1, "repeats": 1},
    "data": {"n_patients": 4, "n_shifted_patients": 0, "phantom_size": 64, "image_size": 32, "epochs": 1,
             "batch_size": 8, "step_repeats": 1},
    "search": {"seeds": [0], "trials": 1, "cls_epochs": 1, "pruners": ["none", "hyperband"],
               "overrides": {"max_train_cases": 8}},
    "scale": {"workers": [1, 2], "trials": 1, "cls_epochs": 1, "overrides": {"max_train_cases": 8}},
    "tracking": {"preset": "smoke", "overrides": {"max_train_cases": 8, "cls_epochs": 1}, "n_runs": 20,
                 "leaderboard_repeats": 1},
    "leaderboard": {"runs": 50, "repeats": 1, "cold_repeats": 1},
    "cli": {"repeats": 1, "runs": 20},
    "stages": {"arms": ["none", "soft_mask"], "folds": 2, "preset": "smoke", "resamples": 100},
    "stats": {"reps": 40, "cases": [33], "run_sds": [0.015], "rhos": [0.0], "power_seeds": [5], "markdown": None,
              "family_reps": 20},
    "scale-data": {"patients": [12, 24], "image_size": 32, "seg_epochs": 1, "cls_epochs": 1, "batch_size": 8},
}


def suite(name: str) -> Callable[..., dict[str, Any]]:
    """The suite function called ``name``.

    Raises:
        ConfigError: ``name`` is not a suite.
    """
    if name not in SUITES:
        import difflib

        close = difflib.get_close_matches(name, SUITES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"perf suite must be one of {list(SUITES)}, but got '{name}'.{hint}")
    return _load(name)


def run_suite(name: str, out: str | Path | None = "results/perf", quick: bool = False,
              **params: Any) -> dict[str, Any]:
    """Run suite ``name`` and write its result to ``<out>/<name>.json`` (atomically; skipped if out is None).

    Args:
        name: one of :data:`SUITES`.
        out: folder for the JSON (and any PNG the suite draws).
        quick: start from the tiny :data:`QUICK` settings (plumbing checks, not figures).
        **params: keyword arguments of the suite function; they override the quick settings.

    Returns:
        The suite's result dict, with ``suite``, ``settings`` and ``machine`` added.
    """
    from bench.config import atomic_write_text
    from bench.perf._common import machine

    fn = suite(name)
    out = Path(out).resolve() if out is not None else None  # suites chdir into a temp store while running
    kwargs = {**(QUICK[name] if quick else {}), **params}
    try:
        if out is not None and "out" in fn.__code__.co_varnames:
            kwargs.setdefault("out", Path(out))  # suites that draw PNGs put them beside the JSON
        result = fn(**kwargs)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise ConfigError(f"perf parameters must be arguments of suite '{name}', but got {exc}. "
                              f"See `help(bench.perf.{name})`.") from None
        raise
    command = " ".join(["bench perf --suite", name] + (["--quick"] if quick else [])
                       + [f"--param {k}={json.dumps(v, separators=(',', ':'))}" for k, v in params.items()])
    result = {"suite": name, "quick": quick, "command": command, **result, "machine": machine()}
    if out is not None:
        atomic_write_text(Path(out) / f"{name}.json", json.dumps(result, indent=1, default=str) + "\n")
    return result


def _headline(result: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, value, goal, met) rows of one suite's result, for the README table."""
    name = result["suite"]
    if name == "overhead":
        precision = result.get("runtime", {}).get("precision", "fp32")  # files older than the runtime policy: fp32
        return [(f"harness/bare throughput ({precision})", f"{result['ratio']:.3f} (CPU {result['cpu_ratio']:.3f})",
                 result["goal"], "yes" if result["met"] else "no")]
    if name == "data":
        return [("DICOM-decode epoch / cache epoch", f"{result['ratio']:.0f}x (CPU {result['cpu_ratio']:.0f}x)",
                 result["goal"], "yes" if result["met"] else "no"),
                ("loader share of (loader + model step)", f"{result['loader_share']:.4f}", "-", "-")]
    if name == "search":
        rows = []
        for pruner, frac in result["fraction"].items():
            if pruner == "none":
                continue
            rows.append((f"{pruner}: epochs to no-pruning best / no-pruning epochs",
                         f"{frac:.2f} (reached {result['reached'][pruner]}/{result['seeds']})", "<= 0.33",
                         "yes" if result["met"][pruner] else "no"))
        return rows
    if name == "scale":
        return [(f"trials/hour {label}", f"{tph:.0f} (x{result['speedup'].get(label, float('nan')):.2f})",
                 "-" if label == "w1" else "> 1x", "-" if label == "w1" else
                 ("yes" if result["speedup"].get(label, 0) > 1 else "no"))
                for label, tph in result["trials_per_hour"].items()]
    if name == "tracking":
        value = f"{result['share']:.4f} ({result['settings']['preset']} trial, {result['trial_s']:.0f} s)"
        return [("MLflow time / trial time", value, "<= 0.01", "yes" if result["met"] else "no"),
                (f"leaderboard over {result['leaderboard_runs']} runs", f"{result['leaderboard_s']:.2f} s", "-", "-")]
    if name == "leaderboard":
        load = result["loadavg_before"][0]
        return [(f"leaderboard over {result['runs']} runs, warm (in-process)", f"{result['warm_s']:.2f} s", "-", "-"),
                (f"leaderboard over {result['runs']} runs, cold (fresh process; imports {result['import_s']:.1f} s)",
                 f"{result['cold_process_s']:.2f} s (load {load:.1f})", "-", "-")]
    if name == "cli":
        rows = [(f"{command} (cold process; heavy modules: {', '.join(f['heavy_modules'] or []) or 'none'})",
                 f"{f['median_s']:.2f} s ({f['min_s']:.2f}-{f['max_s']:.2f}), {f['peak_rss_mb']:.0f} MB", "-", "-")
                for command, f in result["commands"].items() if command != result["reference"]]
        goals = iter(result["met"].items())
        return rows + [(goal, "", "", "yes" if ok else "no") for goal, ok in goals]
    if name == "stages":
        s = result["settings"]
        what = f"{s['task']} {s['dimension']} comparison, {result['runs']} runs ({s['preset']} preset)"
        return [(f"{what}: wall time cache on / off", (f"{result['ratio']:.3f} ({result['on_s']:.0f} s / "
                 f"{result['off_s']:.0f} s; {result['on_loaded']} stage trainings saved)"), result["goal"],
                 "yes" if result["met"] else "no"),
                (f"{what}: results table identical on vs off", str(result["identical"]), "True",
                 "yes" if result["identical"] else "no")] + ([
                (f"{what}: by hand (loop over run_trial, no cache) / bench with the cache",
                 (f"{result['by_hand_over_on']:.2f} ({result['by_hand_s']:.0f} s; values identical: "
                  f"{result['by_hand_identical']})"), result["by_hand_goal"],
                 "yes" if result["by_hand_met"] else "no")] if "by_hand_s" in result else [])
    if name == "stats":
        five = next((c["power"] for c in result["power_by_seeds"] if c["seeds"] == 5), float("nan"))
        return [("largest false-positive rate of the verdict over the grid",
                 f"{result['max_false_positive_rate']:.3f}", "<= 0.06", "yes" if result["met"] else "no"),
                ("power at 5 seeds, +0.017 AUROC, 100 cases per fold, run SD 0.015", f"{five:.3f}", "-", "-")] + ([
                ("7 arms: largest familywise false-positive rate of the verdict",
                 f"{result['family']['max_familywise_fpr']:.3f}", "<= 0.06",
                 "yes" if result["family"]["max_familywise_fpr"] <= 0.06 else "no"),
                ("7 arms: power ratio (new/old) for one arm +0.017 AUROC, 300 cases per fold",
                 f"{result['family']['power_ratio']:.2f}", ">= 2", "yes" if result["family"]["power_ratio"] >= 2 else "no"),
                ("7 arms all equal: share called practically equivalent within ±0.02",
                 f"{result['family']['equivalent_rate_all_equal']:.3f}", ">= 0.8",
                 "yes" if result["family"]["equivalent_rate_all_equal"] >= 0.8 else "no")] if "family" in result else [])
    if name == "scale-data" and result["settings"].get("ab_only"):
        ab, settings = result["training_ab"], result["settings"]
        stream = (ab["stream_images_per_s"] + ab["stream_again_images_per_s"]) / 2
        figure = (f"training images/s streamed / in memory ({ab['ab_train_images']} images, "
                  f"{settings['image_size']} px, {settings['patients'][0]:,} patients)")
        value = f"{ab['stream_over_memory']:.2f} ({stream:.1f} / {ab['memory_images_per_s']:.1f})"
        return [(figure, value, ">= 0.9", "yes" if result["met"]["images_per_s"] else "no")]
    if name == "scale-data":
        size = result["settings"]["image_size"]
        rows = [(f"peak memory, one trial, {r['patients']:,} patients ({r['images']:,} images, {size} px)",
                 f"{r['peak_rss_mb'] / 1024:.2f} GB" + (f" (in memory: {r['baseline_in_memory_gb']} GB)"
                                                        if r.get("baseline_in_memory_gb") else ""), "-", "-")
                for r in result["runs"].values()]
        ab = result["training_ab"]
        return rows + [
            ("peak memory growth, smallest to largest N", f"{result['peak_growth']:+.1%}", "<= +10%",
             "yes" if result["met"]["flat"] else "no"),
            ("training images/s streamed / in memory", f"{ab['stream_over_memory']:.2f}", ">= 0.9",
             "yes" if result["met"]["images_per_s"] else "no")]
    return []


def markdown_table(out: str | Path = "results/perf") -> str:
    """The README table (suite, figure, value, goal, met?, command) from the JSON files in ``out``."""
    lines = ["| suite | figure | value | goal | met? | command |", "|---|---|---|---|---|---|"]
    for name in SUITES:
        path = Path(out) / f"{name}.json"
        if not path.is_file():  # a suite whose figures have a folder of their own (results/perf/scale-data/)
            path = Path(out) / name / f"{name}.json"
        if not path.is_file():
            lines.append(f"| {name} | not run | | | | |")
            continue
        result = json.loads(path.read_text())
        for figure, value, goal, met in _headline(result):
            lines.append(f"| {name} | {figure} | {value} | {goal} | {met} | `{result.get('command', '')}` |")
    return "\n".join(lines)
