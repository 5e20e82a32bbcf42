"""bench perf: every suite runs on tiny settings and returns its documented keys (behaviour, never speed)."""

from __future__ import annotations

import json
import math

import pytest

from bench.errors import BenchError
from bench.perf import QUICK, SUITES, run_suite


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One data cache for the suites that run searches, so the phantom is built once for the module."""
    return tmp_path_factory.mktemp("perf-cache")


@pytest.fixture
def perf_env(workdir, shared_cache, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE", str(shared_cache))
    return workdir


def positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def check_written(result: dict, out, suite: str) -> None:
    written = json.loads((out / f"{suite}.json").read_text())
    assert written["suite"] == suite and written["quick"] is True
    assert written["machine"]["cores"] >= 1 and "note" in written["machine"]
    assert set(result) == set(written)


def test_every_suite_has_quick_settings_and_unknown_names_raise():
    assert set(QUICK) == set(SUITES)
    with pytest.raises(BenchError, match="did you mean 'overhead'|Did you mean 'overhead'"):
        run_suite("overhed", out=None)
    with pytest.raises(BenchError, match="arguments of suite"):
        run_suite("overhead", out=None, quick=True, no_such_knob=1)


def test_cli_overhead_prints_json_with_ratio_and_writes_file(perf_env, capsys):
    from bench.cli import main

    out = perf_env / "perf"
    assert main(["perf", "--suite", "overhead", "--json", "--quick", "--out", str(out),
                 "--param", "epochs=1"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert positive(result["ratio"]) and positive(result["cpu_ratio"])
    assert all(positive(v) for v in result["samples_per_s"].values())
    assert {"loop_s", "metrics_s", "logging_s", "metrics_share", "logging_share"} <= set(result["breakdown"])
    assert positive(result["breakdown"]["metrics_s"]) and positive(result["breakdown"]["logging_s"])
    assert {r["variant"] for r in result["runs"]} == {"bare", "bare_validated", "loop", "loop_lean", "harness"}
    assert positive(result["training_only_ratio"])
    # bare loop and harness ran under one runtime policy, recorded in the JSON
    from bench.runtime import Runtime

    assert result["runtime"] == Runtime.choose().as_dict()
    assert result["settings"]["precision"] == result["runtime"]["precision"]
    check_written(result, out, "overhead")


def test_cli_rejects_malformed_param(perf_env, capsys):
    from bench.cli import main

    assert main(["perf", "--suite", "overhead", "--param", "epochs"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_data_suite(perf_env):
    out = perf_env / "perf"
    result = run_suite("data", out=out, quick=True)
    for key in ("ratio", "cpu_ratio", "decode_epoch_s", "cache_epoch_s", "loader_batch_s", "model_step_s",
                "loader_share", "loader_samples_per_s", "model_samples_per_s", "images", "dicom_files"):
        assert positive(result[key]), key
    assert result["images"] == result["dicom_files"]
    check_written(result, out, "data")


@pytest.mark.slow  # three small searches: a benchmark's cost; run with -m slow
def test_search_suite_curves_and_png(perf_env):
    out = perf_env / "perf"
    result = run_suite("search", out=out, quick=True)
    assert result["reduced"] is True and result["reduced_note"]
    assert set(result["fraction"]) == {"none", "hyperband"}
    assert result["fraction"]["none"] == pytest.approx(1.0)  # the reference reaches its own best at its end
    curve = result["per_seed"]["0"]["hyperband"]["curve"]
    assert curve and all(positive(p["epochs"]) for p in curve)
    assert (out / result["anytime_png"]).read_bytes()[:4] == b"\x89PNG"
    check_written(result, out, "search")


def test_search_suite_needs_the_no_pruning_reference(perf_env):
    with pytest.raises(BenchError, match="pruner 'none'"):
        run_suite("search", out=None, quick=True, pruners=["median"])


@pytest.mark.slow  # spawns worker processes that each import torch and train
def test_scale_suite(perf_env):
    out = perf_env / "perf"
    result = run_suite("scale", out=out, quick=True)
    assert set(result["trials_per_hour"]) >= {"w1", "w2"}
    assert all(positive(v) for v in result["trials_per_hour"].values())
    assert result["speedup"]["w1"] == pytest.approx(1.0) and positive(result["speedup_max_workers"])
    assert all(r["trials"] == 1 and r["failed"] == 0 for r in result["runs"].values())
    assert "skipped" in result["gpu"] or all(positive(r["trials_per_hour"]) for r in result["gpu"].values())
    check_written(result, out, "scale")


def test_tracking_suite(perf_env):
    out = perf_env / "perf"
    result = run_suite("tracking", out=out, quick=True)
    for key in ("share", "trial_s", "tracker_total_s", "tracker_init_s", "leaderboard_s", "fill_s"):
        assert positive(result[key]), key
    assert result["share"] < 1
    assert {"start_trial", "log_epoch", "log_metrics", "log_trial_artifacts", "end"} <= set(result["tracker_s"])
    assert result["tracker_s"]["log_epoch"]["calls"] >= 2  # every epoch of both stages
    assert result["tracker_s"]["log_metrics"]["calls"] == 1  # the final metrics
    assert result["leaderboard_rows"] == result["leaderboard_runs"] + 1  # the timed trial is in the store too
    check_written(result, out, "tracking")


def test_markdown_table_lists_every_suite(tmp_path):
    out = tmp_path / "perf"
    out.mkdir()
    (out / "tracking.json").write_text(json.dumps({
        "suite": "tracking", "command": "bench perf --suite tracking", "share": 0.005, "met": True,
        "trial_s": 60.0, "settings": {"preset": "cpu"}, "leaderboard_runs": 500, "leaderboard_s": 1.5}))
    from bench.perf import markdown_table

    table = markdown_table(out)
    assert "| tracking | MLflow time / trial time | 0.0050" in table and "`bench perf --suite tracking`" in table
    assert all(f"| {name} |" in table for name in SUITES)


def test_leaderboard_suite(perf_env):
    out = perf_env / "perf"
    result = run_suite("leaderboard", out=out, quick=True)
    assert result["runs"] == result["rows"] == 50
    for key in ("cold_process_s", "import_s", "first_call_s", "warm_s", "fill_s"):
        assert positive(result[key]), key
    assert len(result["loadavg_before"]) == 3
    check_written(result, out, "leaderboard")


def test_bulk_filled_store_reads_back_through_mlflow(workdir):
    """The bulk SQL fill writes what MlflowClient reads: counts, params, metrics, tags, nesting, status."""
    from bench.leaderboard import leaderboard
    from bench.perf.synthetic import check_store, fill_store

    filled = fill_store(30, "xray-heart", parents=2)
    assert filled["rows"]["runs"] == 30 and len(filled["parents"]) == 2
    assert check_store(filled, sample=30) == 30
    table = leaderboard("xray-heart")
    assert len(table) == 30 and table["state"].value_counts().to_dict() == {"COMPLETE": 26, "PRUNED": 4}
    assert table.loc[1, "val_auroc"] == table[table["state"] == "COMPLETE"]["val_auroc"].max()
    assert leaderboard("xray-heart", where=["guidance=soft_mask"])["guidance"].eq("soft_mask").all()


@pytest.mark.slow  # 12 xray-heart smoke trials (2 arms x 2 folds: cache off, on, then by hand)
def test_stages_suite(perf_env):
    out = perf_env / "perf"
    result = run_suite("stages", out=out, quick=True)
    assert positive(result["on_s"]) and positive(result["off_s"]) and positive(result["ratio"])
    assert (result["off_trained"], result["off_loaded"]) == (4, 0)
    assert (result["on_trained"], result["on_loaded"]) == (2, 2)  # one segmenter per fold, loaded by the other arm
    assert result["identical"] is True and result["runs"] == 4
    assert result["by_hand_runs"] == 4 and positive(result["by_hand_s"]) and positive(result["by_hand_over_on"])
    assert result["by_hand_identical"] is True and result["by_hand_differing"] == []  # the same values, run for run
    check_written(result, out, "stages")


@pytest.mark.slow  # four fresh processes (make-phantom, cache build, the A/B) import torch: ~1-2 min on a loaded box
def test_scale_data_ab_only_times_streamed_and_in_memory_training(perf_env):
    from bench.perf import markdown_table

    out = perf_env / "results" / "perf" / "scale-data"
    result = run_suite("scale-data", out=out, quick=True, patients=[12], ab_only=True, ab_train_cases=8,
                       ab_epochs=2)
    check_written(result, out, "scale-data")
    ab = result["training_ab"]
    assert ab["ab_train_images"] == 8 and set(result["runs"]) == {"12"} and "peak_rss_mb" not in result["runs"]["12"]
    assert all(positive(ab[f"{v}_images_per_s"]) for v in ("stream", "memory", "stream_again"))
    assert all(len(ab[f"{v}_epoch_s"]) == 2 for v in ("stream", "memory", "stream_again"))
    assert positive(ab["stream_over_memory"]) and result["met"]["images_per_s"] == (ab["stream_over_memory"] >= 0.9)
    assert "training images/s streamed / in memory (8 images" in markdown_table(out.parent)


def test_scale_data_refuses_an_ab_without_a_timed_epoch(perf_env):
    with pytest.raises(BenchError, match="ab_epochs must be at least 2"):
        run_suite("scale-data", out=None, quick=True, ab_only=True, ab_epochs=1)


def test_stats_suite_runs_the_family_grid_beside_the_two_arm_grid(perf_env, capsys):
    from bench.perf import run_suite

    result = run_suite("stats", out=None, quick=True)
    family = result["family"]
    assert [r["cell"] for r in family["rows"]][:2] == ["7 arms equal", "one of 6 arms better by 0.017"]
    assert all(0 <= r["familywise_fpr"] <= 1 and 0 <= r["familywise_fpr_old"] <= 1 for r in family["rows"])
    assert "power" in family["rows"][1] and "power" not in family["rows"][0]
    assert family["reps"] == 20
