"""Replay: rebuild a logged trial's config, retrain it with the same seed and split, and compare.

A cross-validated trial (``bench search --folds K``; tag ``folds``) is retrained on all K folds, as nested
fold runs of the replay run, and its mean objective is compared with the original's mean: that mean is
what the search optimised. Its weights are on its fold runs, so ``--checkpoint`` takes a fold run.
"""

from __future__ import annotations

import functools
import io
import json
import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bench import runtime, stages
from bench.config import TrialConfig
from bench.errors import BenchError
from bench.leaderboard import leaderboard
from bench.tasks import TASKS
from bench.tracking import Tracker, environment_tags
from bench.trial import FOLDS_TAG, run_trial, tracked_trial

#: Tags that can make a rerun differ from the original: code, library versions, hardware, threads, data split.
ENVIRONMENT_KEYS = ("git_commit", "python", "device", "torch_threads", "split_hash")


@dataclass(frozen=True)
class Difference:
    key: str
    original: str
    now: str


def environment_diff(original: Mapping[str, str], now: Mapping[str, str]) -> list[Difference]:
    """What differs between the environment tags of the original run and of the replay.

    Compares :data:`ENVIRONMENT_KEYS`, the runtime policy (``bench.runtime.*``) and every ``version.*`` tag
    present on either side; a tag missing on one side shows as ``"(absent)"``.

    Example:
        >>> environment_diff({"git_commit": "a", "version.torch": "2.3"}, {"git_commit": "b", "version.torch": "2.3"})
        [Difference(key='git_commit', original='a', now='b')]
    """
    keys = [k for k in ENVIRONMENT_KEYS if k in original or k in now]
    # the policy's own fields, not what happened under it (data placed by size, a compile fallback): a
    # re-scored checkpoint places no data, and that is no difference of environment
    noted = {runtime.TAG_PREFIX + k for k in ("data", "data_bytes", "compile_fallback")}
    keys += sorted({k for k in (*original, *now) if k.startswith(runtime.TAG_PREFIX) and k not in noted})
    keys += sorted({k for k in (*original, *now) if k.startswith("version.")})
    return [Difference(k, str(original.get(k, "(absent)")), str(now.get(k, "(absent)")))
            for k in keys if original.get(k) != now.get(k)]


def diff_table(differences: list[Difference]) -> str:
    """Plain-text table of differences (one line saying so when there are none)."""
    if not differences:
        return "environment: same code, versions, device, threads, runtime policy and split as the original run"
    width = max(len(d.key) for d in differences)
    lines = [f"{'what':<{width}}  original -> now"]
    lines += [f"{d.key:<{width}}  {d.original} -> {d.now}" for d in differences]
    return "\n".join(lines)


@dataclass
class ReplayVerdict:
    original_run_id: str
    replay_run_id: str
    metric: str
    original: float
    replayed: float
    tolerance: float
    differences: list[Difference] = field(default_factory=list)
    mode: str = "retrain"  # retrain | checkpoint | checkpoint-load (weights load, not re-evaluated)
    seed_values: dict[int, float] = field(default_factory=dict)  # objective of the retrain on each other seed
    registered: str | None = None  # "<model name> version <n>" when --register was given and it reproduced
    not_registered: str | None = None  # why --register registered nothing (the replay did not reproduce)
    runtime: str = ""  # the runtime policy the replay ran with (Runtime.summary())

    @property
    def seed_spread(self) -> tuple[float, float, float] | None:
        """(mean, min, max) of the objective over the other seeds; None when none were run."""
        if not self.seed_values:
            return None
        values = [v for v in self.seed_values.values()]
        return sum(values) / len(values), min(values), max(values)

    @property
    def within_seed_range(self) -> bool | None:
        """Whether the original objective lies within [min, max] over the other seeds; None without seeds."""
        spread = self.seed_spread
        return None if spread is None else spread[1] <= self.original <= spread[2]

    @property
    def difference(self) -> float:
        return abs(self.replayed - self.original)

    @property
    def reproduced(self) -> bool:
        if self.mode == "checkpoint-load":
            return False  # loading weights proves nothing about the metric
        both_nan = math.isnan(self.original) and math.isnan(self.replayed)
        return both_nan or self.difference <= self.tolerance

    @property
    def verdict(self) -> str:
        if self.mode == "checkpoint-load":
            return "checkpoint loads, not re-evaluated (the task has no evaluate function)"
        return "reproduced" if self.reproduced else "not reproduced"


