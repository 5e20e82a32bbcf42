"""xray-heart on the public layouts: classes from the data, a smoke search, the leaderboard and a replay on
ChestX-ray14 + CheXmask, CheXpert + CheXmask and a hospital DICOM folder labelled no_finding/cardiomegaly."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.config import TrialConfig
from bench.data.cache import cache_root
from bench.data.formats.chexmask import encode_rle
from bench.data.labels import CARDIOMEGALY_CLASSES
from bench.data.sources import kept_split_path
from bench.errors import ConfigError, DataError, RegistryError, SplitError
from tests.data.conftest import CHEXMASK_COLUMNS, CHEXPERT_COLUMNS, LANDMARKS, heart_and_lungs, write_cxr14

HOSPITAL_CLASSES = ("no_finding", "cardiomegaly")


def write_chexpert_chexmask(root: Path, n_patients: int = 30, n_valid: int = 6) -> Path:
    """CheXpert-v1.0-small layout (train.csv + valid.csv + 24x32 JPEGs, one lateral and one uncertain row)
    with the CheXmask CheXpert.csv beside it (RLE at twice the JPEG size, as for the downsampled release)."""
    rng = np.random.default_rng(2)
    shape, scale = (24, 32), 2
    root.mkdir(parents=True)
    tables = {"train.csv": [(p, "1.0" if p % 3 == 0 else ("" if p % 5 == 0 else "0.0"))
                            for p in range(1, n_patients + 1)],
              "valid.csv": [(64540 + p, "1.0" if p % 2 else "0.0") for p in range(1, n_valid + 1)]}
    tables["train.csv"][1] = (2, "-1.0")  # uncertain: left out by the default policy (ignore)
    with (root / "CheXpert.csv").open("w", newline="") as fm:
        masks = csv.writer(fm)
        masks.writerow(["Path"] + CHEXMASK_COLUMNS[1:])
        for table, rows in tables.items():
            with (root / table).open("w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(CHEXPERT_COLUMNS)
                for k, (p, value) in enumerate(rows):
                    for view, frontal in ((1, True), (2, False)) if k == 0 else ((1, True),):
                        kind = "frontal" if frontal else "lateral"
                        rel = f"{table[:-4]}/patient{p:05d}/study1/view{view}_{kind}.jpg"
                        (root / rel).parent.mkdir(parents=True, exist_ok=True)
                        pixels = rng.integers(40, 200, shape, dtype=np.uint8)
                        Image.fromarray(pixels).save(root / rel, quality=95)
                        w.writerow([f"CheXpert-v1.0-small/{rel}", "Female", 60, kind.capitalize(),
                                    "PA" if frontal else "", "", "", value, "1.0"])
                        big = heart_and_lungs((shape[0] * scale, shape[1] * scale), k)
                        rles = [encode_rle(big[name]) for name in ("lung_left", "lung_right", "heart")]
                        masks.writerow([rel, 0.9, 0.85, LANDMARKS, *rles, *big["heart"].shape])
    return root


def write_hospital_dicom(root: Path) -> Path:
    """The phantom exported as a DICOM folder whose labels.csv says no_finding / cardiomegaly."""
    from bench.data.phantoms.xray import XrayPhantomSpec, export, generate

    cases = generate(XrayPhantomSpec(n_patients=30, n_shifted_patients=0, size=32, seed=5))
    relabelled = [replace(c, labels={**c.labels, "class": "no_finding" if c.labels["class"] == "normal"
                                     else "cardiomegaly"}) for c in cases]
    return export(relabelled, root, "dicom")


LAYOUTS = {  # writer, --format, the classes it resolves to, reader options (--min-dice 0.6 on the first)
    "cxr14-chexmask": (lambda root: write_cxr14(root, n_patients=40).root, "chexmask", CARDIOMEGALY_CLASSES,
                       {"min_dice": 0.6}),
    "chexpert-chexmask": (write_chexpert_chexmask, "chexmask", CARDIOMEGALY_CLASSES, {}),
    "hospital-dicom": (write_hospital_dicom, "dicom", HOSPITAL_CLASSES, {}),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))  # about 35 s each on 2 busy cores
def test_smoke_search_leaderboard_and_replay(workdir, layout):
    """`bench search --task xray-heart --data DIR --format F --preset smoke`, the leaderboard, a replay."""
    from mlflow.tracking import MlflowClient

    from bench.leaderboard import leaderboard
    from bench.replay import replay
    from bench.search.backends import run_search
    from bench.search.driver import SearchSettings

    write, fmt, classes, options = LAYOUTS[layout]
    root = write(workdir / layout)
    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=2, data=str(root),
                                        data_format=fmt, seed=1, study=layout,
                                        overrides={"reader_options": options}))
    assert summary.n_complete == 2, summary.fail_reasons

    board = leaderboard("xray-heart", study=layout)
    assert list(board.index) == [1, 2] and board["val_auroc"].iloc[0] >= board["val_auroc"].iloc[1]
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    for run_id in board["run_id"]:
        run = client.get_run(run_id)
        assert run.data.tags["classes"] == ",".join(classes)
        assert run.data.tags["positive_class"] == "cardiomegaly"
        logged = TrialConfig.from_yaml(Path(client.download_artifacts(run_id, "config.yaml", str(workdir)))
                                       .read_text())
        assert logged.classes == classes and logged.data == str(root) and logged.reader_options == options
        metrics = run.data.metrics
        scored = {f"val_recall_{c}" for c in classes} | {"val_auroc", "val_balanced_accuracy", "test_auroc"}
        assert scored <= set(metrics)
        assert not any(m.startswith(("shift_gap", "test_shifted")) for m in metrics)  # only the phantom's
    split_files = list(kept_split_path("xray-heart", "x").parent.glob(f"xray-heart-{layout}-*.json"))
    assert len(split_files) == 1 and json.loads(split_files[0].read_text())["classes"] == list(classes)

    verdict = replay("xray-heart", study=layout)
    assert verdict.verdict == "reproduced" and verdict.difference == 0.0
    assert verdict.original_run_id == board["run_id"].iloc[0]
    if layout == "cxr14-chexmask":  # the logged weights, rebuilt with two outputs, give the objective back
        rescored = replay("xray-heart", study=layout, checkpoint=True)
        assert rescored.mode == "checkpoint" and rescored.difference == 0.0


def _prepare(folder, fmt, **config):
    from bench.tasks.xray_heart import prepare

    return prepare(TrialConfig(task="xray-heart", data=str(folder), data_format=fmt, task_params={"image_size": 16}, **config))


def _all_labels(data) -> dict[str, int]:
    labels = np.concatenate([part.per_case("label") for part in data.parts.values()])
    return {name: int((labels == k).sum()) for k, name in enumerate(data.classes)}


def test_classes_come_from_the_data_or_fix_their_order(tmp_path):
    root = write_hospital_dicom(tmp_path / "dicom")
    data = _prepare(root, "dicom")
    assert data.classes == HOSPITAL_CLASSES  # the negative-sounding name first: cardiomegaly is positive
    counts = _all_labels(data)
    again = _prepare(root, "dicom", classes=["cardiomegaly", "no_finding"])
    assert again.classes == ("cardiomegaly", "no_finding") and _all_labels(again) == counts
    with pytest.raises(DataError, match=r"labels\.csv.*'cardiomegaly'"):
        _prepare(root, "dicom", classes=["no_finding", "effusion"])


def test_split_records_the_classes_and_each_order_has_its_own(tmp_path):
    root = write_hospital_dicom(tmp_path / "dicom")
    first = _prepare(root, "dicom")
    folder = kept_split_path("xray-heart", "x").parent
    (own,) = folder.glob("xray-heart-dicom-*.json")
    assert json.loads(own.read_text())["classes"] == list(HOSPITAL_CLASSES)
    same_order = _prepare(root, "dicom", classes=list(HOSPITAL_CLASSES))
    assert same_order.split_hash == first.split_hash
    reordered = _prepare(root, "dicom", classes=["cardiomegaly", "no_finding"])
    (other,) = set(folder.glob("xray-heart-dicom-*.json")) - {own}
    assert json.loads(other.read_text())["classes"] == ["cardiomegaly", "no_finding"]
    assert reordered.split_hash != first.split_hash  # the hash pins the label order a trial trained on
    assert len([p for p in cache_root().iterdir() if not p.name.startswith(".")]) == 1  # one cache for all
    assert _prepare(root, "dicom").split_hash == first.split_hash
    data = json.loads(own.read_text())
    own.write_text(json.dumps({**data, "classes": ["cardiomegaly", "no_finding"], "sha256": ""}))
    with pytest.raises(SplitError, match="same order"):  # a split file whose class order is not the trial's
        _prepare(root, "dicom")


def test_a_single_class_folder_is_refused(tmp_path):
    from bench.data.phantoms.xray import XrayPhantomSpec, export, generate

    cases = [replace(c, labels={**c.labels, "class": "normal"})
             for c in generate(XrayPhantomSpec(n_patients=6, n_shifted_patients=0, size=32))]
    with pytest.raises(DataError, match=r"at least two classes, but it has only \['normal'\]"):
        _prepare(export(cases, tmp_path / "png", "png"), "png")


def test_reader_options_choose_the_cases_and_their_split(tmp_path):
    written = write_cxr14(tmp_path / "cxr14", n_patients=40, quality=lambda k: 0.5 if k % 4 == 0 else 0.9)
    default = _prepare(written.root, "chexmask")
    loose = _prepare(written.root, "chexmask", reader_options={"min_dice": 0.4})
    assert sum(_all_labels(loose).values()) == len(written.label)  # every image, none below the bar
    assert sum(_all_labels(default).values()) == len(written.label) - len(range(0, len(written.label), 4))
    assert default.classes == loose.classes == CARDIOMEGALY_CLASSES and default.split_hash != loose.split_hash
    with pytest.raises(RegistryError, match=r"takes parameters .*min_dice"):
        _prepare(written.root, "chexmask", reader_options={"min_dcie": 0.4})
    with pytest.raises(ConfigError, match="phantom has none"):
        _prepare("phantom", "phantom", reader_options={"min_dice": 0.4})


@pytest.mark.parametrize("fmt, table", [("chestxray14", "ChestX-Ray8.csv"), ("chexpert", "CheXpert.csv")])
def test_image_sets_without_masks_are_refused_with_the_way_out(tmp_path, fmt, table):
    from bench.tasks import TASKS

    formats = TASKS.get("xray-heart").formats
    assert "chexmask" in formats and fmt not in formats
    with pytest.raises(RegistryError, match=rf"no heart masks.*{table}.*--format chexmask"):
        _prepare(tmp_path, fmt)


def test_config_keeps_old_hashes_and_round_trips_classes():
    old = TrialConfig(task="xray-heart", seg_arch="fpn", guidance_params={"floor": 0.2}, split_hash="abc")
    assert old.config_hash() == "41b3e5558da6c3ec"  # its hash before classes/reader_options existed
    assert TrialConfig.from_yaml("task: xray-heart\nseg_arch: fpn\n").classes == ()
    new = old.replace(classes=["no_finding", "cardiomegaly"], reader_options={"min_dice": 0.8})
    assert new.classes == HOSPITAL_CLASSES and new.flat()["reader_options.min_dice"] == 0.8
    assert TrialConfig.from_flat(new.flat()) == new == TrialConfig.from_yaml(new.to_yaml())
    reordered = old.replace(classes=list(HOSPITAL_CLASSES[::-1]))
    assert len({new.config_hash(), old.config_hash(), reordered.config_hash()}) == 3
    for bad in (["a"], ["a", "a"], ["a", ""], 3):
        with pytest.raises(ConfigError, match="'classes' must be empty"):
            TrialConfig(task="xray-heart", classes=bad)


def test_binary_case_statistic_is_the_positive_class_auroc():
    """val_cases.json's macro_auroc statistic, on two classes, is class 1's AUROC (what val_auroc logs)."""
    from sklearn.metrics import roc_auc_score

    from bench.cases import CASE_STATISTICS
    from bench.metrics import macro_auroc

    rng = np.random.default_rng(0)
    logits = np.round(rng.normal(size=(60, 2)), 1).astype(np.float32)  # rounded: many tied scores
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 2, 60)
    statistic = CASE_STATISTICS.get("macro_auroc")({"probs": probs, "labels": labels}, np.arange(60)[None])[0]
    assert statistic == pytest.approx(roc_auc_score(labels, probs[:, 1]), abs=1e-12)
    assert macro_auroc(probs, labels) == pytest.approx(statistic, abs=1e-12)


def test_datasets_split_and_inspect_take_the_reader_options_searches_use(workdir, capsys):
    """`bench datasets split --min-dice X` writes the split a search with `--min-dice X` then uses, and
    `inspect` reads the same cases; the options belong to xray-heart's data only."""
    from bench.cli import main

    written = write_cxr14(workdir / "cxr14", n_patients=40, quality=lambda k: 0.5 if k % 4 == 0 else 0.9)
    root = str(written.root)
    assert main(["datasets", "split", root, "--task", "xray-heart", "--format", "chexmask", "--min-dice", "0.4"]) == 0
    (kept,) = kept_split_path("xray-heart", "x").parent.glob("xray-heart-*.json")
    loose = _prepare(written.root, "chexmask", reader_options={"min_dice": 0.4})
    assert loose.split_hash == json.loads(kept.read_text())["sha256"]  # the search found the written split
    capsys.readouterr()
    assert main(["datasets", "inspect", root, "--task", "xray-heart", "--format", "chexmask", "--min-dice", "0.4",
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == len(written.label) and report["split"]["file"] == str(kept)
    assert main(["datasets", "inspect", root, "--task", "xray-heart", "--format", "chexmask", "--min-dice", "0.4",
                 "--classes", "no_finding,effusion"]) == 2  # a label outside the list stops the read: one line
    assert main(["datasets", "split", "phantom", "--task", "ct-lung", "--min-dice", "0.4"]) == 2
    assert "--min-dice must be data options of task ct-lung" in capsys.readouterr().err
