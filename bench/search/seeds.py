"""Seed repeats after a search (``bench search --seeds K``): is the winner still the winner on other seeds?

The top configs of a finished search (its COMPLETE trials, best first) are retrained on K-1 further seeds;
with the original trial that makes K seeds per config: the search seed S (the original trial) and
S+1 … S+K-1 (the repeats). Each repeat is logged as a run nested under the search's parent run, with
``bench.kind = repeat``, ``bench.repeat_of = <original run id>`` and its ``seed`` param/tag, so the normal
leaderboard ignores it and ``bench leaderboard --seeds`` groups it with its original. Repeats are never
pruned: a seed repeat must finish to be comparable. A repeat of a cross-validated trial (tag ``folds``)
is cross-validated on the same K folds, so its objective is the same kind of mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.errors import ConfigError
from bench.tracking import REPEAT_KIND, REPEAT_TAG, Tracker
from bench.trial import FOLDS_TAG, tracked_trial


@dataclass(frozen=True)
class Repeat:
    original_run_id: str
    run_id: str
    seed: int
    state: str
    objective: float


def repeat_top(task: str, study: str, parent_run_id: str, seeds: int, top: int = 3,
               on_repeat: Callable[[Repeat], None] | None = None) -> list[Repeat]:
    """Retrain the ``top`` best COMPLETE trials of ``study`` on seeds S+1 … S+seeds-1.

    Args:
        task: registered task name.
        study: the search's study (its trials are ranked by the leaderboard).
        parent_run_id: the search's parent run; repeats nest under it.
        seeds: K, seeds per config including the original trial's (K=1: nothing to do).
        top: how many configs to repeat.
        on_repeat: called after each repeat (progress).

    Returns:
        One :class:`Repeat` per repeat run, in the order they ran.

    Example:
        >>> repeat_top("xray-heart", "mystudy", parent_id, seeds=3, top=2)  # doctest: +SKIP
    """
    from bench.leaderboard import leaderboard

    if seeds < 1 or top < 1:
        raise ConfigError(f"--seeds and --seeds-top must be at least 1, but got {seeds} and {top}.")
    if seeds == 1:
        return []
    tracker = Tracker(task)
    table = leaderboard(task, study=study, where=["state=COMPLETE"]).head(top)
    done: list[Repeat] = []
    for row in table.itertuples():
        original = tracker.load_config(row.run_id)
        folds = int(tracker.run(row.run_id).data.tags.get(FOLDS_TAG, 1))
        for offset in range(1, seeds):
            config = original.replace(seed=original.seed + offset)
            tags = {REPEAT_TAG: row.run_id, "study": study, "trial_number": row.trial, "backend": "repeat"}
            outcome = tracked_trial(tracker, config, name=f"{row.run} seed {config.seed}",
                                    parent_run_id=parent_run_id, tags=tags, kind=REPEAT_KIND, folds=folds)
            done.append(Repeat(row.run_id, outcome.run_id, config.seed, outcome.state, outcome.objective))
            if on_repeat:
                on_repeat(done[-1])
    return done