def best_run_id(task: str, study: str | None = None) -> str:
    table = leaderboard(task, study=study)
    complete = table[table["state"] == "COMPLETE"]
    if complete.empty:
        raise BenchError(f"replay needs a COMPLETE trial of task {task}, but found none. Run a search first.")
    return str(complete.iloc[0]["run_id"])


def replay(task: str, run_id: str | None = None, study: str | None = None, tolerance: float = 1e-6,
           checkpoint: bool = False, seeds: int = 0, register: str | None = None,
           deterministic: bool = False, on_progress: Callable[[str], None] | None = None,
           stage_cache: bool = False) -> ReplayVerdict:
    """Rerun a logged trial and compare its objective with the original.

    Args:
        task: registered task name.
        run_id: the trial run to replay (default: the best COMPLETE trial, optionally of ``study``).
        study: restrict the default choice to this study.
        tolerance: largest absolute objective difference still called reproduced.
        checkpoint: re-evaluate the logged ``checkpoint.pt`` instead of retraining. Uses the task's
            ``TaskSpec.evaluate(config, state_dicts) -> metrics`` when it has one; otherwise only checks
            that the weights load into freshly built models (verdict "checkpoint loads, not re-evaluated").
        seeds: also retrain on this many other seeds (original seed + 1 … + ``seeds``) and report the mean,
            min and max of the objective and whether the original lies within [min, max]. The verdict
            still comes from the same-seed replay.
        register: when the replay reproduces, register the original trial's model (an MLflow pyfunc model
            of its fold models, ``bench.predict.register``) as a new version of this name (created if
            missing); otherwise say why not (``ReplayVerdict.not_registered``).
        deterministic: run fp32 with deterministic kernels whatever the original used. By default the
            replay applies the runtime policy recorded on the original run (``bench.runtime.*`` tags; runs
            older than those tags ran deterministic fp32), minus what this machine cannot do.
        on_progress: called with a line per step of the replay (data, each epoch with the original run's
            value at the same step, other seeds, the final metrics recorded vs replayed).
        stage_cache: load stages from the stage cache (:mod:`bench.stages`). Off by default: a replay checks
            that training reproduces, so it trains every stage.

    Returns:
        The verdict, with the environment differences; the replay is logged as a run tagged ``replay_of``.

    Raises:
        BenchError: unknown run, a run without a final objective, a checkpoint that does not load, a
            negative ``seeds`` or a ``register`` name with a run that has no checkpoint.
    """
    if seeds < 0:
        raise BenchError(f"--seeds must be 0 or more, but got {seeds}. Pass the number of extra seeds to retrain.")
    spec = TASKS.get(task)
    tracker = Tracker(task)
    run_id = run_id or best_run_id(task, study)
    try:
        original_run = tracker.run(run_id)
    except BenchError as exc:
        raise BenchError(f"--run-id must name a run in {tracker.uri}, but '{run_id}' was not found.") from exc
    original = original_run.data.metrics.get(spec.objective)
    if original is None:
        raise BenchError(f"run {run_id} must have a final '{spec.objective}', but it has none (pruned or failed?).")
    folds = int(original_run.data.tags.get(FOLDS_TAG, 1))
    if checkpoint and folds > 1:
        raise BenchError(f"--checkpoint needs a run with one checkpoint.pt, but run {run_id} is cross-validated "
                         f"over {folds} folds and its weights are on its fold runs "
                         f"({', '.join(fold_runs(tracker, run_id))}). Pass one of them as --run-id, or leave "
                         "--checkpoint out to retrain every fold.")
    say = on_progress or (lambda text: None)
    mean = f" (mean over {folds} folds)" if folds > 1 else ""
    say(f"replaying {original_run.info.run_name} (run {run_id[:8]}): {spec.objective} recorded "
        f"{original:.6g}{mean}")
    config = tracker.load_config(run_id)
    threads = original_run.data.tags.get("torch_threads")
    if threads and threads.isdigit():
        torch.set_num_threads(int(threads))  # float reductions depend on the thread count
    recorded = runtime.Runtime.recorded(original_run.data.tags)
    policy = runtime.Runtime.deterministic_for() if deterministic else recorded.for_machine()
    with runtime.using(policy), stages.switched(stage_cache):
        verdict = _replay(spec, tracker, original_run, float(original), config, policy, recorded, tolerance,
                          checkpoint, seeds, register, say, folds)
    return verdict


