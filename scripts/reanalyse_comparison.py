"""Re-analyse a finished comparison from its exported runs (no retraining): the verdict's procedure beside the
earlier one, per arm, on one per-run metric.

    python scripts/reanalyse_comparison.py results/compare/xray-heart-guidance-5seeds val_auroc none
    python scripts/reanalyse_comparison.py results/compare/ct-lung-seg_loss-cpu-5seeds val_lesion_dice dice

Reads ``runs.csv`` (one row per arm x fold x seed run, as ``bench compare --export`` writes it), keeps the
COMPLETE runs, and writes ``reanalysis.md`` beside it: for every arm the difference over runs, the earlier
procedure (t over the arm's fold means, Holm over the arms: p, adjusted p, verdict, detectable Δ) and the
current one (:func:`bench.compare_stats.many_to_one`: the arm x fold term pooled over the arms, Dunnett's
max-t; equivalence within the metric's declared region).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from bench.compare_stats import (
    detectable_difference,
    equivalent,
    holm,
    many_to_one,
    metric_direction,
    run_level_test,
    verdict,
)
from bench.compare_stats._table import family_detectable, family_test_name
from bench.metrics import practical_difference


def reanalyse(folder: Path, metric: str, baseline: str, alpha: float = 0.05) -> str:
    runs = pd.read_csv(folder / "runs.csv")
    runs = runs[runs["state"] == "COMPLETE"]
    arms = [baseline, *sorted(set(runs["arm"]) - {baseline})]
    grids = {arm: runs[runs["arm"] == arm].pivot_table(index="fold", columns="seed", values=metric, aggfunc="mean")
             for arm in arms}
    folds = sorted(set.intersection(*(set(g.index) for g in grids.values())))
    seeds = sorted(set.intersection(*(set(g.columns) for g in grids.values())))
    grids = {arm: g.reindex(index=folds, columns=seeds) for arm, g in grids.items()}
    higher = metric_direction(metric)
    rope = practical_difference(metric)
    family = many_to_one(np.stack([np.nanmean(grids[a].to_numpy(float), axis=1) for a in arms]))
    old = [run_level_test((grids[a] - grids[baseline]).to_numpy(float)) for a in arms[1:]]
    old_adjusted = holm([r.p for r in old])
    lines = [f"# Re-analysis of `{folder.name}` on {metric} (no retraining)", "",
             f"{len(folds)} folds x {len(seeds)} seeds, {len(runs)} COMPLETE runs, baseline `{baseline}`, alpha {alpha:g}. "
             f"Earlier: {run_level_test.__name__} per arm (t over {len(folds)} fold means, {len(folds) - 1} df), "
             f"Holm over the arms. Now: the verdict's family test (the test column)"
             + (f"; equivalence within ±{rope:g}." if rope else "."), "",
             ("| arm | Δ over runs | earlier: p | earlier: adjusted p | earlier: verdict | earlier: detectable Δ "
             "| now: 95% CI | now: p | now: adjusted p | now: verdict | now: detectable Δ | now: test |"),
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    tests = len(arms) - 1
    for i, arm in enumerate(arms[1:]):
        r = old[i]
        before = verdict(r.delta, old_adjusted[i], higher, baseline, alpha)
        before_detectable = detectable_difference(r.sd_fold, r.sd_seed, r.n_folds, r.n_seeds, alpha / tests)
        same = equivalent(family.delta[i], family.se[i], family.df[i], rope or 0.0, alpha)
        now = verdict(family.delta[i], family.p_adjusted[i], higher, baseline, alpha, rope if same else None)
        now_detectable = family_detectable(family, i, alpha)
        lines.append(f"| {arm} | {family.delta[i]:+.4f} | {r.p:.3f} | {old_adjusted[i]:.3f} | {before} | "
                     f"{before_detectable:.3f} | [{family.low[i]:+.4f}, {family.high[i]:+.4f}] | {family.p[i]:.3f} | "
                     f"{family.p_adjusted[i]:.3f} | {now} | {now_detectable:.3f} | {family_test_name(family, i)} |")
    apart = [a for a, pooled in zip(arms[1:], family.pooled) if not pooled]
    lines += ["", (f"Bartlett's p of equal run spread over all arms: {family.homogeneity_p:.3f}; set apart (tested on "
              f"their own spread): {', '.join(apart) or 'none'}.")]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        print("usage: reanalyse_comparison.py FOLDER METRIC BASELINE", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    text = reanalyse(folder, argv[1], argv[2])
    (folder / "reanalysis.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
