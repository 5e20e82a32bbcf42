"""bench compare without training: plan (dimension, arms, configs), reference files, run bookkeeping,
analysis of known per-case values, and the cross-comparison summary on a real MLflow store."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import yaml

from bench.compare import plan
from bench.compare.analysis import analyse, trial_hours
from bench.compare.collect import CaseData, usable_runs
from bench.compare.command import add_parser, run
from bench.compare.runs import finished_keys, run_table
from bench.compare.tune import arm_space
from bench.config import TrialConfig
from bench.errors import BenchError, ConfigError
from bench.search.space import load_space
from bench.tasks import TASKS

XRAY = TASKS.get("xray-heart")
CT = TASKS.get("ct-lung")


def _space(task="xray-heart", preset="smoke"):
    return load_space(TASKS.get(task).space_path(preset))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["compare", *argv])


# --- dimension, arms, baseline --------------------------------------------------------------------------
def test_arms_default_to_the_space_choices_and_the_natural_baseline():
    dim = plan.resolve_dimension(XRAY, _space(), "guidance")
    assert dim.arms == ("none", "soft_mask") and dim.baseline == "none"
    loss = plan.resolve_dimension(XRAY, _space(preset="cpu"), "seg_loss")
    assert loss.baseline == "dice" and len(loss.arms) == 12
    arch = plan.resolve_dimension(XRAY, _space(), "seg_arch", baseline="linknet")
    assert arch.baseline == "linknet"
    assert plan.resolve_dimension(XRAY, _space(), "seg_arch").baseline == "fpn"  # no natural one: the first arm


def test_registry_arms_beyond_the_space_and_registry_dimensions_outside_it():
    dim = plan.resolve_dimension(CT, _space("ct-lung", "cpu"), "seg_loss", ["dice", "dice_ce", "spread_dice"])
    assert dim.arms == ("dice", "dice_ce", "spread_dice") and dim.baseline == "dice"
    lung = plan.resolve_dimension(CT, _space("ct-lung", "smoke"), "guidance", ["none", "lung_crop"])
    assert lung.arms == ("none", "lung_crop")  # ct-lung guidance names lung-guidance strategies
    classifier = plan.resolve_dimension(XRAY, _space(), "classifier", ["resnet10", other_classifier()])
    assert classifier.baseline == "resnet10"
    # an xray-heart parameter: named as the user names it, set through its flat config key
    assert (classifier.name, classifier.key) == ("classifier", "task_params.classifier")
    assert plan.resolve_dimension(XRAY, _space(), "task_params.classifier", ["resnet10", other_classifier()]) == classifier


def other_classifier() -> str:  # another registered classifier, whatever its name
    from bench.models import CLASSIFIERS

    return next(n for n in CLASSIFIERS.names() if n != "resnet10")


@pytest.mark.parametrize(("dimension", "arms", "baseline", "message"), [
    ("guidence", None, None, "Did you mean guidance"),
    ("lr", None, None, "categorical parameter"),
    ("guidance", ["none", "soft_mask", "sotf_mask"], None, "Did you mean soft_mask"),
    ("guidance", ["none"], None, "at least 2 arms"),
    ("guidance", ["none", "none"], None, "each arm once"),
    ("guidance", None, "crop", "baseline must be one of the arms"),
    ("classifier", None, None, "its arms must be given"),
])
def test_bad_dimension_arm_or_baseline_is_one_clear_config_error(dimension, arms, baseline, message):
    with pytest.raises(ConfigError, match=message):
        plan.resolve_dimension(XRAY, _space(), dimension, arms, baseline)


def test_cli_refuses_a_bad_arm_and_parallel_options_before_any_training(workdir):
    with pytest.raises(ConfigError, match="--arms must be registered guidance"):
        run(_args("--task", "xray-heart", "--dimension", "guidance", "--arms", "none,bogus", "--preset", "smoke"))
    with pytest.raises(ConfigError, match="--workers must be at least 1, but got 0"):
        run(_args("--task", "xray-heart", "--dimension", "guidance", "--workers", "0"))
    with pytest.raises(ConfigError, match="--workers N runs local processes, but got --workers 2 with --backend ray"):
        run(_args("--task", "xray-heart", "--dimension", "guidance", "--workers", "2", "--backend", "ray"))
    with pytest.raises(ConfigError, match="--resume must name"):
        run(_args("--task", "xray-heart", "--dimension", "guidance", "--resume"))
    with pytest.raises(ConfigError, match="needs --task"):
        run(_args("--dimension", "guidance"))
    with pytest.raises(SystemExit):  # argparse: one configuration source at a time
        _args("--task", "xray-heart", "--config", "a.yaml", "--tune", "3")


# --- configurations -------------------------------------------------------------------------------------
@pytest.mark.parametrize("task", ["xray-heart", "ct-lung"])
@pytest.mark.parametrize("preset", ["smoke", "cpu", "gpu"])
def test_every_task_and_preset_has_a_valid_reference(task, preset):
    spec = TASKS.get(task)
    base = plan.load_reference(task, preset)
    template = plan.template_config(task, spec.preset(preset).config, base, "phantom", "phantom")
    assert template.task == task and base.source == f"reference {task}-{preset}.yaml"
    for key, value in base.values.items():
        assert getattr(template, key) == value or key == "task_params"


def test_a_recorded_space_is_found_again_from_another_checkout_or_gives_one_error(tmp_path):
    """A comparison records a built-in space by name (resuming from another checkout or folder finds it);
    a user's space by absolute path, and a stored one that is gone is one error asking for --space."""
    from bench.compare.driver import _space_file, _space_setting

    builtin = TASKS.get("xray-heart").space_path("cpu")
    assert _space_setting(builtin) == "search_spaces/xray-heart.yaml"
    assert _space_file("search_spaces/xray-heart.yaml", given=False) == str(builtin)
    own = tmp_path / "space.yaml"
    own.write_text("x: 1\n")
    assert _space_setting(own) == str(own.resolve())
    with pytest.raises(ConfigError, match="gone. Give the same space again with --space"):
        _space_file("/elsewhere/old-checkout/search_spaces/xray-heart.yaml", given=False)


