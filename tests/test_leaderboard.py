"""Leaderboard filters, strategy summaries, exports and plots, on a synthetic MLflow store (no training)."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag

from bench.errors import BenchError
from bench.leaderboard import bootstrap_ci, export, group_summary, leaderboard
from bench.report import learning_curve_png
from bench.tracking import KIND_TAG, STATE_TAG, Tracker

GUIDANCE = ("none", "soft_mask", "multiply")
LOSSES = ("dice", "dice_ce", "tversky")


def fill_store(n: int, task: str = "xray-heart", study: str = "synthetic") -> Tracker:
    """``n`` trial runs with params, tags and a final val_auroc, written with one log_batch per run."""
    tracker = Tracker(task)
    rng = np.random.default_rng(0)
    parent = tracker.start_run("search synthetic", {KIND_TAG: "search", "study": study})
    for i in range(n):
        guidance, loss = GUIDANCE[i % 3], LOSSES[(i // 3) % 3]
        run_id = tracker.client.create_run(tracker.experiment_id, run_name=f"t{i:03d}").info.run_id
        state = "PRUNED" if i % 7 == 6 else "COMPLETE"
        tags = {KIND_TAG: "trial", STATE_TAG: state, "trial_number": i, "study": study,
                "mlflow.parentRunId": parent}
        params = {"seg_arch": "unet", "seg_loss": loss, "guidance": guidance, "lr": [1e-3, 3e-3][i % 2],
                  "seed": 0}
        # soft_mask is better on purpose, so the group summary has a known order
        auroc = 0.7 + 0.1 * (guidance == "soft_mask") + 0.02 * rng.standard_normal()
        now = int(time.time() * 1000)
        tracker.client.log_batch(run_id, metrics=[Metric("val_auroc", auroc, now, 0),
                                                  Metric("test_auroc", auroc - 0.01, now, 0)],
                                 params=[Param(k, str(v)) for k, v in params.items()],
                                 tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return tracker


@pytest.fixture
def store(workdir):
    fill_store(21)
    return workdir


def test_where_filters_on_params_and_columns(store):
    table = leaderboard("xray-heart", where=["seg_loss=tversky"])
    assert len(table) == 6 and set(table["seg_loss"]) == {"tversky"}
    both = leaderboard("xray-heart", where=["seg_loss=tversky", "guidance!=none"])
    assert len(both) > 0 and set(both["guidance"]) <= {"soft_mask", "multiply"}
    assert set(both["seg_loss"]) == {"tversky"}
    # numeric values match however they were written; a constant param is filterable though not shown
    assert len(leaderboard("xray-heart", where=["lr=0.001"])) == len(leaderboard("xray-heart", where=["lr=1e-3"]))
    assert "seg_arch" in leaderboard("xray-heart", where=["seed=0"]).columns
    assert set(leaderboard("xray-heart", where=["state=PRUNED"])["state"]) == {"PRUNED"}
    assert list(leaderboard("xray-heart", where=["guidance=soft_mask"]).index[:2]) == [1, 2]


def test_where_errors_name_the_rule(store):
    with pytest.raises(BenchError, match="--where must name a leaderboard column or param, but got 'los'"):
        leaderboard("xray-heart", where=["los=dice"])
    with pytest.raises(BenchError, match="key=value"):
        leaderboard("xray-heart", where=["seg_loss"])


def test_group_summary_orders_strategies_with_bootstrap_ci(store):
    table = leaderboard("xray-heart")
    groups = group_summary(table, "guidance", "val_auroc")
    assert groups["guidance"].iloc[0] == "soft_mask"
    complete = table[table["state"] == "COMPLETE"]
    assert groups["n"].sum() == len(complete)
    for row in groups.itertuples():
        assert row.ci95_low <= row.mean <= row.ci95_high and row.best >= row.mean
    assert groups.equals(group_summary(table, "guidance", "val_auroc"))  # fixed seed: same CI every time
    with pytest.raises(BenchError, match="--group-by must be a leaderboard column"):
        group_summary(table, "colour", "val_auroc")


def test_bootstrap_ci_is_deterministic_and_degenerate_cases():
    values = [0.1, 0.5, 0.9, 0.4]
    assert bootstrap_ci(values) == bootstrap_ci(values)
    lo, hi = bootstrap_ci(values)
    assert lo < np.mean(values) < hi
    assert all(np.isnan(bootstrap_ci([0.3]))) and all(np.isnan(bootstrap_ci([])))
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)


@pytest.mark.parametrize("n", [2, 3, 5, 10, 30])
def test_bootstrap_ci_covers_its_level_at_small_n(n):
    # old code (percentile bootstrap at every n): 51% at n = 2, 74% at n = 3, 84% at n = 5, 91% at n = 10
    rng = np.random.default_rng(n)
    samples = rng.normal(0.7, 0.05, (600, n))
    covered = np.mean([lo <= 0.7 <= hi for lo, hi in (bootstrap_ci(x, resamples=400) for x in samples)])
    low = 0.95 - 3 * np.sqrt(0.95 * 0.05 / 600) - (0.02 if n >= 20 else 0.0)  # bootstrap above 20: ~0.93-0.94
    assert low <= covered <= 0.99


def test_export_writes_csv_md_and_self_contained_html(store):
    out = store / "export"
    paths = export(leaderboard("xray-heart"), "xray-heart", out)
    assert {p.name for p in paths} == {"leaderboard.csv", "leaderboard.md", "groups-guidance.csv", "report.html"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # anytime curve and per-strategy plot
    assert "Parameter importances skipped" in html and "soft_mask" in html
    assert "src=\"http" not in html  # self-contained: nothing fetched from elsewhere
    assert (out / "leaderboard.md").read_text().startswith("| rank |")


def test_learning_curve_png_and_tracker_logs_it(workdir):
    history = [{"stage": "seg", "epoch": 0, "seg_train_loss": 0.9, "seg_val_heart_dice": 0.3},
               {"stage": "cls", "epoch": 0, "cls_train_loss": 1.3, "val_auroc": 0.6},
               {"stage": "cls", "epoch": 1, "cls_train_loss": 1.1, "val_auroc": 0.7}]
    assert learning_curve_png(history)[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(BenchError, match="'stage' and 'epoch'"):
        learning_curve_png([{"loss": 1.0}])
    tracker = Tracker("xray-heart")
    run_id = tracker.start_run("t", {KIND_TAG: "trial"})
    assert tracker.log_learning_curve(run_id, history)
    assert not tracker.log_learning_curve(run_id, [])
    assert [a.path for a in tracker.client.list_artifacts(run_id)] == ["learning_curve.png"]


@pytest.mark.slow
def test_leaderboard_time_on_many_runs(workdir):
    """Scale figure: BENCH_LB_RUNS trial runs (default 10,000) bulk-inserted into a sqlite store; prints times.

    The recorded figure comes from `bench perf --suite leaderboard --param runs=10000` (results/perf/).
    """
    from bench.perf.synthetic import fill_store as bulk_fill

    n = int(os.environ.get("BENCH_LB_RUNS", "10000"))
    started = time.perf_counter()
    bulk_fill(n)
    created = time.perf_counter() - started
    started = time.perf_counter()
    table = leaderboard("xray-heart")
    elapsed = time.perf_counter() - started
    print(f"\nleaderboard over {n} runs: {elapsed:.1f} s (store filled in {created:.1f} s)")
    assert len(table) == n and table["state"].eq("PRUNED").sum() == n // 7


def test_cli_where_group_by_and_export(store, capsys):
    from bench.cli import main

    assert main(["leaderboard", "--task", "xray-heart", "--where", "guidance=soft_mask", "--group-by", "seg_loss",
                 "--format", "csv", "--export", str(store / "exp")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("seg_loss,n,mean,ci95_low,ci95_high,best") and "exported" in out
    assert (store / "exp" / "groups-seg_loss.csv").exists()
    assert main(["leaderboard", "--task", "xray-heart", "--where", "nope=1"]) == 2


def test_runs_frame_pages_through_every_run(store):
    from bench.leaderboard import api_runs_frame, runs_frame

    tracker = Tracker("xray-heart")
    flt = f"tags.`{KIND_TAG}` = 'trial'"
    paged, whole = api_runs_frame(tracker, flt, page_size=4), runs_frame(tracker, flt)
    assert len(paged) == len(whole) == 21 and set(paged["run_id"]) == set(whole["run_id"])
    assert {"params.seg_loss", "metrics.val_auroc", f"tags.{STATE_TAG}"} <= set(paged.columns)
    assert runs_frame(tracker, "tags.study = 'nope'").empty


def test_only_bench_filters_take_the_fast_path():
    from bench.store_read import is_sql, parse_filter

    assert parse_filter(f"tags.`{KIND_TAG}` = 'trial' AND params.guidance = 'soft_mask'") == [
        ("tags", KIND_TAG, "trial"), ("params", "guidance", "soft_mask")]
    assert parse_filter("") == []
    for other in ("metrics.val_auroc > 0.5", "tags.a != 'b'", "attributes.status = 'FINISHED'", "tags.a = 'b' OR x"):
        assert parse_filter(other) is None, other
    assert is_sql("sqlite:///mlflow.db") and is_sql("postgresql+psycopg2://u@h/db")
    assert not is_sql("file:///tmp/mlruns") and not is_sql("http://localhost:5000") and not is_sql("sqlite://")


def test_bulk_sql_read_matches_the_mlflow_api(store):
    from bench.leaderboard import api_runs_frame
    from bench.store_read import sql_runs_frame

    tracker = Tracker("xray-heart")
    runs = tracker.client.search_runs([tracker.experiment_id], f"tags.`{KIND_TAG}` = 'trial'", max_results=50)
    now = int(time.time() * 1000)
    # Latest value wins, NaN stays NaN, deleted runs and other experiments' runs are not read.
    tracker.client.log_batch(runs[0].info.run_id, metrics=[Metric("val_auroc", 0.123, now + 5, 3),
                                                           Metric("val_hd95", float("nan"), now, 0)])
    tracker.client.delete_run(runs[1].info.run_id)
    other = Tracker("ct-lung")
    other.client.create_run(other.experiment_id, tags={KIND_TAG: "trial"})

    def same(flt: str) -> pd.DataFrame:
        fast, api = sql_runs_frame(tracker.uri, tracker.experiment_id, flt), api_runs_frame(tracker, flt)
        assert fast is not None
        columns = sorted(api.columns)
        assert sorted(fast.columns) == columns and list(fast["run_id"]) == list(api["run_id"])
        pd.testing.assert_frame_equal(fast[columns].reset_index(drop=True), api[columns].reset_index(drop=True),
                                      check_dtype=False)
        return fast

    trials = same(f"tags.`{KIND_TAG}` = 'trial'")
    assert len(trials) == 20 and runs[1].info.run_id not in set(trials["run_id"])
    row = trials.set_index("run_id").loc[runs[0].info.run_id]
    assert row["metrics.val_auroc"] == 0.123 and np.isnan(row["metrics.val_hd95"])
    soft = same(f"tags.`{KIND_TAG}` = 'trial' AND params.guidance = 'soft_mask'")
    assert 0 < len(soft) == (trials["params.guidance"] == "soft_mask").sum()
    assert sql_runs_frame(tracker.uri, tracker.experiment_id, "metrics.val_auroc > 0.5") is None  # API path


def test_export_report_has_per_case_dice_overlays_and_anytime_over_resources(workdir):
    """Each strategy's best run contributes its per-case Dice and its overlay; resources include pruned runs."""
    import io

    from PIL import Image

    from bench.cases import CASE_FILE, case_file
    from bench.report import anytime_png, overlay_png

    tracker = Tracker("xray-heart")
    masks = np.zeros((2, 1, 16, 16))
    masks[:, :, 4:12, 4:12] = 1
    overlay = overlay_png(np.random.default_rng(0).random((2, 16, 16)), masks, masks)
    for i, (guidance, auroc, state) in enumerate([("none", 0.7, "COMPLETE"), ("soft_mask", 0.8, "COMPLETE"),
                                                  ("soft_mask", 0.6, "COMPLETE"), ("crop", 0.9, "PRUNED")]):
        run_id = tracker.start_run(f"t{i:03d}", {KIND_TAG: "trial", "trial_number": i})
        tracker.log_params(run_id, {"guidance": guidance, "seg_arch": "unet", "seg_loss": "dice"})
        tracker.log_metrics(run_id, {"val_auroc": auroc, "epochs_trained": 3 if state == "PRUNED" else 9})
        if state == "COMPLETE":
            tracker.log_bytes(run_id, CASE_FILE, case_file("val_auroc", "macro_auroc", labels=[0, 1, 1],
                                                           probs=[[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]],
                                                           val_heart_dice=[0.5, 0.75, auroc]))
            tracker.log_bytes(run_id, "overlay.png", overlay)
        tracker.end(run_id, state)
    table = leaderboard("xray-heart")
    assert (table["run_seconds"] >= 0).all() and table["epochs_trained"].sum() == 30
    html = (export(table, "xray-heart", workdir / "exp") and (workdir / "exp" / "report.html").read_text())
    # anytime, objective per strategy, per-case Dice, one overlay per strategy with a complete trial
    assert html.count("data:image/png;base64,") == 3 + 2
    assert "val_heart_dice per case per guidance" in html and "overlay, best guidance=soft_mask: t001" in html
    assert "incomplete" not in html and "best guidance=crop" not in html  # the pruned run is nobody's best
    wide = Image.open(io.BytesIO(anytime_png(table, "val_auroc", True)))
    narrow = Image.open(io.BytesIO(anytime_png(table.drop(columns=["epochs_trained", "run_seconds"]), "val_auroc",
                                               True)))
    assert wide.size[0] > 2 * narrow.size[0]  # panels over trials, epochs spent and run time spent


def test_text_table_fits_any_width_and_says_what_it_left_out():
    from bench.tables import number, render, text_table

    frame = pd.DataFrame({"run": ["t000 deeplabv3plus/log_cosh_dice/attention_loss", "t001 unet/dice/none"],
                          "state": ["COMPLETE", "PRUNED"], "val_auroc": [0.95578, float("nan")],
                          "test_shifted_attention_in_heart": [0.13330024390104994, 0.2],
                          "n_weights": [17958821.0, 9.0]}, index=pd.Index([1, 2], name="rank"))
    for width in (120, 60, 40):
        lines = text_table(frame, width).splitlines()
        assert max(map(len, lines)) <= width and lines[-1].startswith(("   2", "(")), lines
    narrow = text_table(frame, 40)
    assert "--wide" in narrow and "COMPLETE" in narrow  # columns left out are named; state is never cut
    wide = render(frame.assign(run_id="abc"), "wide")
    assert "test_shifted_attention_in_heart" in wide and "abc" not in wide and "0.1333" in wide
    assert [number(v) for v in (0.95578, 17958821.0, 9.0, 2.6937e-4, float("nan"))] == [
        "0.9558", "1.8e7", "9", "2.69e-4", "-"]
