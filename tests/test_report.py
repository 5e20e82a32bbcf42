"""The exported report reads top-down, the search run's description is its leaderboard, and replay says its
progress with the recorded values; on a real sqlite MLflow store (no training)."""

from __future__ import annotations

import re
import time

import numpy as np
import pandas as pd
from mlflow.entities import Metric

from bench.cases import CASE_FILE, case_file
from bench.leaderboard import export, leaderboard
from bench.replay import ReplayProgress
from bench.report import Figure, html_report, html_table, overlay_png
from bench.search.driver import search_description
from bench.tracking import KIND_TAG, Tracker

STUDY = "report-study"


def make_search(seconds: float = 42.0) -> tuple[Tracker, str, list[str]]:
    """A finished search run and four trials (three complete, one pruned) with per-case files and overlays."""
    tracker = Tracker("xray-heart")
    parent = tracker.start_run(f"search {STUDY}", {KIND_TAG: "search", "study": STUDY, "split_hash": "ab" * 32})
    masks = np.zeros((2, 1, 16, 16))
    masks[:, :, 4:12, 4:12] = 1
    overlay = overlay_png(np.random.default_rng(0).random((2, 16, 16)), masks, masks)
    runs = []
    for i, (guidance, auroc, state) in enumerate([("none", 0.71234567, "COMPLETE"), ("soft_mask", 0.83336, "COMPLETE"),
                                                  ("soft_mask", 0.6, "COMPLETE"), ("crop", 0.9, "PRUNED")]):
        run_id = tracker.start_run(f"t{i:03d} unet/dice/{guidance}", {KIND_TAG: "trial", "trial_number": i,
                                                                      "study": STUDY}, parent)
        tracker.log_params(run_id, {"guidance": guidance, "seg_arch": "unet", "seg_loss": "dice", "data": "phantom",
                                    "data_format": "phantom", "fold": 0, "split_hash": "ab" * 32})
        tracker.log_metrics(run_id, {"val_auroc": auroc, "test_shifted_attention_in_heart": 0.13330024390104994,
                                     "n_weights": 17958821.0, "epochs_trained": 9})
        if state == "COMPLETE":
            tracker.log_bytes(run_id, CASE_FILE, case_file("val_auroc", "macro_auroc", labels=[0, 1, 1],
                                                           probs=[[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]],
                                                           val_heart_dice=[0.5, 0.75, auroc]))
            tracker.log_bytes(run_id, "overlay.png", overlay)
        tracker.end(run_id, state)
        runs.append(run_id)
    tracker.log_metrics(parent, {"seconds": seconds})
    tracker.end(parent, "COMPLETE")
    return tracker, parent, runs


def test_report_reads_top_down_with_formatted_numbers_and_captions(workdir):
    make_search(seconds=42.0)
    export(leaderboard("xray-heart"), "xray-heart", workdir / "exp")
    html = (workdir / "exp" / "report.html").read_text()
    order = ["<dl class='headline'>", "<h2>Top 4 trials</h2>", "<h2>Strategies (guidance)</h2>", "<h2>Figures</h2>",
             "<h2>Notes</h2>", "<h2>All 4 trials, every column</h2>"]
    positions = [html.index(marker) for marker in order]
    assert positions == sorted(positions)
    headline = html[positions[0]:positions[1]]
    for label, value in (("task", "xray-heart"), ("objective", "best 0.8334 by t001 unet/dice/soft_mask"),
                         ("data", "built-in phantom, fold 0"), ("split hash", "ab" * 32),
                         ("trials", "4 (3 complete, 1 pruned)"), ("wall time", "42 s (1 search)")):
        assert f"<dt>{label}</dt><dd>" in headline and value in headline, (label, headline)
    # numbers as the terminal prints them, never raw floats; no pandas index column
    assert "0.13330024390104994" not in html and "0.1333" in html and "1.8e7" in html
    assert "17958821.0" not in html and 'class="dataframe"' not in html
    # every figure has a caption; overlays name the strategy, the trial and its objective
    assert html.count("<figure") == html.count("<figcaption>") == 5  # anytime, per guidance, per case, 2 overlays
    caption = re.search(r"overlay, best guidance=soft_mask: t001 unet/dice/soft_mask</b>([^<]*)", html).group(1)
    assert "best complete trial with guidance=soft_mask (val_auroc 0.8334)" in caption and "green" in caption
    assert "No CI for guidance none: a single complete trial (n = 1)" in html


def test_html_table_formats_numbers_and_keeps_a_named_index():
    frame = pd.DataFrame({"run": ["t000"], "val_auroc": [0.95578], "lr": [0.00026937], "n": [float("nan")]},
                         index=pd.Index([1], name="rank"))
    text = html_table(frame)
    assert "<th>rank</th>" in text and '<td class="num">0.9558</td>' in text and "2.69e-4" in text
    assert '<td class="num">-</td>' in text
    plain = html_table(frame.reset_index(drop=True))
    assert "<th>rank</th>" not in plain and "<th></th>" not in plain


def test_html_report_puts_the_headline_first_and_the_full_table_last():
    table = pd.DataFrame({"run": ["t000", "t001"], "val_auroc": [0.9, 0.8]}, index=pd.Index([1, 2], name="rank"))
    html = html_report("t", {"task": "xray-heart"}, table.head(1), None,
                       [Figure("anytime", b"\x89PNG", "best so far against trials")], ["a note"], table)
    assert html.index("<dt>task</dt>") < html.index("Top 1 trials") < html.index("<figcaption>") \
        < html.index("a note") < html.index("All 2 trials")
    assert "best so far against trials" in html


def test_search_description_is_the_top_trials_in_markdown_with_links(workdir):
    tracker, _, runs = make_search()
    text = search_description("xray-heart", STUDY, tracker.experiment_id, 42.0, top=2)
    lines = text.splitlines()
    assert lines[0].startswith(f"**Leaderboard of study {STUDY}** (xray-heart): top 2 of 4 trials")
    assert "best first by **val_auroc** (higher is better); 3 complete, 42 s." in lines[0]
    assert lines[2].startswith("| rank | run | state | val_auroc |")
    assert f"| 1 | [t001 unet/dice/soft_mask](#/experiments/{tracker.experiment_id}/runs/{runs[1]}) |" in text
    assert "0.8334" in text and len([line for line in lines if line.startswith("| ")]) == 3  # header + 2 rows


def test_replay_progress_says_stage_epoch_and_the_recorded_value(workdir):
    tracker = Tracker("xray-heart")
    original = tracker.start_run("t000", {KIND_TAG: "trial"})
    now = int(time.time() * 1000)
    tracker.client.log_batch(original, metrics=[Metric("seg_train_loss", 0.5, now, 0),
                                                Metric("seg_train_loss", 0.25, now + 1, 1)])
    lines: list[str] = []

    class Config:
        seg_epochs = 3

    progress = ReplayProgress(lines.append, Config(), tracker, original)
    progress.log({"seg_train_loss": 0.5, "seg_val_heart_dice": 0.4}, step=0)
    progress.log({"seg_train_loss": 0.2500001}, step=1)
    progress.log({"cls_train_loss": 1.0}, step=0)
    assert lines == ["seg epoch 1/3: seg_train_loss 0.5 (recorded 0.5), seg_val_heart_dice 0.4",
                     "seg epoch 2/3: seg_train_loss 0.25 (recorded 0.25)",
                     "cls epoch 1: cls_train_loss 1"]
    assert progress.report(0.5, 0) is False