def test_arm_config_changes_only_the_dimension_and_drops_its_own_params(tmp_path):
    reference = tmp_path / "ref.yaml"
    reference.write_text(yaml.safe_dump({"config": {"guidance": "soft_mask", "guidance_params": {"floor": 0.3},
                                                    "seg_loss": "tversky", "seg_loss_params": {"alpha": 0.3}},
                                         "arm_params": {"guidance": {"gate": {"strength": 0.5}}}}))
    base = plan.config_file(reference)
    template = plan.template_config("xray-heart", XRAY.preset("smoke").config, base, "phantom", "phantom")
    dim = plan.resolve_dimension(XRAY, _space(preset="cpu"), "guidance", ["soft_mask", "crop", "gate"])
    same, crop, gate = (plan.arm_config(template, dim, arm, base) for arm in dim.arms)
    assert same == template  # the reference's own value keeps its params
    assert crop.guidance == "crop" and crop.guidance_params == {}
    assert gate.guidance_params == {"strength": 0.5}
    for config in (crop, gate):
        assert config.replace(guidance=template.guidance, guidance_params=template.guidance_params) == template


def test_config_files_are_checked_and_run_fields_ignored(tmp_path):
    good = tmp_path / "config.yaml"
    good.write_text(TrialConfig(task="xray-heart", seg_arch="linknet", fold=3, seed=9).to_yaml())
    base = plan.config_file(good)
    assert base.values["seg_arch"] == "linknet" and "fold" not in base.values and "seed" not in base.values
    bad = tmp_path / "bad.yaml"
    bad.write_text("seg_arc: unet\n")
    with pytest.raises(ConfigError, match="bad.yaml.*did you mean seg_arch"):
        plan.config_file(bad)
    with pytest.raises(ConfigError, match="must be readable"):
        plan.load_reference("xray-heart", "nonexistent")


