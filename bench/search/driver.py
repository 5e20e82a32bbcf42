"""What every search backend shares: settings, summary, the prepared search, its parent run and its close.

A backend (``bench.search.backends``) only decides how trials are scheduled; preparing the data once,
naming trials, recording the runtime request, opening the parent MLflow run and closing it with the
summary happen here, so the Optuna and Ray searches log the same layout.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bench.config import TrialConfig
from bench.errors import ConfigError
from bench.search.settings import SearchSettings, SearchSummary

if TYPE_CHECKING:
    from bench.search.space import SearchSpace
    from bench.tasks import Preset, TaskSpec
    from bench.tracking import Tracker


# What the data decided for the whole search ("guidance: none — no label encloses `spleen`"), said once; the
# CLI prints it above the progress bar.
NOTES_LOGGER = "bench.search.notes"


def runtime_request(settings: SearchSettings) -> dict[str, Any]:
    """What the search asked of the runtime policy (parent-run settings; trials record what they used)."""
    return {"precision": settings.precision, "compile": settings.compile,
            "deterministic": "auto" if settings.deterministic is None else settings.deterministic}


def search_objectives(settings: SearchSettings) -> list[str]:
    """The metrics the search optimises: the task's objective, or ``settings.objectives`` (two or more).

    Raises:
        ConfigError: a name is not a registered metric, or fewer than two objectives are given.
    """
    from bench.metrics import METRICS, base_name
    from bench.tasks import TASKS

    if not settings.objectives:
        return [TASKS.get(settings.task).objective]
    names = list(dict.fromkeys(settings.objectives))
    unknown = [n for n in names if base_name(n) not in METRICS]
    if unknown:
        raise ConfigError(f"--objectives must name metrics with a declared direction, but got {unknown}. Known "
                          f"metrics (with val_/test_ prefix where they are scored per part): {sorted(METRICS)}.")
    if len(names) < 2:
        raise ConfigError(f"--objectives needs two or more metrics for a multi-objective search, but got {names}. "
                          "For one objective just leave --objectives out.")
    return names


def directions(objectives: list[str]) -> list[str]:
    from bench.metrics import higher_is_better

    return ["maximize" if higher_is_better(name) else "minimize" for name in objectives]


def base_config(settings: SearchSettings) -> TrialConfig:
    from bench.tasks import TASKS

    spec = TASKS.get(settings.task)
    preset = spec.preset(settings.preset)
    # A data folder is made absolute: Ray Tune runs each trial with the trial's own folder as its working
    # directory, and a replay may run elsewhere; both read the folder from the trial's config.
    data = settings.data if settings.data == "phantom" else os.path.abspath(settings.data)
    return spec.config(preset.config, settings.overrides, data=data, data_format=settings.data_format,
                       seed=settings.seed, fold=settings.fold)


def trial_name(number: int, config: TrialConfig) -> str:
    return f"t{number:03d} {config.seg_arch}/{config.seg_loss}/{config.guidance}"


def default_study_name(settings: SearchSettings, preset_name: str) -> str:
    tail = "-ray" if settings.backend == "ray" else ""
    return f"{settings.task}-{preset_name}{tail}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclass
class PreparedSearch:
    """A search ready to run: task, preset, space, base config with the pinned split, trial budget."""

    settings: SearchSettings
    spec: TaskSpec
    preset_name: str
    preset: Preset
    space_path: str
    space: SearchSpace
    base: TrialConfig
    n_trials: int
    objectives: list[str]
    study_name: str
    started: float
    fixed: dict[str, Any] = field(default_factory=dict)  # config keys the data fixes (out of the space)

    @property
    def objective(self) -> str:
        return self.objectives[0]


def prepare_search(settings: SearchSettings, on_stage: Callable[[str], None] | None = None) -> PreparedSearch:
    """Check the settings against the backend, build the data cache and pin the split once, before any trial.

    Args:
        settings: the search's settings.
        on_stage: called with a line saying what the data step does (generating, reading N files, from
            cache); default: INFO on the logger ``bench.search.prepare`` (what `bench search` shows, whichever
            backend called this).

    Raises:
        ConfigError: an option the backend does not support, a missing --study with --resume, bad objectives.
    """
    from bench.search.backends import check_supported
    from bench.search.space import load_space
    from bench.tasks import TASKS

    started = time.time()
    check_supported(settings)
    if settings.resume and not settings.study:
        raise ConfigError("--resume must name the study to continue, but got no --study. Add --study NAME.")
    objectives = search_objectives(settings)
    spec = TASKS.get(settings.task)
    preset_name = settings.preset or spec.default_preset
    preset = spec.preset(preset_name)
    space_path = str(settings.space or spec.space_path(preset_name))
    space = load_space(space_path, settings.task)
    base = base_config(settings)
    say = on_stage or logging.getLogger("bench.search.prepare").info
    say(_data_stage(settings))
    cached_before = _cache_entries()
    began = time.time()
    prepared = _prepare_folds(spec, base, settings.folds)  # builds the cache, pins the split before any trial
    built = _cache_entries() - cached_before
    say(f"data {'built and cached' if built else 'read from the cache'} in {time.time() - began:.0f} s, "
        f"split {prepared.split_hash[:8]}")
    # The class list the data resolved to (xray-heart: from the data) goes into every trial's params.
    base = base.replace(split_hash=prepared.split_hash, classes=tuple(getattr(prepared, "classes", base.classes)))
    fixed = fixed_by_data(spec, prepared, logging.getLogger(NOTES_LOGGER).info)
    if fixed:
        from bench.search.space import fixed_config

        space, base = space.fix(fixed), fixed_config(base, fixed)
    n_trials = settings.trials if settings.trials is not None else preset.trials
    return PreparedSearch(settings, spec, preset_name, preset, space_path, space, base, n_trials, objectives,
                          settings.study or default_study_name(settings, preset_name), started, fixed)


def fixed_by_data(spec: TaskSpec, prepared: Any, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """{flat config key: value} that the prepared data fixes (``TaskSpec.fixed_by_data``), each said once
    through ``say`` as ``"<key>: <value> — <reason>"``."""
    if spec.fixed_by_data is None:
        return {}
    fixed = spec.fixed_by_data(prepared)
    for key, (value, reason) in fixed.items():
        if say is not None:
            say(f"{key}: {value} — {reason}")
    return {key: value for key, (value, _) in fixed.items()}


def _prepare_folds(spec: TaskSpec, base: TrialConfig, folds: int) -> Any:
    """The task's prepared data (fold ``base.fold``); with ``folds`` > 1 its last fold is cut too, which
    refuses K beyond the split's folds before any trial runs (the data and split are cached by then)."""
    from bench.errors import SplitError

    prepared = spec.prepare(base)
    if folds > 1:
        try:
            spec.prepare(base.replace(fold=folds - 1))
        except SplitError as exc:
            raise ConfigError(f"--folds must not exceed the folds of the data's split, but got {folds} ({exc}). "
                              "Lower --folds, or make a split with more folds (`bench datasets split --folds K`)."
                              ) from None
    return prepared


