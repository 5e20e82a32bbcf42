"""Per-case values of a comparison's finished runs, as the tidy tables ``bench.compare_stats`` reads.

Each COMPLETE run's ``val_cases.json`` (:mod:`bench.cases`) holds its validation cases in validation-part
order, without identifiers; a case is (fold, index in the fold's validation part), the same case for every
arm and seed. Only (fold, seed) cells in which every arm finished COMPLETE are used, so that every arm is
scored on the same cases; the cells left out are reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.cases import CASE_FILE, GROUPS, load_cases
from bench.errors import BenchError
from bench.tracking import Tracker

PROB_PREFIX = "prob_"


@dataclass
class CaseData:
    """The tidy per-case frame (arm, fold, seed, case, ...) and which metrics it can give.

    ``per_case``: columns holding one value per case (Dice, ...); ``set_level``: metric -> (statistic,
    fields) for metrics recomputed from the cases (AUROC and balanced accuracy from probs and labels).
    """

    frame: pd.DataFrame
    per_case: list[str] = field(default_factory=list)
    set_level: dict[str, tuple[Any, dict[str, Any]]] = field(default_factory=dict)


def usable_runs(table: pd.DataFrame, arms: Sequence[str]) -> tuple[pd.DataFrame, list[tuple[int, int]]]:
    """The latest COMPLETE run per arm x fold x seed, in a balanced grid of (fold, seed) cells that every
    arm finished.

    Statistics pool folds and average seeds, so every kept fold needs every kept seed: when some arm did
    not finish a cell, either its fold or its seed is left out for all arms, whichever keeps more cells.

    Returns:
        (the kept runs, the (fold, seed) cells left out).
    """
    done = table[table["state"].eq("COMPLETE") & table["arm"].isin(list(arms))]
    done = done.sort_values("start_time").drop_duplicates(["arm", "fold", "seed"], keep="last")
    folds = sorted({int(f) for f in table["fold"].dropna()})
    seeds = sorted({int(s) for s in table["seed"].dropna()})
    counts = done.groupby(["fold", "seed"])["arm"].nunique()
    whole = {(int(f), int(s)) for (f, s), n in counts.items() if n == len(arms)}
    by_fold = [(f, s) for f in folds if all((f, t) in whole for t in seeds) for s in seeds]
    by_seed = [(f, s) for s in seeds if all((g, s) in whole for g in folds) for f in folds]
    kept_cells = set(max(by_fold, by_seed, key=len))
    dropped = sorted((f, s) for f in folds for s in seeds if (f, s) not in kept_cells)
    keep = [(int(f), int(s)) in kept_cells for f, s in zip(done["fold"], done["seed"])]
    order = {arm: i for i, arm in enumerate(arms)}  # the arms' own order: tables list them as given
    kept = done[keep].assign(_order=lambda t: t["arm"].map(order)).sort_values(["_order", "fold", "seed"])
    return kept.drop(columns="_order").reset_index(drop=True), dropped


def case_data(tracker: Tracker, runs: pd.DataFrame,
              on_download: Callable[[int, int], None] | None = None) -> CaseData:
    """Download every run's ``val_cases.json`` and stack them into one tidy frame.

    Columns: arm, fold, seed, case, then per field: ``values`` under the file's metric name (a per-case
    metric), ``labels`` as ``label``, ``probs`` as ``prob_0..prob_{C-1}``, and other per-case fields (e.g.
    ``val_heart_dice``) under their own name.

    Raises:
        BenchError: a run lacks the file, or arms disagree on the labels of a case (not the same split).
    """
    frames, per_case, set_level = [], [], {}
    for i, row in enumerate(runs.itertuples()):
        try:
            cases = load_cases(tracker.read_artifact(row.run_id, CASE_FILE))
        except Exception as exc:  # noqa: BLE001  MLflow raises several types for a missing artifact
            raise BenchError(f"run {row.run_id} ({row.arm}, fold {row.fold}, seed {row.seed}) must have logged "
                             f"{CASE_FILE} for per-case statistics, but it could not be read ({exc}). Did the "
                             f"task store per-case values (bench/cases.py)?") from None
        columns: dict[str, Any] = {}
        for name, values in cases.fields.items():
            values = np.asarray(values)
            if name == "values":
                columns[cases.metric] = values.astype(float)
                _add(per_case, cases.metric)
            elif name == "labels":
                columns["label"] = values.astype(int)
            elif name == GROUPS:  # anonymous patient number within the fold (issue 21)
                columns["group"] = values.astype(int)
            elif name == "probs":
                if not np.isfinite(values.astype(float)).all():
                    bad = int((~np.isfinite(values.astype(float))).any(axis=1).sum())
                    raise BenchError(f"every validation probability must be a number, but run {row.run_id} (arm "
                                     f"{row.arm}, fold {row.fold}, seed {row.seed}) has NaN or infinite "
                                     f"probabilities for {bad} of {cases.n} cases. Re-run it (bench compare "
                                     f"--resume after deleting the run) or find why its model diverged.")
                columns.update({f"{PROB_PREFIX}{k}": values[:, k].astype(float) for k in range(values.shape[1])})
            elif values.ndim == 1:
                columns[name] = values.astype(float)
                _add(per_case, name)
        frame = pd.DataFrame(columns)
        frame.insert(0, "case", np.arange(cases.n))
        frame.insert(0, "seed", int(row.seed))
        frame.insert(0, "fold", int(row.fold))
        frame.insert(0, "arm", str(row.arm))
        frames.append(frame)
        if on_download:
            on_download(i + 1, len(runs))
    if not frames:
        return CaseData(pd.DataFrame(columns=["arm", "fold", "seed", "case"]))
    frame = pd.concat(frames, ignore_index=True)
    probs = sorted((c for c in frame.columns if c.startswith(PROB_PREFIX)), key=lambda c: int(c[len(PROB_PREFIX):]))
    if probs and "label" in frame:
        _check_labels(frame)
        from bench.compare_stats import balanced_accuracy

        fields = {"probs": probs, "labels": "label"}
        set_level = {"val_auroc": ("macro_auroc", fields), "val_balanced_accuracy": (balanced_accuracy, fields)}
    return CaseData(frame, per_case, set_level)


def _add(names: list[str], name: str) -> None:
    if name not in names:
        names.append(name)


def _check_labels(frame: pd.DataFrame) -> None:
    spread = frame.groupby(["fold", "case"])["label"].nunique()
    if (spread > 1).any():
        fold, case = spread[spread > 1].index[0]
        raise BenchError(f"every arm must be validated on the same cases, but validation case {case} of fold "
                         f"{fold} has different labels in different runs. Were the runs made on different splits?")


def run_frame(runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """A per-run metric as a tidy table whose "cases" are the (fold, seed) runs: arm, fold, seed=0,
    case=<seed>, metric, so that arms are paired on the same fold x seed."""
    return pd.DataFrame({"arm": runs["arm"].astype(str), "fold": runs["fold"].astype(int), "seed": 0,
                         "case": runs["seed"].astype(int), metric: pd.to_numeric(runs[metric], errors="coerce")})