def test_tuning_space_fixes_the_dimension_and_keeps_the_rest(tmp_path):
    path = arm_space(XRAY.space_path("smoke"), "guidance", "soft_mask", tmp_path / "s.yaml")
    space = load_space(path)
    fixed = next(p for p in space.params if p.name == "guidance")
    assert fixed.choices == ("soft_mask",) and space.names == _space().names
    added = load_space(arm_space(XRAY.space_path("smoke"), "task_params.classifier", "resnet10", tmp_path / "c.yaml",
                                 ("classifier",)), "xray-heart")
    assert added.names[0] == "task_params.classifier" and added.names[1:] == _space().names
    # a task parameter the file spells without its prefix is fixed where it stands, not added twice
    short = tmp_path / "short.yaml"
    short.write_text("params:\n  guidance: {type: categorical, choices: [none, soft_mask]}\n"
                     "  cls_lr: {type: categorical, choices: [0.001, 0.003]}\n")
    fixed = load_space(arm_space(short, "task_params.cls_lr", 0.003, tmp_path / "f.yaml", ("cls_lr",)), "xray-heart")
    assert fixed.names == ["guidance", "task_params.cls_lr"] and fixed.params[1].choices == (0.003,)


def test_metric_table_primary_per_dimension_and_override():
    guidance = plan.metric_plan(XRAY, "guidance")
    assert guidance.primary == "val_auroc@fold" and guidance.others[:2] == ("val_auroc", "val_auroc@run")
    assert plan.metric_plan(XRAY, "seg_loss").primary == "val_heart_dice"
    assert plan.metric_plan(CT, "seg_loss").primary == "val_lesion_dice"
    assert plan.metric_plan(CT, "guidance").primary == "val_lesion_dice"
    over = plan.metric_plan(XRAY, "guidance", "test_auroc")
    assert over.primary == "test_auroc" and "val_auroc" in over.others and "test_auroc" not in over.others


def test_jobs_run_whole_fold_seed_cells_first():
    jobs = plan.plan_jobs(["a", "b"], 2, [0, 1])
    assert [j.key for j in jobs[:4]] == [("a", 0, 0), ("b", 0, 0), ("a", 1, 0), ("b", 1, 0)]
    assert len({j.key for j in jobs}) == 8


# --- run bookkeeping ------------------------------------------------------------------------------------
def _mlflow_frame(rows):
    """What leaderboard.runs_frame returns for nested runs (tags.*, metrics.*, times in ms)."""
    return pd.DataFrame([{
        "run_id": f"r{i}", "status": "FINISHED", "start_time": 1000 * i, "end_time": 1000 * i + 3600 * 1000,
        "tags.arm": arm, "tags.fold": str(fold), "tags.seed": str(seed), "tags.bench.state": state,
        "tags.bench.reason": reason, "metrics.val_x": float(i)}
        for i, (arm, fold, seed, state, reason) in enumerate(rows)])


def test_finished_runs_are_kept_killed_and_interrupted_ones_rerun():
    table = run_table(_mlflow_frame([("a", 0, 0, "COMPLETE", None), ("b", 0, 0, "FAIL", "FloatingPointError: nan"),
                                     ("a", 1, 0, "FAIL", "killed"), ("b", 1, 0, "FAIL", "interrupted"),
                                     ("a", 1, 0, "COMPLETE", None)]))
    assert finished_keys(table) == {("a", 0, 0), ("b", 0, 0), ("a", 1, 0)}
    assert trial_hours(table, ["a", "b"]) == {"a": 3.0, "b": 2.0}
    table = run_table(_mlflow_frame([("a", 0, 0, "COMPLETE", None), ("b", 0, 0, "COMPLETE", None),
                                     ("a", 1, 0, "COMPLETE", None), ("b", 1, 0, "FAIL", "ValueError: x"),
                                     ("b", 0, 0, "COMPLETE", None)]))
    usable, dropped = usable_runs(table, ["a", "b"])
    assert list(usable["run_id"]) == ["r0", "r4"]  # the latest COMPLETE run of a repeated job
    assert dropped == [(1, 0)]  # b failed in (1, 0): that cell is left out for every arm


def test_left_out_cells_keep_the_fold_seed_grid_balanced():
    rows = [(arm, fold, seed, "COMPLETE", None) for seed in (0, 1) for fold in (0, 1, 2) for arm in ("a", "b")]
    failed = [r if r[:3] != ("b", 2, 1) else ("b", 2, 1, "FAIL", "ValueError: x") for r in rows]
    usable, dropped = usable_runs(run_table(_mlflow_frame(failed)), ["a", "b"])
    assert dropped == [(2, 0), (2, 1)]  # fold 2 goes (4 cells kept) rather than seed 1 (3 cells kept)
    assert sorted(set(zip(usable["fold"], usable["seed"]))) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    one_fold = [r if r[1:3] != (0, 1) else (*r[:3], "FAIL", "ValueError: x") for r in rows]
    one_fold = [r for r in one_fold if r[1] in (0, 1)]
    _, dropped = usable_runs(run_table(_mlflow_frame(one_fold)), ["a", "b"])
    assert dropped in ([(0, 0), (0, 1)], [(0, 1), (1, 1)])  # a tie: either keeps 2 cells