def _data_stage(settings: SearchSettings) -> str:
    """What the data step is about to do, said before it starts (it may take minutes on real data)."""
    from pathlib import Path

    if settings.data == "phantom":
        return f"preparing data: {settings.task} phantom (generated once, then cached)"
    folder = Path(settings.data)
    count = sum(1 for p in itertools.islice(folder.rglob("*"), 100_001) if p.is_file()) if folder.is_dir() else 1
    files = f"{count:,} files" if count <= 100_000 else "over 100,000 files"
    return f"preparing data: reading {files} from {folder} ({settings.data_format}, cached after the first run)"


def _cache_entries() -> set[str]:
    """Names in the preprocessed-data cache: a new one after the data step means it was built, not reused."""
    from bench.data.cache import cache_root

    root = cache_root()
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def open_search(tracker: Tracker, search: PreparedSearch, backend_settings: dict[str, Any]) -> str:
    """Start the search's parent MLflow run with the shared settings plus the backend's own; returns its id."""
    settings = search.settings
    shared = {"backend": settings.backend, "study": search.study_name, "preset": search.preset_name,
              "trials": search.n_trials, "objective": search.spec.objective, "objectives": ",".join(search.objectives),
              "space": search.space.source, "searched": ",".join(search.space.names), "seed": settings.seed,
              "folds": settings.folds,
              **({"fixed_by_data": ",".join(f"{k}={v}" for k, v in search.fixed.items())} if search.fixed else {}),
              "data": settings.data if settings.data == "phantom" else "folder", **runtime_request(settings)}
    parent = tracker.start_search(f"search {search.study_name}",
                                  {**shared, **backend_settings, "split_hash": search.base.split_hash})
    tracker.set_tags(parent, {"split_hash": search.base.split_hash, "study": search.study_name})
    tracker.log_params(parent, {f"base.{k}": v for k, v in search.base.flat().items()})
    return parent


def close_search(tracker: Tracker, parent: str, summary: SearchSummary) -> None:
    """Log the summary on the parent run (counts, seconds, best value and run, Pareto front) and end it."""
    tracker.log_metrics(parent, {k: v for k, v in asdict(summary).items() if k.startswith("n_") or k == "seconds"})
    if summary.pareto_run_ids:
        tracker.set_tags(parent, {"pareto_run_ids": ",".join(summary.pareto_run_ids)[:5000]})
    if summary.best_value is not None:
        tracker.log_metrics(parent, {f"best_{summary.objective}": summary.best_value})
        tracker.set_tags(parent, {"best_run_id": summary.best_run_id})
    if summary.n_complete:

        try:  # the run page renders it as Markdown: the search's top 10 where its run is opened
            tracker.set_description(parent, search_description(tracker.task, summary.study, tracker.experiment_id,
                                                               summary.seconds))
        except Exception as exc:  # noqa: BLE001  a description is a view; the parent run must still be closed
            logging.getLogger(__name__).warning("the search run's leaderboard description was not written: %s", exc)
    tracker.end(parent, "COMPLETE" if summary.n_complete else "FAIL")


def search_description(task: str, study: str, experiment_id: str, seconds: float, top: int = 10) -> str:
    """Markdown of a search's top ``top`` trials for its parent run's description (the MLflow run page renders
    it): one line on what is ranked, then the terminal's columns, each run name linked to its run page."""
    from bench.leaderboard import compact, leaderboard
    from bench.metrics import higher_is_better
    from bench.tables import markdown
    from bench.tasks import TASKS

    spec = TASKS.get(task)
    table = leaderboard(task, study=study)
    direction = "higher" if higher_is_better(spec.objective) else "lower"
    done = int(table["state"].eq("COMPLETE").sum())
    frame = compact(table.head(top), task)
    frame["run"] = [f"[{name}](#/experiments/{experiment_id}/runs/{run_id})"
                    for name, run_id in zip(table["run"].head(top), table["run_id"].head(top))]
    head = (f"**Leaderboard of study {study}** ({task}): top {min(top, len(table))} of {len(table)} trials, best "
            f"first by **{spec.objective}** ({direction} is better); {done} complete, {seconds:.0f} s.")
    return head + "\n\n" + markdown(frame.drop(columns=["run_id"], errors="ignore"))
