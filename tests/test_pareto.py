"""Pareto fronts: a hand-made set, directions from the metric registry, and `bench leaderboard --pareto`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.pareto import pareto_mask, pareto_table


def test_pareto_mask_on_a_hand_made_set():
    # (auroc: higher better, weights: lower better)
    points = np.array([
        [0.90, 100.0],  # 0 front: best auroc
        [0.85, 50.0],   # 1 front
        [0.85, 60.0],   # 2 dominated by 1
        [0.70, 10.0],   # 3 front: fewest weights
        [0.70, 10.0],   # 4 identical to 3: neither dominates, both on the front
        [0.60, 80.0],   # 5 dominated by 1 and 3
        [np.nan, 1.0],  # 6 undefined: never on the front, dominates nothing
        [0.90, 120.0],  # 7 dominated by 0 (equal auroc, more weights)
    ])
    assert pareto_mask(points, [True, False]).tolist() == [True, True, False, True, True, False, False, False]
    # flipping a direction changes the front: now more weights is better
    assert pareto_mask(points, [True, True]).tolist() == [False, False, False, False, False, False, False, True]
    with pytest.raises(BenchError, match="one column per direction"):
        pareto_mask(points, [True])


def test_pareto_mask_matches_brute_force_on_random_points():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(700, 3)).astype(float)  # many ties; more rows than one 512 block
    higher = [True, False, True]
    s = np.where(higher, x, -x)
    brute = [not any((s[j] >= s[i]).all() and (s[j] > s[i]).any() for j in range(len(s))) for i in range(len(s))]
    assert pareto_mask(x, higher).tolist() == brute


def test_pareto_table_uses_registered_directions_and_complete_rows():
    table = pd.DataFrame({"run": ["a", "b", "c", "d"], "run_id": ["1", "2", "3", "4"],
                          "state": ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"],
                          "val_auroc": [0.9, 0.8, 0.7, 0.99], "n_weights": [100.0, 50.0, 80.0, 1.0],
                          "guidance": ["none", "soft_mask", "crop", "none"]})
    front = pareto_table(table, ["val_auroc", "n_weights"])
    assert front["run"].tolist() == ["a", "b"]  # c is dominated by b; d is not COMPLETE
    with pytest.raises(BenchError, match="--pareto needs two or more logged metric columns"):
        pareto_table(table, ["val_auroc", "trial_seconds"])