# --- statistics -----------------------------------------------------------------------------------------
def _cases(delta: float, n: int = 30, folds: int = 3, seeds: int = 5) -> CaseData:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.8, size=(folds, n))  # folds x n cases
    rows = []
    for arm, shift in (("dice", 0.0), ("better", delta), ("same", 0.0)):
        for fold in range(folds):
            for seed in range(seeds):
                for case in range(n):
                    noise = rng.normal(0, 0.01) * (arm == "better")
                    rows.append({"arm": arm, "fold": fold, "seed": seed, "case": case,
                                 "val_lesion_dice": base[fold, case] + shift + noise})
    return CaseData(pd.DataFrame(rows), per_case=["val_lesion_dice"])


def _runs_for(cases: CaseData) -> pd.DataFrame:
    cells = cases.frame[["arm", "fold", "seed"]].drop_duplicates()
    return cells.assign(val_accuracy=np.where(cells["arm"] == "better", 2.0, 1.0) + cells["fold"] * 0.1)


def test_a_known_difference_is_better_and_an_identical_arm_is_practically_equivalent():
    cases = _cases(0.05)
    metrics = plan.MetricPlan("val_lesion_dice", ("val_accuracy", "val_missing"))
    result = analyse(cases, _runs_for(cases), metrics, "dice", {"dice": 1.0, "better": 1.0, "same": 1.0},
                     resamples=500)
    assert result.verdicts == ["better: better than dice (alpha = 0.05)",
                               "same: practically equivalent to dice (within ±0.01) (alpha = 0.05)"]
    primary = result.table[result.table["metric"] == "val_lesion_dice"].set_index("arm")
    assert primary.loc["better", "delta"] == pytest.approx(0.05, abs=0.01)
    assert primary.loc["better", "test_case"] == "wilcoxon" and primary.loc["dice", "unit"] == "case"
    assert primary.loc["better", "test"] == "Dunnett max-t over 3 folds, arm x fold pooled (4 df)"
    per_run = result.table[result.table["metric"] == "val_accuracy"].set_index("arm")
    assert set(per_run["unit"]) == {"run"} and set(per_run["n"]) == {15}
    assert per_run.loc["better", "verdict"].startswith("no verdict")  # +1.0 in every run: zero variance
    assert result.notes == ["val_missing: not logged by these runs, left out."]
    few = _cases(0.05, seeds=2)
    result = analyse(few, _runs_for(few), metrics, "dice", {}, resamples=100)
    assert result.verdicts[0] == "better: too few runs (6): descriptive only (alpha = 0.05)"
    assert result.notes[0].startswith("2 seed(s) per fold: a verdict needs at least 5")
    with pytest.raises(ConfigError, match="--metric must be a metric these runs logged"):
        analyse(cases, _runs_for(cases), plan.MetricPlan("val_nope", ()), "dice", {}, resamples=100)


