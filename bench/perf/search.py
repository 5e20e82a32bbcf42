"""Pruning efficiency: Hyperband vs median vs no pruning on the phantom, over several seeds.

For each seed the no-pruning search sets the target (its best validation objective). A pruned search
"reaches" it when its best-so-far objective comes within ``tolerance`` of the target; the figure is the
epochs it spent until then, as a fraction of the epochs the no-pruning search spent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.perf._common import isolated_store, median, quiet, timed


def _trial_epochs(trial, seg_epochs: int, cls_epochs: int) -> int:
    """Epochs a trial trained: segmentation epochs plus the classifier epochs it reached before stopping."""
    import optuna

    if trial.state == optuna.trial.TrialState.COMPLETE:
        return seg_epochs + cls_epochs
    steps = trial.intermediate_values
    # A trial pruned after reporting step k trained k + 1 classifier epochs; one that failed before any
    # report still trained its segmenter.
    return seg_epochs + (max(steps) + 1 if steps else 0)


def _curve(study, seg_epochs: int, cls_epochs: int, higher: bool) -> list[dict[str, Any]]:
    """Anytime curve in trial order: cumulative epochs and the best finished objective so far."""
    import math

    import optuna

    points, spent, best = [], 0, None
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        spent += _trial_epochs(t, seg_epochs, cls_epochs)
        finished = t.state == optuna.trial.TrialState.COMPLETE and t.value is not None and math.isfinite(t.value)
        if finished and (best is None or (t.value > best if higher else t.value < best)):
            best = t.value
        points.append({"trial": t.number, "state": t.state.name, "epochs": spent, "best": best})
    return points


def _epochs_to(curve: list[dict[str, Any]], target: float, tolerance: float, higher: bool) -> int | None:
    for p in curve:
        if p["best"] is not None and (p["best"] >= target - tolerance if higher else p["best"] <= target + tolerance):
            return p["epochs"]
    return None


def _plot(curves: dict[int, dict[str, list]], targets: dict[int, float], path: Path, objective: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: perf runs on headless machines
    import matplotlib.pyplot as plt

    seeds = sorted(curves)
    fig, axes = plt.subplots(1, len(seeds), figsize=(4.2 * len(seeds), 3.4), squeeze=False, sharey=True)
    for ax, seed in zip(axes[0], seeds):
        for pruner, curve in curves[seed].items():
            xs = [p["epochs"] for p in curve if p["best"] is not None]
            ys = [p["best"] for p in curve if p["best"] is not None]
            ax.step(xs, ys, where="post", marker="o", ms=3, label=pruner)
        ax.axhline(targets[seed], color="grey", ls=":", lw=1)
        ax.set_title(f"seed {seed}")
        ax.set_xlabel("epochs spent (seg + cls)")
    axes[0][0].set_ylabel(f"best {objective} so far")
    axes[0][-1].legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def search(seeds: list[int] | tuple[int, ...] = (0, 1, 2), trials: int = 6, cls_epochs: int = 9,
           pruners: list[str] | tuple[str, ...] = ("none", "median", "hyperband"), preset: str = "smoke",
           sampler: str = "tpe", tolerance: float = 0.01, overrides: dict[str, Any] | None = None,
           out: str | Path | None = None) -> dict[str, Any]:
    """Epochs each pruner spends to reach the no-pruning best (goal: <= 1/3 of no-pruning's epochs).

    Every (seed, pruner) pair is one ``run_search`` of ``trials`` trials on the phantom with the ``preset``
    settings and ``cls_epochs`` classifier epochs (the pruned resource), in a throwaway MLflow store.

    Args:
        seeds: search seeds (sampler seed and trial seed); pruners: must include ``none``.
        trials: trials per search; cls_epochs: classifier epochs per complete trial.
        preset: task preset (image size, train subset, segmentation epochs).
        sampler: Optuna sampler name.
        tolerance: how close to the no-pruning best counts as reaching it.
        overrides: further TrialConfig values on top of the preset (e.g. ``max_train_cases``).
        out: folder for ``search_anytime.png`` (no plot when None).

    Returns:
        ``fraction`` per pruner (median over seeds of epochs-to-target / no-pruning total epochs; a seed
        that never reaches the target counts as infinity), ``fraction_of_time_to_best`` (the same over the
        epochs no-pruning needed to find its best), ``reached`` counts, per-seed details with anytime curves,
        and the PNG path.
    """
    import optuna

    from bench.errors import ConfigError
    from bench.metrics import higher_is_better
    from bench.search.optuna_backend import SearchSettings, make_storage, run_search
    from bench.tasks import TASKS

    if "none" not in pruners:
        raise ConfigError(f"the search suite needs pruner 'none' as the reference, but got pruners {list(pruners)}.")
    quiet()
    task = "xray-heart"
    spec = TASKS.get(task)
    higher = higher_is_better(spec.objective)
    overrides = {**(overrides or {}), "cls_epochs": cls_epochs}
    seg_epochs = spec.config(spec.preset(preset).config, overrides).seg_epochs
    per_seed: dict[int, dict[str, Any]] = {}
    curves: dict[int, dict[str, list]] = {}
    with isolated_store() as tmp:
        for seed in seeds:
            curves[seed] = {}
            per_seed[seed] = {}
            for pruner in ["none"] + [p for p in pruners if p != "none"]:
                storage = str(Path(tmp) / "optuna.journal")
                name = f"perf-search-s{seed}-{pruner}"
                settings = SearchSettings(task=task, preset=preset, trials=trials, seed=seed, pruner=pruner,
                                          sampler=sampler, storage=storage, study=name, overrides=overrides)
                wall, cpu, summary = timed(lambda s=settings: run_search(s))
                study = optuna.load_study(study_name=name, storage=make_storage(storage, heartbeat=False))
                curve = _curve(study, seg_epochs, cls_epochs, higher)
                curves[seed][pruner] = curve
                per_seed[seed][pruner] = {"best": summary.best_value, "epochs": curve[-1]["epochs"] if curve else 0,
                                          "complete": summary.n_complete, "pruned": summary.n_pruned,
                                          "failed": summary.n_failed, "wall_s": wall, "cpu_s": cpu, "curve": curve}
            ref = per_seed[seed]["none"]
            target = ref["best"]
            ref["epochs_to_best"] = _epochs_to(curves[seed]["none"], target, 0.0, higher) if target is not None else None
            for pruner, row in per_seed[seed].items():
                row["epochs_to_target"] = (_epochs_to(curves[seed][pruner], target, tolerance, higher)
                                           if target is not None else None)

    fraction, fraction_to_best, reached = {}, {}, {}
    for pruner in pruners:
        fr, fb = [], []
        for seed in seeds:
            row, ref = per_seed[seed][pruner], per_seed[seed]["none"]
            hit = row["epochs_to_target"]
            fr.append(hit / ref["epochs"] if hit is not None and ref["epochs"] else float("inf"))
            fb.append(hit / ref["epochs_to_best"] if hit is not None and ref.get("epochs_to_best") else float("inf"))
        fraction[pruner], fraction_to_best[pruner] = median(fr), median(fb)
        reached[pruner] = sum(per_seed[s][pruner]["epochs_to_target"] is not None for s in seeds)
    targets = {s: per_seed[s]["none"]["best"] for s in seeds if per_seed[s]["none"]["best"] is not None}
    png = None
    if out is not None and targets:
        # Stored relative to the JSON beside it, so results/perf/ can move as a whole.
        png = _plot({s: curves[s] for s in targets}, targets, Path(out) / "search_anytime.png", spec.objective).name
    best_pruner = min((p for p in pruners if p != "none"), key=lambda p: fraction[p], default=None)
    full = len(seeds) >= 3 and trials >= 6
    return {
        "fraction": fraction,
        "fraction_of_time_to_best": fraction_to_best,
        "best_pruner": best_pruner,
        "goal": "<= 1/3 of the no-pruning epochs",
        "met": {p: fraction[p] <= 1 / 3 for p in pruners if p != "none"},
        "reached": reached,
        "seeds": len(seeds),
        "reduced": not full,
        "reduced_note": "" if full else "fewer than 3 seeds or 6 trials per search: a plumbing check, not a figure",
        "anytime_png": png,
        "settings": {"preset": preset, "trials": trials, "cls_epochs": cls_epochs, "seg_epochs": seg_epochs,
                     "sampler": sampler, "tolerance": tolerance, "pruners": list(pruners), "seeds": list(seeds),
                     "overrides": overrides},
        "per_seed": {str(s): v for s, v in per_seed.items()},
    }