def _replay(spec, tracker: Tracker, original_run, original: float, config: TrialConfig, policy: runtime.Runtime,
            recorded: runtime.Runtime, tolerance: float, checkpoint: bool, seeds: int,
            register: str | None, say: Callable[[str], None], folds: int = 1) -> ReplayVerdict:
    run_id = original_run.info.run_id
    name, mode = f"replay of {original_run.info.run_name}", "checkpoint" if checkpoint else "retrain"
    conclude = functools.partial(_conclude, spec, tracker, original_run, original, config, policy, recorded,
                                 tolerance, seeds, register, say, folds)
    if not checkpoint:  # a retrain is a trial like any other: the one tracked-trial lifecycle
        verdicts: list[ReplayVerdict] = []
        where = f"folds 0..{folds - 1}" if folds > 1 else "its fold"
        say(f"retraining with seed {config.seed} on split {config.split_hash[:8]}, {where} (data first, then each "
            "epoch)")
        # A cross-validated trial's run has no epoch curves of its own (they are on its fold runs).
        progress = ReplayProgress(say, config, tracker, run_id) if folds == 1 else ReplayProgress(say, config)
        outcome = tracked_trial(tracker, config, name=name, parent_run_id=None, kind="replay",
                                tags={"replay_of": run_id, "replay_mode": mode}, reporters=[progress], folds=folds,
                                finish=lambda replay_id, result: verdicts.append(
                                    conclude(replay_id, mode, dict(result.metrics), result.config.split_hash)))
        if outcome.state != "COMPLETE":
            raise BenchError(f"the replay of run {run_id} must finish to be compared, but it ended {outcome.state}: "
                             f"{outcome.reason}. Its run is {outcome.run_id}.")
        return verdicts[0]
    replay_id = tracker.start_trial(None, name, config, {"replay_of": run_id, "replay_mode": mode}, kind="replay")
    with tracker.closing(replay_id):
        say("loading checkpoint.pt of the original run")
        state_dicts = load_checkpoint(tracker, run_id)
        evaluate: Callable[..., Mapping[str, float]] | None = spec.evaluate
        if evaluate is None:
            check_loads(config, state_dicts)
            mode, metrics = "checkpoint-load", {}
        else:
            say("scoring the checkpoint on the validation data")
            metrics = dict(evaluate(config, state_dicts))
        split_now = spec.prepare(config).split_hash  # raises SplitError when the data or split changed
        return conclude(replay_id, mode, metrics, split_now)