def test_set_level_auroc_from_pooled_case_probabilities():
    rng = np.random.default_rng(1)
    labels = np.tile([0, 1, 2, 3], 10)
    rows = []
    for arm, noise in (("none", 2.0), ("crop", 0.2)):
        for case, label in enumerate(labels):
            logits = rng.normal(0, noise, 4)
            logits[label] += 1.0
            probs = np.exp(logits) / np.exp(logits).sum()
            rows.append({"arm": arm, "fold": case % 2, "seed": 0, "case": case // 2, "label": label,
                         **{f"prob_{k}": probs[k] for k in range(4)}})
    from bench.compare_stats import balanced_accuracy

    fields = {"probs": [f"prob_{k}" for k in range(4)], "labels": "label"}
    cases = CaseData(pd.DataFrame(rows), [], {"val_auroc": ("macro_auroc", fields),
                                              "val_balanced_accuracy": (balanced_accuracy, fields)})
    runs = pd.DataFrame({"arm": ["none", "crop"] * 2, "fold": [0, 0, 1, 1], "seed": 0,
                         "val_auroc": [0.6, 0.9, 0.7, 0.8]})
    result = analyse(cases, runs, plan.MetricPlan("val_auroc", ("val_balanced_accuracy", "val_auroc@run")),
                     "none", {}, resamples=300)
    per_run = result.table[result.table["metric"] == "val_auroc@run"].set_index("arm")
    assert per_run.loc["crop", "mean"] == pytest.approx(0.85) and per_run.loc["crop", "unit"] == "run"
    assert bool(per_run.loc["crop", "higher_is_better"]) and per_run.loc["none", "n"] == 2
    auroc = result.table[result.table["metric"] == "val_auroc"].set_index("arm")
    assert auroc.loc["crop", "mean"] > auroc.loc["none", "mean"] and auroc.loc["crop", "test_case"] == "bootstrap"
    assert auroc.loc["crop", "delta_low"] > 0  # given these models the pooled AUROC is clearly higher ...
    # ... but pooled over fold models it has no per-run value to test over training runs
    assert auroc.loc["crop", "n"] == 40 and result.verdicts[0].startswith("crop: descriptive only (pooled")


# --- across comparisons ---------------------------------------------------------------------------------
def _summary_parents(rows):
    from bench.tracking import Tracker

    ids = []
    for k, (task, means) in enumerate(rows):
        tracker = Tracker(task)
        parent = tracker.start_run(f"compare s{k}", {"bench.kind": "comparison", "comparison": f"s{k}",
                                                     "metric": "val_m"})
        table = pd.DataFrame({"metric": "val_m", "arm": ["dice", "dice_ce", "spread_dice"], "mean": means,
                              "higher_is_better": True})
        tracker.log_bytes(parent, "results.csv", table.to_csv(index=False).encode())
        ids.append(parent)
    return ids


def test_summarize_ranks_arms_over_comparisons(workdir):
    from bench.compare import summarize

    ids = _summary_parents([("xray-heart", [0.70, 0.80, 0.75]), ("ct-lung", [0.30, 0.45, 0.40]),
                            ("xray-heart", [0.60, 0.62, 0.65])])
    scores, friedman, paths = summarize(ids, workdir / "summary")
    assert list(scores.columns) == ["dice", "dice_ce", "spread_dice"] and len(scores) == 3
    assert friedman.mean_ranks.to_dict() == pytest.approx({"dice_ce": 4 / 3, "spread_dice": 5 / 3, "dice": 3.0})
    # chi2 = 12 / (N k (k + 1)) sum R_j^2 - 3 N (k + 1) = 4.667 (p 0.097): Friedman does not reject, so no CD
    # diagram (old code drew it regardless); Iman-Davenport F = (N - 1) chi2 / (N (k - 1) - chi2) beside it
    assert friedman.statistic == pytest.approx(14 / 3) and not friedman.rejects
    assert friedman.iman_davenport == pytest.approx(2 * (14 / 3) / (6 - 14 / 3))
    assert {p.name for p in paths} == {"summary-scores.csv", "summary-ranks.csv", "summary.md", "report.html"}
    assert not (workdir / "summary" / "cd_diagram.png").exists()
    assert "does not reject" in (workdir / "summary" / "summary.md").read_text()
    assert run(_args("--summarize", ",".join(ids))) == 0
    with pytest.raises(BenchError, match="parent run ids of finished comparisons"):
        summarize([ids[0], "0" * 32])
    more = _summary_parents([("xray-heart", [0.5, 0.7, 0.6 + k / 100]) for k in range(5)]
                            + [("ct-lung", [0.5, 0.7, 0.75])])
    _, friedman, paths = summarize(more, workdir / "summary")
    assert friedman.rejects and friedman.p_iman_davenport < friedman.p  # Iman-Davenport is less conservative
    assert (workdir / "summary" / "cd_diagram.png").read_bytes()[:4] == b"\x89PNG"


def test_the_command_module_imports_no_mlflow_pandas_or_torch():
    import subprocess
    import sys

    code = ("import sys, bench.compare.command; "
            "print([m for m in ('torch', 'mlflow', 'pandas', 'optuna') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # the CLI builds its parser in a blink
