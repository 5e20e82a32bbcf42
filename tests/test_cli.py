"""The command line as a user meets it: help, choices, errors that name the command, read-only commands that
create nothing, and terminal tables that fit 120 columns (real MLflow stores, no training)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import build_parser, main
from bench.tracking import KIND_TAG, Tracker

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("deeplabv3plus", "fpn", "unet")
LOSSES = ("log_cosh_dice", "dice_ce", "tversky", "focal_tversky")
GUIDANCE = ("attention_loss", "soft_mask", "crop", "none")
XRAY_METRICS = (
    "val_auroc",
    "val_accuracy",
    "val_balanced_accuracy",
    "val_heart_dice",
    "val_heart_hd95",
    "val_ctr_error",
    "val_attention_in_heart",
    "test_auroc",
    "test_accuracy",
    "test_heart_dice",
    "test_attention_in_heart",
    "test_shifted_auroc",
    "test_shifted_attention_in_heart",
    "test_shifted_heart_hd95",
    "val_recall_normal",
    "val_recall_ASD",
    "val_recall_TOF",
)


def xray_store(n: int, groups: tuple[str, ...] = GUIDANCE) -> Tracker:
    """``n`` finished xray-heart trials as a search writes them: long names, six searched dimensions, nested
    parameters, every metric and the cost metrics, through the real Tracker into ./mlflow.db."""
    tracker = Tracker("xray-heart")
    rng = np.random.default_rng(1)
    for i in range(n):
        arch, loss, guidance = ARCHS[i % 3], LOSSES[i % 4], groups[i % len(groups)]
        state = "PRUNED" if i % 5 == 4 else "COMPLETE"
        run_id = tracker.start_run(
            f"t{i:03d} {arch}/{loss}/{guidance}", {KIND_TAG: "trial", "trial_number": i, "study": "s"}
        )
        tracker.log_params(
            run_id,
            {
                "seg_arch": arch,
                "seg_loss": loss,
                "guidance": guidance,
                "seg_encoder": ("resnet18", "mobilenet_v2")[i % 2],
                "lr": float(10 ** rng.uniform(-4, -2)),
                "task_params.cls_lr": float(10 ** rng.uniform(-4, -2)),
                "seg_loss_params.alpha": float(rng.random()),
                "seed": 0,
            },
        )
        metrics = {m: float(rng.random()) for m in XRAY_METRICS}
        metrics.update(
            val_heart_hd95=float(rng.uniform(1, 40)),
            n_weights=17958821.0 + i,
            trial_seconds=float(rng.uniform(20, 90)),
            epochs_trained=9.0,
        )
        tracker.log_metrics(run_id, metrics)
        tracker.end(run_id, state)
    return tracker


def _subcommands(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subcommands(sub))


def test_every_flag_has_help_and_registry_choices_are_listed():
    from bench.data.formats import FORMATS
    from bench.tasks import TASKS

    parser = build_parser()
    for name, sub in _subcommands(parser):
        for action in sub._actions:
            if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                assert action.help, f"bench {name}: {action.option_strings or action.dest} has no help text"
    search_help = dict(_subcommands(parser))["search"].format_help()
    flat = " ".join(search_help.split())
    for task in TASKS.names():
        assert task in flat
    for fmt in FORMATS.names():
        assert fmt in flat
    for choice in ("tpe", "nsga2", "hyperband", "asha", "smoke", "gpu"):
        assert choice in flat


def test_parser_and_help_import_no_heavy_library():
    code = (
        "import sys\nfrom bench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'mlflow', 'pandas', 'monai', 'optuna')"
        " if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert "usage: bench" in done.stdout and "HEAVY []" in done.stdout
    module = subprocess.run(
        [sys.executable, "-m", "bench.cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "leaderboard" in module.stdout


def test_a_mistyped_task_suggests_only_a_close_name(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["leaderboard", "--task", "xray-hart"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "bench leaderboard: error:" in err
    assert "Did you mean xray-heart?" in err and "Did you mean ct-lung" not in err
    with pytest.raises(SystemExit):
        main(["leaderboard", "--task", "pancreas"])
    assert "Did you mean" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["replay", "--task", "ct-lung"],
        ["leaderboard", "--task", "xray-heart"],
        ["replay", "--task", "xray-heart", "--run-id", "0123abcd"],
        ["ui"],
    ],
)
def test_read_only_commands_in_an_empty_folder_exit_2_and_create_nothing(workdir, capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"bench {argv[0]}: error:") and len(err.splitlines()) == 1
    assert "mlflow.db" in err and "bench search --task" in err
    assert list(workdir.iterdir()) == []  # no mlflow.db, no mlruns/, no journal


def test_a_missing_store_named_by_the_environment_is_not_created(workdir, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workdir / 'elsewhere' / 'runs.db'}")
    assert main(["leaderboard", "--task", "xray-heart"]) == 2
    assert "MLFLOW_TRACKING_URI" in capsys.readouterr().err and list(workdir.iterdir()) == []


def test_a_store_without_the_task_is_left_without_its_experiment(workdir, capsys):
    xray_store(1)
    assert main(["replay", "--task", "ct-lung"]) == 2
    assert "bench/ct-lung" in capsys.readouterr().err
    assert Tracker("xray-heart").client.get_experiment_by_name("bench/ct-lung") is None


def test_default_table_of_12_trials_fits_120_columns_and_wide_has_everything(workdir, capsys):
    xray_store(12)
    assert main(["leaderboard", "--task", "xray-heart"]) == 0
    out = capsys.readouterr().out
    lines = out.rstrip("\n").splitlines()
    assert max(len(line) for line in lines) <= 120, out
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["rank", "run", "state"])
    rows = lines[header + 1 : lines.index("Use the best trial:")]  # the predict hint follows the table
    assert [line.split()[0] for line in rows if line.strip()] == [str(k) for k in range(1, 13)]  # no index row
    assert "auroc" in lines[header] and "COMPLETE" in out and "t000" in out  # val_auroc may wrap after "val_"
    for dimension in ("seg_arch", "seg_loss", "guidance", "lr"):
        assert dimension in out
    significant = [len(n.replace(".", "").lstrip("0")) for n in re.findall(r"\b\d+\.\d+", out)]
    assert significant and max(significant) <= 4  # 0.1333, not 0.13330024390104994

    assert main(["leaderboard", "--task", "xray-heart", "--wide"]) == 0
    wide = capsys.readouterr().out
    for column in ("test_shifted_attention_in_heart", "seg_loss_params.alpha", "n_weights", "trial_seconds"):
        assert column in wide
    assert main(["leaderboard", "--task", "xray-heart", "--format", "csv"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split(",")
    assert {"run_id", "val_recall_TOF", "test_shifted_heart_hd95", "seg_loss_params.alpha"} <= set(header)


def test_group_summary_marks_a_single_trial_as_having_no_ci(workdir, capsys):
    from bench.leaderboard import group_summary, leaderboard

    xray_store(5, groups=("soft_mask", "soft_mask", "soft_mask", "crop"))  # crop: t003 only (t004 is pruned)
    groups = group_summary(leaderboard("xray-heart"), "guidance", "val_auroc").set_index("guidance")
    assert groups.loc["crop", "n"] == 1 and np.isnan(groups.loc["crop", "ci95_low"])
    assert groups.loc["soft_mask", "ci95_low"] <= groups.loc["soft_mask", "ci95_high"]
    assert main(["leaderboard", "--task", "xray-heart", "--group-by", "guidance"]) == 0
    out = capsys.readouterr().out
    crop = next(line for line in out.splitlines() if line.startswith("crop"))
    assert crop.split()[1] == "1" and crop.split()[3:5] == ["-", "-"] and "no confidence interval" in out


def test_tasks_lists_each_preset_with_its_trial_count_and_readme_agrees(capsys):
    from bench.tasks import TASKS

    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for entry in TASKS.entries():
        for name, preset in entry.obj.presets.items():
            assert re.search(rf"^\s+{name}\s+{preset.trials} trials", out, re.MULTILINE), (entry.name, name)
    readme = (ROOT / "README.md").read_text()
    claimed = re.search(r'default preset "cpu": (\d+) trials', readme)
    assert claimed and int(claimed.group(1)) == TASKS.get("xray-heart").preset("cpu").trials


def test_errors_name_the_command_that_was_run(workdir, capsys):
    assert main(["perf", "--suite", "overhead", "--param", "epochs"]) == 2
    assert capsys.readouterr().err.startswith("bench perf: error: --param must look like KEY=VALUE")
    assert main(["datasets", "inspect", "nowhere", "--task", "xray-heart", "--format", "png"]) in (1, 2)
    err = capsys.readouterr().err
    assert err == "" or err.startswith("bench datasets inspect: error:")