def _conclude(spec, tracker: Tracker, original_run, original: float, config: TrialConfig, policy: runtime.Runtime,
              recorded: runtime.Runtime, tolerance: float, seeds: int, register: str | None,
              say: Callable[[str], None], folds: int, replay_id: str, mode: str, metrics: dict[str, float],
              split_now: str) -> ReplayVerdict:
    """Other seeds, the verdict, the environment diff and the registration, logged on the replay run."""
    run_id = original_run.info.run_id
    for key in [spec.objective, *spec.headline]:
        if key in metrics:
            was = original_run.data.metrics.get(key)
            say(f"{key}: recorded {_num(was)}, replayed {_num(metrics[key])}")
    seed_values = {}
    for seed in range(config.seed + 1, config.seed + seeds + 1):
        say(f"seed {seed} ({seed - config.seed} of {seeds} other seeds)")
        other = _objective(config.replace(seed=seed), folds, say)
        seed_values[seed] = other
        say(f"seed {seed}: {spec.objective} {_num(other)}")
        tracker.log_metrics(replay_id, {f"seed_{spec.objective}": other}, step=seed)
    # A run older than the runtime tags is compared as what it ran with (Runtime.recorded), not as "(absent)".
    differences = environment_diff({**recorded.tags(), **original_run.data.tags},
                                   {**environment_tags(), "split_hash": split_now})
    verdict = ReplayVerdict(run_id, replay_id, spec.objective, float(original),
                            float(metrics.get(spec.objective, float("nan"))), tolerance, differences, mode,
                            seed_values, runtime=policy.summary())
    if seed_values:
        mean, low, high = verdict.seed_spread
        tracker.log_metrics(replay_id, {"seeds_mean": mean, "seeds_min": low, "seeds_max": high})
        tracker.set_tags(replay_id, {"replay_seeds": ",".join(map(str, seed_values)),
                                     "replay_original_within_seeds": verdict.within_seed_range})
    if register:  # only a model whose training reproduced goes into the registry
        if verdict.reproduced:
            verdict.registered = register_model(spec.name, register, run_id, replay_id, verdict.verdict)
            tracker.set_tags(replay_id, {"replay_registered": verdict.registered})
        else:
            verdict.not_registered = (f"not registered as {register}: the replay says '{verdict.verdict}', and only "
                                      "a reproduced trial is registered (`bench register` registers any trial)")
            tracker.set_tags(replay_id, {"replay_registered": "no: " + verdict.verdict})
            say(verdict.not_registered)
    tracker.log_metrics(replay_id, {**metrics, "replay_difference": verdict.difference})
    tracker.set_tags(replay_id, {"replay_verdict": verdict.verdict, "replay_tolerance": tolerance,
                                 "replay_mode": mode, "replay_env_differences": len(differences),
                                 "replay_runtime": policy.summary()})
    tracker.log_bytes(replay_id, "environment_diff.json",
                      json.dumps([asdict(d) for d in differences], indent=1).encode())
    return verdict


def _objective(config: TrialConfig, folds: int, say: Callable[[str], None]) -> float:
    """The objective of an untracked retrain: of ``config``'s fold, or the mean over folds 0..K-1."""
    if folds <= 1:
        return float(run_trial(config, ReplayProgress(say, config)).objective)
    return statistics.fmean(float(run_trial(config.replace(fold=fold), ReplayProgress(say, config)).objective)
                            for fold in range(folds))


def fold_runs(tracker: Tracker, run_id: str) -> list[str]:
    """The ids of a cross-validated trial's fold runs, fold 0 first."""
    return [r.info.run_id for r in tracker.fold_runs(run_id)]


def _num(value: float | None) -> str:
    """6 significant digits: enough to see a replay differ where the leaderboard's 4 would hide it."""
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.6g}"


