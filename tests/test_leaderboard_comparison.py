"""`bench leaderboard --comparison`: a finished comparison's results table read back from a real store."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from bench.cli import main
from bench.compare_stats import compare_arms, results_csv, results_markdown
from bench.errors import BenchError


def make_comparison(uri: str, name: str = "guidance-demo", finished: bool = True) -> str:
    """A comparison parent run as ``bench compare`` leaves it (settings tags, results.csv, results.md),
    with a real results table from per-case values; returns its run id."""
    from bench.compare.runs import open_parent
    from bench.tracking import Tracker

    rng = np.random.default_rng(0)
    arms = (("none", 0.0), ("gate", 0.05), ("crop", 0.0))
    rows = [{"arm": arm, "fold": fold, "seed": seed, "case": case,
             "val_heart_dice": 0.8 + shift + rng.normal(0, 0.02)}
            for arm, shift in arms for fold in range(2) for seed in range(5) for case in range(15)]
    table = compare_arms(pd.DataFrame(rows), "val_heart_dice", "none", higher_is_better=True, resamples=200,
                         trial_hours={"none": 0.1, "gate": 0.12, "crop": 0.11})
    table["unit"] = "case"
    tracker = Tracker("xray-heart", uri=uri)
    settings = {"dimension": "guidance", "arms": "none,gate,crop", "baseline": "none", "folds": 2,
                "seeds": "0,1,2,3,4", "preset": "smoke", "metric": "val_heart_dice", "mode": "fixed"}
    parent = open_parent(tracker, name, settings, None)
    if finished:
        tracker.log_bytes(parent, "results.csv", results_csv(table).encode())
        tracker.log_bytes(parent, "results.md", results_markdown(table).encode())
        tracker.log_bytes(parent, "verdicts.txt", b"gate: better than none (alpha = 0.05)\n")
    tracker.end(parent, "COMPLETE" if finished else "FAIL", None if finished else "killed")
    return parent


@pytest.fixture
def comparison(workdir):
    return make_comparison(f"sqlite:///{workdir / 'mlflow.db'}")


def test_the_table_shows_the_primary_metric_by_name_and_by_run_id(comparison, capsys):
    assert main(["leaderboard", "--comparison", "guidance-demo"]) == 0
    out = capsys.readouterr().out
    assert f"comparison guidance-demo (run {comparison}), task xray-heart" in out
    assert "primary metric val_heart_dice" in out and "adj. p: Dunnett max-t over 2 folds, arm x fold pooled" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "better than none" in lines["gate"] and "baseline" in lines["none"]
    assert "no detectable difference from none" in lines["crop"]
    assert max(len(line) for line in out.splitlines()[2:-1]) <= 120
    assert main(["leaderboard", "--comparison", comparison, "--task", "xray-heart"]) == 0
    assert "better than none" in capsys.readouterr().out


def test_csv_md_json_and_export_hold_the_stored_results(comparison, workdir, capsys):
    from bench.tracking import Tracker

    stored = Tracker("xray-heart").read_artifact(comparison, "results.csv").decode()
    assert main(["leaderboard", "--comparison", "guidance-demo", "--format", "csv"]) == 0
    text = capsys.readouterr().out
    assert text.strip() == stored.strip()  # the logged table itself
    table = pd.read_csv(io.StringIO(text))
    assert list(table["arm"]) == ["none", "gate", "crop"] and table.loc[1, "verdict"] == "better than none"
    assert {"mean", "ci_low", "delta", "p_adjusted", "trial_hours"} <= set(table.columns)
    assert main(["leaderboard", "--comparison", "guidance-demo", "--format", "md"]) == 0
    md = capsys.readouterr().out
    assert "### val_heart_dice (higher is better)" in md and "| gate | 30 |" in md
    assert main(["leaderboard", "--comparison", "guidance-demo", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["run_id"] == comparison and data["settings"]["baseline"] == "none"
    assert [r["arm"] for r in data["results"]] == ["none", "gate", "crop"]
    assert main(["leaderboard", "--comparison", "guidance-demo", "--export", str(workdir / "out"),
                 "--out", str(workdir / "t.md"), "--format", "md"]) == 0
    assert {p.name for p in (workdir / "out").iterdir()} == {"results.csv", "results.md", "verdicts.txt"}
    assert (workdir / "t.md").read_text().startswith("# Comparison guidance-demo")


def test_unknown_or_unfinished_comparison_is_one_clear_error(workdir, capsys):
    assert main(["leaderboard", "--comparison", "nope"]) == 2
    assert "there is none at" in capsys.readouterr().err and not (workdir / "mlflow.db").exists()
    make_comparison(f"sqlite:///{workdir / 'mlflow.db'}")
    make_comparison(f"sqlite:///{workdir / 'mlflow.db'}", name="half", finished=False)
    assert main(["leaderboard", "--comparison", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--comparison must be the parent run id or the name of a comparison" in err
    assert "['guidance-demo', 'half']" in err and len(err.strip().splitlines()) == 1
    assert main(["leaderboard", "--comparison", "0" * 32]) == 2
    assert main(["leaderboard", "--comparison", "half"]) == 2
    assert "must have finished to show its results" in capsys.readouterr().err
    assert main(["leaderboard", "--comparison", "guidance-demo", "--task", "ct-lung"]) == 2
    assert main(["leaderboard", "--comparison", "guidance-demo", "--top", "3"]) == 2
    assert "but got --top" in capsys.readouterr().err
    assert main(["leaderboard"]) == 2
    assert "needs --task TASK" in capsys.readouterr().err


def test_plan_for_prints_seeds_needed_from_a_finished_pilot_without_training(comparison, capsys):
    from bench.compare.analysis import seeds_for
    from bench.compare.read import find_comparison
    from bench.compare_stats import seeds_needed

    assert main(["compare", "--name", "guidance-demo", "--plan-for", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "seeds per fold to detect a difference of 0.01 in val_heart_dice" in out
    table = find_comparison("guidance-demo").table
    plan = seeds_for(table, "val_heart_dice", 0.01).set_index("arm")
    row = table.set_index(["metric", "arm"]).loc[("val_heart_dice", "gate")]
    assert plan.loc["gate", "seeds_needed"] == seeds_needed(0.01, row["sd_fold"], row["sd_seed"], 2, 0.05 / 2)
    assert "  gate: " in out and "  crop: " in out
    old = table.drop(columns=["sd_fold", "sd_seed"])
    with pytest.raises(BenchError, match="has none .*Recompute it with"):
        seeds_for(old, "val_heart_dice", 0.01)
    assert main(["compare", "--plan-for", "0.01"]) == 2  # no pilot named: one line, exit 2
