"""Recompute the recorded reference comparisons' verdicts with the run-level test (issue 21), from the
per-run values in their exported runs.csv (no training, no MLflow store needed).

For each comparison the primary metric's per-run value is the run's logged objective: xray-heart
``val_auroc`` (the AUROC within the run's fold, i.e. the run's ``val_auroc@fold`` value) and ct-lung
``val_lesion_dice`` (the mean over the run's lesion-bearing validation cases). The table is
:func:`bench.compare_stats.compare_arms` with those runs as the verdict's units, exactly as
``bench compare`` now decides, plus the seeds each arm would need for a given difference
(:func:`bench.compare.analysis.seeds_for`, as ``--plan-for``).

Usage: python scripts/recompute_reference_verdicts.py [TARGET_DELTA]   (prints Markdown)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from bench.compare.analysis import seeds_for
from bench.compare_stats import compare_arms

ROOT = Path(__file__).resolve().parents[1] / "results" / "compare"
REFERENCES = [("xray-heart-guidance", "val_auroc", "none", True),
              ("ct-lung-seg_loss-cpu", "val_lesion_dice", "dice", True),
              ("ct-lung-seg_loss", "val_lesion_dice", "dice", True)]


def recompute(folder: str, metric: str, baseline: str, higher: bool) -> pd.DataFrame:
    runs = pd.read_csv(ROOT / folder / "runs.csv")
    runs = runs[runs["state"] == "COMPLETE"]
    per_run = runs[["arm", "fold", "seed", metric]].astype({"fold": int, "seed": int})
    as_cases = per_run.assign(case=per_run["seed"], seed=0)  # the runs as the case-level columns' units
    arms = [baseline, *sorted(set(per_run["arm"]) - {baseline})]
    as_cases = as_cases.set_index("arm").loc[arms].reset_index()
    return compare_arms(as_cases, metric, baseline, higher_is_better=higher, runs=per_run, resamples=2000)


def main(target: float = 0.02) -> str:
    blocks = []
    for folder, metric, baseline, higher in REFERENCES:
        table = recompute(folder, metric, baseline, higher)
        plan = seeds_for(table, metric, target).set_index("arm")
        header = ("| arm | mean | Δ over runs [95% t CI] | p (t over folds) | Holm p | verdict | sd_fold | sd_seed | "
                  f"detectable Δ now | seeds for Δ = {target:g} |")
        lines = [f"### {folder} ({metric} per run)", "", header, "|---|---|---|---|---|---|---|---|---|---|"]
        for r in table.itertuples():
            if r.arm == baseline:
                lines.append(f"| {r.arm} | {r.mean:.3f} | – | – | – | baseline | | | | |")
                continue
            need = plan.loc[r.arm, "seeds_needed"]
            lines.append(f"| {r.arm} | {r.mean:.3f} | {r.run_delta:+.3f} [{r.run_delta_low:+.3f}, {r.run_delta_high:+.3f}] | "
                         f"{r.p:.3f} | {r.p_adjusted:.3f} | {r.verdict} | {r.sd_fold:.3f} | {r.sd_seed:.3f} | "
                         f"{r.detectable:.3f} | {'–' if pd.isna(need) else int(need)} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


if __name__ == "__main__":
    print(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.02))