class ReplayProgress:
    """A trial reporter that says each epoch as it ends: stage, epoch of the stage's total and its values,
    each beside the original run's value at the same step when one was recorded. It never stops a trial."""

    def __init__(self, say: Callable[[str], None], config: TrialConfig, tracker: Tracker | None = None,
                 original_run_id: str | None = None):
        self.say, self.config = say, config
        self.tracker, self.original_run_id = tracker, original_run_id
        self.epochs: dict[str, int] = {}
        self._recorded: dict[str, dict[int, float]] = {}

    def recorded(self, key: str) -> dict[int, float]:
        """The original run's curve of ``key``: step -> value (empty without an original run)."""
        if key not in self._recorded:
            history = (self.tracker.metric_history(self.original_run_id, key)
                       if self.tracker and self.original_run_id else [])
            curve: dict[int, float] = {}
            for m in sorted(history, key=lambda m: m.timestamp):
                curve.setdefault(m.step, m.value)  # the epoch's value, not a final value logged later at step 0
            self._recorded[key] = curve
        return self._recorded[key]

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        stage = next(iter(metrics), "train").split("_")[0]
        self.epochs[stage] = self.epochs.get(stage, 0) + 1
        total = getattr(self.config, f"{stage}_epochs", None)
        values = []
        for key, value in metrics.items():
            was = self.recorded(key).get(step)
            values.append(f"{key} {_num(value)}" + (f" (recorded {_num(was)})" if was is not None else ""))
        self.say(f"{stage} epoch {self.epochs[stage]}" + (f"/{total}" if total else "") + ": " + ", ".join(values))

    def report(self, objective: float, step: int) -> bool:
        return False


def register_model(task: str, name: str, run_id: str, replay_id: str, verdict: str) -> str:
    """Register run ``run_id``'s model (``bench.predict.register``: an MLflow pyfunc model of its fold models)
    as a new version of ``name``, tagged with the replay's verdict; returns ``"<name> version <n>"``."""
    from bench.predict.register import register

    done = register(task, name, run_id=run_id, extra_tags={"replay_verdict": verdict, "replay_run_id": replay_id})
    return str(done)


def load_checkpoint(tracker: Tracker, run_id: str) -> dict[str, dict[str, torch.Tensor]]:
    """The run's ``checkpoint.pt`` as {model name: state dict}, loaded with ``weights_only=True``.

    ``weights_only`` refuses pickled code, so a checkpoint from a shared store cannot run anything here.
    """
    try:
        data = tracker.read_artifact(run_id, "checkpoint.pt")
    except Exception as exc:  # MLflow raises OSError or MlflowException for a missing artifact
        raise BenchError(f"--checkpoint needs artifact checkpoint.pt on run {run_id}, but it has none "
                         "(only COMPLETE trials log one). Replay without --checkpoint to retrain.") from exc
    loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
        raise BenchError(f"checkpoint.pt must map model names to state dicts, but got {type(loaded).__name__} "
                         f"in run {run_id}. Re-run the trial with this version of bench.")
    return loaded


def fresh_models(config: TrialConfig) -> dict[str, torch.nn.Module]:
    """Untrained models of the trial, built the way the task builds them (keys as in checkpoint.pt).

    Uses the task's ``TaskSpec.build_models``.
    """
    build: Callable[[TrialConfig], dict[str, Any]] | None = TASKS.get(config.task).build_models
    if build is not None:
        return dict(build(config))
    raise BenchError(f"--checkpoint needs the task to provide build_models, but task "
                     f"'{config.task}' has none. Replay without --checkpoint.")


def check_loads(config: TrialConfig, state_dicts: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
    """Load every state dict strictly into a freshly built model; raise BenchError naming what mismatches."""
    models = fresh_models(config)
    if set(models) != set(state_dicts):
        raise BenchError(f"checkpoint.pt must hold models {sorted(models)}, but got {sorted(state_dicts)}. "
                         "The checkpoint comes from another task version; replay without --checkpoint.")
    for name, model in models.items():
        try:
            model.load_state_dict(state_dicts[name], strict=True)
        except RuntimeError as exc:
            raise BenchError(f"checkpoint model '{name}' must match the config's architecture, but loading "
                             f"failed: {str(exc)[:300]}. Replay without --checkpoint.") from exc
