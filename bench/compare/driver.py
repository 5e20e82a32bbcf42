"""``bench compare``: train every arm of one dimension on every fold x seed, then compare them paired.

The driver resolves the plan (:mod:`bench.compare.plan`), opens or resumes the comparison's parent run
(:mod:`bench.compare.runs`), runs each missing arm x fold x seed job through the one tracked-trial
lifecycle (:func:`bench.trial.tracked_trial`, ``bench.kind = compare``) here, in ``--workers N`` processes
or as Ray tasks (:mod:`bench.compare.parallel`), then collects the per-case values
(:mod:`bench.compare.collect`), computes the statistics (:mod:`bench.compare.analysis`) and logs the results
table, plots and report on the parent run (:mod:`bench.compare.export`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import stages
from bench.compare import plan as planning
from bench.compare import runs as store
from bench.compare.analysis import analyse, trial_hours
from bench.compare.collect import case_data, usable_runs
from bench.compare.parallel import Execution, JobContext, plan_execution, run_job
from bench.compare.result import ComparisonResult
from bench.config import TrialConfig
from bench.diskspace import DiskFull
from bench.errors import BenchError, ConfigError, SplitError
from bench.tasks.base import SEARCH_SPACES_DIR
from bench.tracking import Tracker
from bench.trial import FAIL, TrialOutcome

DEFAULT_FOLDS = 5
DEFAULT_SEEDS = 5  # a verdict needs 5 seeds per fold (bench.compare_stats.MIN_SEEDS); fewer are descriptive only
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass
class Progress:
    """What ``on_progress`` is told after each job: ``outcome`` is None for a job finished earlier."""

    job: planning.Job
    done: int
    total: int
    outcome: TrialOutcome | None
    stage: str = "run"  # run | tune | collect


def resolve_base(task: str, preset: str, config_from: str | None, tracker: Tracker) -> planning.BaseConfig:
    """The fixed configuration the arms share.

    ``config_from``: None (the task's reference for the preset), ``file:PATH``, ``run:RUN_ID`` or
    ``study:NAME`` (its best COMPLETE trial); without a prefix an existing file, a 32-hex run id, or else
    a study name.
    """
    if config_from is None:
        return planning.load_reference(task, preset)
    kind, sep, value = config_from.partition(":")
    if not sep or kind not in ("file", "run", "study"):
        kind, value = ("file" if Path(config_from).is_file() else "run" if RUN_ID.match(config_from)
                       else "study"), config_from
    if kind == "file":
        return planning.config_file(value)
    if kind == "run":
        try:
            return planning.from_config(tracker.load_config(value), f"run {value}")
        except BenchError:
            raise
        except Exception as exc:  # noqa: BLE001  MLflow: unknown run or no config.yaml
            raise ConfigError(f"--from-run must name a logged trial of {task} with a config.yaml, but {value} "
                              f"gave {type(exc).__name__}: {exc}") from None
    from bench.leaderboard import leaderboard

    best = leaderboard(task, study=value, where=["state=COMPLETE"]).head(1)
    if best.empty:
        raise ConfigError(f"--study must name a study with a COMPLETE trial, but '{value}' has none.")
    run_id = str(best["run_id"].iloc[0])
    return planning.from_config(tracker.load_config(run_id), f"best trial of study {value} (run {run_id})")


def default_name(task: str, dimension: str, preset: str) -> str:
    return f"{task}-{dimension}-{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def compare(task: str, dimension: str | None = None, arms: Sequence[str] | None = None, baseline: str | None = None,
            folds: int | None = None, seeds: int | None = None, preset: str | None = None, space: str | None = None,
            config_from: str | None = None, tune: int = 0, metric: str | None = None, resume: bool = False,
            name: str | None = None, on_progress: Callable[[Progress], None] | None = None, *,
            data: str = "phantom", data_format: str = "phantom", seed: int = 0, export: str | Path | None = None,
            workers: int | None = None, backend: str = "optuna", address: str | None = None,
            cpus_per_trial: float | None = None, gpus_per_trial: float | None = None,
            resamples: int = 2000, stage_cache: bool = True,
            task_params: Mapping[str, Any] | None = None, rope: float | None = None) -> ComparisonResult:
    """Run (or resume) a controlled comparison of the arms of ``dimension`` and return its statistics.

    Args:
        task: registered task.
        dimension: the categorical dimension D compared (guidance, seg_loss, seg_arch, classifier, ...);
            on ``resume`` taken from the comparison when not given.
        arms: values of D (default: every choice of D in the space).
        baseline: the arm the others are compared with (default ``none``/``dice`` when an arm, else the first).
        folds: K, folds of the standard split (default 5); seeds: S, seeds ``seed .. seed+S-1`` (default 5,
            the fewest with which the table gives verdicts; fewer are allowed and descriptive only).
        preset: budget preset (default: the task's); space: search space file (default: the preset's).
        config_from: where the fixed configuration comes from (see :func:`resolve_base`).
        tune: N > 0 tunes each arm with its own N-trial study first (:mod:`bench.compare.tune`).
        metric: primary metric (default: declared per dimension in the task's ``TaskSpec.compare_metrics``).
        resume: continue comparison ``name``: finished runs are not repeated, killed ones are re-run.
        name: the comparison's name (default ``<task>-<dimension>-<preset>-<time>``).
        on_progress: called after each job with a :class:`Progress`.
        export: also write the results to this folder.
        workers: run the missing jobs in N local processes (None or 1: one after another in this process).
        backend: ``optuna`` (this machine) or ``ray`` (one Ray task per job, on a local Ray or the cluster
            at ``address``, ``cpus_per_trial`` / ``gpus_per_trial`` each); see :mod:`bench.compare.parallel`.
        stage_cache: load the stages the arms share from the stage cache (:mod:`bench.stages`): each is
            trained once per fold x seed; False trains every stage in every run.
        task_params: task parameters set for every arm (``TaskSpec.cli_params`` on the command line), merged
            key by key over the preset's and the base configuration's; kept with the comparison for resume.
        rope: region of practical equivalence of the primary metric (default: the metric's declared one).

    Raises:
        ConfigError: bad dimension, arm, baseline, fold count, config source, an existing name without
            ``resume``, or a bad combination of the parallel options (:func:`~bench.compare.parallel.plan_execution`).
    """
    execution = plan_execution(workers, backend, address, cpus_per_trial, gpus_per_trial)
    with stages.switched(stage_cache):  # worker processes and Ray tasks inherit the setting
        return _compare(task, dimension, arms, baseline, folds, seeds, preset, space, config_from, tune, metric,
                        resume, name, on_progress, data=data, data_format=data_format, seed=seed, export=export,
                        execution=execution, resamples=resamples, task_params=dict(task_params or {}), rope=rope)


def _compare(task: str, dimension: str | None, arms: Sequence[str] | None, baseline: str | None, folds: int | None,
             seeds: int | None, preset: str | None, space: str | None, config_from: str | None, tune: int,
             metric: str | None, resume: bool, name: str | None, on_progress: Callable[[Progress], None] | None, *,
             data: str, data_format: str, seed: int, export: str | Path | None, execution: Execution,
             resamples: int, task_params: dict[str, Any], rope: float | None = None) -> ComparisonResult:
    if tune < 0 or (folds is not None and folds < 2) or (seeds is not None and seeds < 1):
        raise ConfigError(f"--folds must be >= 2, --seeds >= 1 and --tune >= 0, but got {folds}, {seeds}, {tune}.")
    from bench.search.space import load_space
    from bench.tasks import TASKS

    started = time.time()
    spec = TASKS.get(task)
    tracker = Tracker(task)
    if resume and not name:
        raise ConfigError("--resume must name the comparison to continue, but got no --name. Add --name NAME.")
    existing = store.find_parent(tracker, name) if name else None
    if existing is not None and not resume:
        raise ConfigError(f"a new comparison needs an unused name, but '{name}' exists in {tracker.uri}. Add "
                          "--resume to continue it, or pick another --name.")
    if resume and existing is None:
        raise ConfigError(f"--resume needs an existing comparison, but '{name}' is not in {tracker.uri}.")
    stored = store.stored_settings(existing) if existing is not None else {}
    preset_name = preset or stored.get("preset") or spec.default_preset
    space_path = _space_file(space or stored.get("space") or spec.space_path(preset_name), given=bool(space))
    dimension = dimension or stored.get("dimension")
    if not dimension:
        raise ConfigError(f"bench compare needs --dimension (a categorical parameter of {space_path}), but got none.")
    dimension = dimension.removeprefix("task_params.")  # one spelling of a task parameter: "classifier"
    _check_same(stored, {"dimension": dimension, "preset": preset_name})
    dim = planning.resolve_dimension(spec, load_space(space_path, task), dimension,
                                     arms or _split(stored.get("arms")), baseline or stored.get("baseline"))
    n_folds = folds or int(stored.get("folds", DEFAULT_FOLDS))
    seed_list = (list(range(seed, seed + seeds)) if seeds else [int(s) for s in _split(stored.get("seeds"))]
                 or list(range(seed, seed + DEFAULT_SEEDS)))
    plan_metrics = planning.metric_plan(spec, dimension, metric or stored.get("metric"))
    base = resolve_base(task, preset_name, config_from, tracker)
    data = stored.get("data", data)
    data_format = stored.get("data_format", data_format)
    given_params = task_params
    if not task_params and stored.get("task_params"):
        task_params = json.loads(stored["task_params"])  # resume: the comparison's own
    template = planning.template_config(task, spec.preset(preset_name).config, base, data, data_format, task_params)
    # Preparing the last fold builds the data cache, pins the split and refuses K beyond the split's folds.
    try:
        prepared = spec.prepare(template.replace(fold=n_folds - 1))
    except SplitError as exc:
        raise ConfigError(f"--folds must not exceed the folds of the data's split, but got {n_folds} ({exc}). "
                          "Lower --folds, or make a split with more folds (`bench datasets split --folds K`).") from None
    template = template.replace(split_hash=prepared.split_hash)
    template = _fixed_by_data(spec, prepared, dim, template)
    name = name or default_name(task, dimension, preset_name)
    settings = {"dimension": dimension, "arms": ",".join(dim.labels), "baseline": dim.label(dim.baseline),
                "folds": n_folds, "seeds": ",".join(map(str, seed_list)), "preset": preset_name,
                "space": _space_setting(space_path), "metric": plan_metrics.primary, "mode": "tuned" if tune else "fixed",
                "config_source": base.source, "tune_trials": tune, "data": data, "data_format": data_format,
                "split_sha256": prepared.split_hash, "split_hash": prepared.split_hash}
    if task_params:
        settings["task_params"] = json.dumps(task_params, sort_keys=True)
    if given_params and stored and stored.get("task_params") != settings["task_params"]:
        raise ConfigError(f"--resume must keep the comparison's task parameters, but they were "
                          f"{stored.get('task_params', '{}')} and now are {settings['task_params']}. Leave them out "
                          "(they are taken from the comparison) or start a new one.")
    _check_resume(stored, settings)
    execution.start(tracker.uri)  # a Ray cluster it cannot join stops it here, before any run is logged
    try:
        parent = store.open_parent(tracker, name, settings, existing)
    except BaseException:
        execution.stop()
        raise
    try:
        with tracker.closing(parent):  # the parent never stays RUNNING; --resume reopens it
            if existing is not None:  # arms or seeds may have been added
                tracker.set_tags(parent, {k: settings[k] for k in ("arms", "folds", "seeds", "metric")})
            settings["commit"] = (existing or tracker.run(parent)).data.tags.get("commit", "unknown")
            killed = store.close_killed(tracker, name) if existing is not None else 0
            configs = _arm_configs(tracker, parent, existing, dim, template, base, tune, task, preset_name, space_path,
                                   name, seed, on_progress)
            done = store.finished_keys(store.run_table(store.comparison_runs(tracker, name)))
            jobs = planning.plan_jobs(dim.labels, n_folds, seed_list)
            context = JobContext(task, tracker.uri, name, parent, dimension)
            ran, failed = _run_jobs(tracker, context, jobs, done, configs, prepared.split_hash, execution, on_progress,
                                    spec.stages)
            result = _conclude(tracker, name, task, parent, dim, plan_metrics, settings, ran, len(jobs) - ran, failed,
                               killed, started, resamples, rope)
            result.stages_trained, result.stages_loaded = _stage_counts(tracker, name)
            from bench.compare.export import log_outputs, write_outputs

            log_outputs(tracker, parent, result)
            if export is not None:
                result.exported = write_outputs(result, export)
            tracker.log_metrics(parent, {"n_ran": ran, "n_skipped": result.n_skipped, "n_failed": failed,
                                         "killed_closed": killed, "seconds": result.seconds,
                                         "trial_hours": result.trial_hours_total,
                                         "stage_trainings": result.stages_trained,
                                         "stage_trainings_saved": result.stages_loaded})
            tracker.set_tags(parent, {"verdicts": " | ".join(result.verdicts)[:5000]})
    except DiskFull as exc:  # the parent is closed "no space left on device": --resume runs what is missing
        raise exc.then_(f"free space and add --resume to this `bench compare` command (--name {name})") from None
    finally:
        execution.stop()
    return result


def _fixed_by_data(spec, prepared: Any, dim: planning.Dimension, template: TrialConfig) -> TrialConfig:
    """``template`` with what the data fixes (``TaskSpec.fixed_by_data``); comparing such a field is refused,
    since every arm but the fixed value would fail on this data."""
    from bench.search.driver import NOTES_LOGGER, fixed_by_data
    from bench.search.space import fixed_config

    reasons = spec.fixed_by_data(prepared) if spec.fixed_by_data is not None else {}
    if dim.key in reasons:
        value, reason = reasons[dim.key]
        raise ConfigError(f"--dimension {dim.name} needs data on which its arms can differ, but this data fixes "
                          f"{dim.name} to {value} ({reason}). Compare another dimension.")
    fixed = fixed_by_data(spec, prepared, logging.getLogger(NOTES_LOGGER).info)
    return fixed_config(template, fixed) if fixed else template


def _run_jobs(tracker: Tracker, context: JobContext, jobs: list[planning.Job], done: set[tuple[str, int, int]],
              configs: dict[str, TrialConfig], split_hash: str, execution: Execution,
              on_progress: Callable[[Progress], None] | None, task_stages: Sequence[Any] = ()) -> tuple[int, int]:
    """Run the jobs not in ``done`` (one after another, or as ``execution`` says); returns (ran, failed).

    One after another, progress follows the plan's order (each fold x seed's first arm trains the shared
    stages, the others load them); in parallel the jobs finished earlier are reported first, then each job
    as it finishes, and the jobs are handed out first-of-each-shared-stage first (:func:`plan.stage_order`).
    """
    counts = {"reported": 0, "ran": 0, "failed": 0}

    def report(job: planning.Job, outcome: TrialOutcome | None) -> None:
        counts["reported"] += 1
        if outcome is not None:
            counts["ran"] += 1
            counts["failed"] += outcome.state == FAIL
        if on_progress:
            on_progress(Progress(job, counts["reported"], len(jobs), outcome))

    def config_of(job: planning.Job) -> TrialConfig:
        return configs[job.arm].replace(fold=job.fold, seed=job.seed, split_hash=split_hash)

    if not execution.parallel:
        for job in jobs:
            report(job, run_job(tracker, context, job, config_of(job)) if job.key not in done else None)
        return counts["ran"], counts["failed"]
    for job in jobs:
        if job.key in done:
            report(job, None)
    todo, _ = planning.stage_order([job for job in jobs if job.key not in done], config_of, task_stages)
    execution.run([(job, config_of(job)) for job in todo], context, report, task_stages)
    return counts["ran"], counts["failed"]


def _stage_counts(tracker: Tracker, name: str) -> tuple[int, int]:
    """(stages trained, stages loaded) over the comparison's runs, from their ``bench.stage.*`` tags."""
    from bench.stages import LOADED, TAG_PREFIX, TRAINED

    runs = store.comparison_runs(tracker, name)
    columns = [c for c in runs.columns if c.startswith(f"tags.{TAG_PREFIX}")]
    values = [v for c in columns for v in runs[c].dropna()]
    return values.count(TRAINED), values.count(LOADED)


def _split(text: str | None) -> list[str]:
    return [t for t in (text or "").split(",") if t]


def _check_same(stored: dict[str, str], given: dict[str, Any]) -> None:
    for key, value in given.items():
        if key in stored and str(stored[key]) != str(value):
            raise ConfigError(f"--resume must keep the comparison's {key}, but it was '{stored[key]}' and now is "
                              f"'{value}'. Leave the option out (it is taken from the comparison) or start a new one.")


def _space_setting(path: str | Path) -> str:
    """How a comparison records its space: a built-in one as ``search_spaces/NAME`` (found again from any
    checkout or working folder on resume), any other as an absolute path."""
    resolved = Path(path).resolve()
    if resolved.parent == SEARCH_SPACES_DIR.resolve():
        return f"{SEARCH_SPACES_DIR.name}/{resolved.name}"
    return str(resolved)


def _space_file(value: str | Path, given: bool) -> str:
    """The space file of a ``--space`` value or a stored setting (:func:`_space_setting`); a stored file that
    is gone gets one error saying how to name it again."""
    path = Path(value)
    if not given and not path.is_absolute() and path.parts[:1] == (SEARCH_SPACES_DIR.name,):
        path = SEARCH_SPACES_DIR.joinpath(*path.parts[1:])  # recorded as built-in: this install's copy
    if not given and not path.exists():
        raise ConfigError(f"--resume needs the comparison's search space {value}, but that file is gone. Give "
                          "the same space again with --space FILE.")
    return str(path)


def _check_resume(stored: dict[str, str], settings: dict[str, Any]) -> None:
    """On resume the split and baseline stay; arms, folds and seeds may be added, never dropped."""
    _check_same(stored, {k: settings[k] for k in ("split_sha256", "baseline") if k in stored})
    if "folds" in stored and int(settings["folds"]) < int(stored["folds"]):
        raise ConfigError(f"--resume may add folds but not drop any, but the comparison has {stored['folds']} and "
                          f"now {settings['folds']}. Leave --folds out or start a new comparison.")
    for key in ("arms", "seeds"):
        if key in stored and not set(_split(stored[key])) <= set(_split(str(settings[key]))):
            raise ConfigError(f"--resume may add {key} but not drop any, but the comparison has '{stored[key]}' "
                              f"and now '{settings[key]}'. Leave --{key} out or start a new comparison.")


def _arm_configs(tracker: Tracker, parent: str, existing: Any, dim: planning.Dimension, template: TrialConfig,
                 base: planning.BaseConfig, tune: int, task: str, preset: str, space_path: str, name: str,
                 seed: int, on_progress: Callable[[Progress], None] | None = None) -> dict[str, TrialConfig]:
    """Each arm's configuration: as logged when resuming, else fixed from the template or tuned."""
    configs = store.load_arm_configs(tracker, parent) if existing is not None else {}
    studies = []
    for i, arm in enumerate(dim.arms):
        label = dim.label(arm)
        if label in configs:
            continue
        if tune:
            from bench.compare.tune import tune_arm

            if on_progress:
                on_progress(Progress(planning.Job(label, 0, seed), i + 1, len(dim.arms), None, stage="tune"))
            configs[label], study, search_run = tune_arm(task, preset, space_path, dim, arm, template, tune, name,
                                                         seed)
            tracker.set_tags(search_run, {"comparison": name, "arm": label, "dimension": dim.name})
            studies.append(study)
        else:
            configs[label] = planning.arm_config(template, dim, arm, base)
        store.log_arm_configs(tracker, parent, configs)  # after each arm: a resumed tuning keeps what is done
    if studies:
        tracker.set_tags(parent, {"tune_studies": ",".join(studies)})
    return configs


def _conclude(tracker: Tracker, name: str, task: str, parent: str, dim: planning.Dimension,
              metrics: planning.MetricPlan, settings: dict[str, Any], ran: int, skipped: int, failed: int,
              killed: int, started: float, resamples: int, rope: float | None = None) -> ComparisonResult:
    table = store.run_table(store.comparison_runs(tracker, name))
    usable, dropped = usable_runs(table, dim.labels)
    if usable.empty:
        reasons = sorted(set(table.loc[table["state"].eq(FAIL), "reason"]))[:3]
        raise BenchError(f"a comparison needs every arm to finish on at least one fold x seed, but none did "
                         f"(failures: {reasons}). See the runs of comparison {name} in MLflow.")
    cases = case_data(tracker, usable)
    hours = trial_hours(table, dim.labels)
    analysis = analyse(cases, usable, metrics, dim.label(dim.baseline), hours, resamples=resamples, rope=rope)
    return ComparisonResult(name, task, parent, metrics.primary, dim.label(dim.baseline), dim.labels, settings,
                            analysis, table, cases, ran, skipped, failed, killed, dropped,
                            round(time.time() - started, 2), hours)
