"""`bench predict` and `bench register`: self-describing trial models (model.json), predictions on new images
(fold ensembles, masks on the input's grid, bad images), the MLflow pyfunc model in a fresh process, and
(slow) predictions on a searched phantom's validation cases equal to what the trial scored."""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import model_file
from bench.config import TrialConfig
from bench.model_file import FoldModel
from bench.predict import TrialModel, predict, predictor_for

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("normal", "VSD", "ASD", "TOF")


# --- models without training: real weights of freshly built networks -------------------------------------
def xray_fold(fold: int, seed: int, legacy: bool = False) -> FoldModel:
    from bench.tasks.xray_heart.pipeline import checkpoint_models, model_info

    config = TrialConfig(task="xray-heart", seg_arch="unet", guidance="soft_mask", classes=CLASSES, fold=fold,
                         task_params={"image_size": 32})
    torch.manual_seed(seed)
    weights = {k: m.state_dict() for k, m in checkpoint_models(config).items()}
    manifest = model_file.from_legacy(config) if legacy else model_file.manifest(config, model_info(config, CLASSES))
    return FoldModel(fold, weights, json.loads(model_file.dumps(manifest)), f"run{fold}")


def seg_folds(n: int = 1) -> list[FoldModel]:
    from bench.data.phantoms.organ import ORGAN_LABELS
    from bench.tasks.seg_engine.nets import build_seg_net
    from bench.tasks.segmentation.data import SegData
    from bench.tasks.segmentation.pipeline import model_info
    from bench.tasks.segmentation.spec import SMOKE_PARAMS

    folds = []
    for fold in range(n):
        config = TrialConfig(task="segmentation", seg_arch="monai_unet", guidance="restrict_output", fold=fold,
                             task_params=dict(SMOKE_PARAMS))
        data = SegData("", (2.0, 1.5, 1.5), {}, channels=("T1",), dims=3, target="lesion", guide="organ",
                       labels=dict(ORGAN_LABELS), ct_stats=[])
        info = model_info(config, data, "3d", 1)
        torch.manual_seed(fold)
        weights = {name: build_seg_net(entry["name"], entry["args"]["in_channels"], "3d",
                                       width=entry["args"]["width"], patch=tuple(entry["args"]["patch"])).state_dict()
                   for name, entry in info["models"].items()}
        manifest = json.loads(model_file.dumps(model_file.manifest(config, info)))
        folds.append(FoldModel(fold, weights, manifest, f"run{fold}"))
    return folds


def write_png(path: Path, seed: int, shape=(40, 48)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 65535, shape, dtype=np.uint16)
    Image.fromarray(pixels).save(path)
    return path


def image_folder(root: Path, n: int = 3, bad: bool = False) -> Path:
    for k in range(n):
        write_png(root / f"img{k}.png", k, shape=(40 + 4 * k, 48))
    if bad:
        (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    return root


# --- model.json ------------------------------------------------------------------------------------------
def test_manifest_round_trips_and_old_runs_get_one_from_their_config():
    fold = xray_fold(0, 0)
    content = model_file.loads(model_file.dumps(fold.manifest), "m")
    assert content["format"] == model_file.FORMAT and content["classes"] == list(CLASSES)
    assert content["models"]["segmenter"]["name"] == "unet" and content["preprocessing"]["image_size"] == 32
    assert model_file.config_of(content, "m") == fold.config
    legacy = xray_fold(0, 0, legacy=True)
    assert legacy.legacy and legacy.config == fold.config
    with pytest.raises(Exception, match="bench model file"):
        model_file.loads(json.dumps({"format": "other"}), "m.json")


def test_an_old_run_predicts_as_a_new_one(tmp_path):
    data = image_folder(tmp_path / "images", n=2)
    new, old = predictor_for(TrialModel("xray-heart", "r", [xray_fold(0, 5)], {}, {})), \
        predictor_for(TrialModel("xray-heart", "r", [xray_fold(0, 5, legacy=True)], {}, {}))
    for item in new.inputs(data):
        assert np.array_equal(new.predict(item).probs, old.predict(item).probs)


# --- ensembles -------------------------------------------------------------------------------------------
def test_xray_ensemble_is_the_mean_of_its_fold_models(tmp_path):
    data = image_folder(tmp_path / "images", n=3)
    folds = [xray_fold(k, seed=10 + k) for k in range(3)]
    both = predictor_for(TrialModel("xray-heart", "r", folds, {}, {}))
    singles = [predictor_for(TrialModel("xray-heart", "r", [f], {}, {})) for f in folds]
    for item in both.inputs(data):
        got = both.predict(item)
        each = [p.predict(item) for p in singles]
        assert not np.allclose(each[0].probs, each[1].probs)  # different models: the mean means something
        np.testing.assert_allclose(got.probs, np.mean([e.probs for e in each], axis=0), rtol=0, atol=1e-12)
        np.testing.assert_allclose(got.heart_prob, np.mean([e.heart_prob for e in each], axis=0), rtol=0, atol=1e-12)
        assert got.heart.shape == np.asarray(each[0].heart).shape


def test_segmentation_ensemble_is_the_mean_of_its_fold_models(tmp_path):
    folder = oblique_case(tmp_path / "in", "case_0000.nii.gz")
    folds = seg_folds(2)
    both = predictor_for(TrialModel("segmentation", "r", folds, {}, {}))
    singles = [predictor_for(TrialModel("segmentation", "r", [f], {}, {})) for f in folds]
    (item,) = both.inputs(folder)
    got = both.predict(item)
    each = [p.predict(item) for p in singles]
    for key in ("target", "guide"):
        np.testing.assert_allclose(got.probs[key], (each[0].probs[key] + each[1].probs[key]) / 2, rtol=0, atol=1e-12)


# --- output grids ----------------------------------------------------------------------------------------
def oblique_case(folder: Path, name: str, shape=(36, 30, 9), zooms=(0.9, 1.3, 4.0)) -> Path:
    """One anisotropic NIfTI with an oblique affine (rotated about two axes), qform and sform set."""
    import nibabel as nib

    a, b = math.radians(20), math.radians(10)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag(zooms)
    affine[:3, 3] = (-20.0, 15.0, -7.5)
    data = np.random.default_rng(0).normal(100, 20, shape).astype(np.float32)
    image = nib.Nifti1Image(data, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=2)
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(folder / name))
    return folder


def test_segmentation_masks_lie_on_the_input_grid(tmp_path):
    import nibabel as nib

    folder = oblique_case(tmp_path / "in", "case_0000.nii.gz")
    out = tmp_path / "out"
    summary = predict("segmentation", folder, out, model=TrialModel("segmentation", "r", seg_folds(1), {}, {}))
    assert summary.ok and [r["id"] for r in summary.rows] == ["case"]
    given, written = nib.load(str(folder / "case_0000.nii.gz")), nib.load(str(out / "case.nii.gz"))
    assert written.shape == given.shape  # the plan's 1.5 x 1.5 x 2 mm grid was resampled back
    np.testing.assert_allclose(written.affine, given.affine, atol=1e-6)
    np.testing.assert_allclose(written.get_qform(), given.get_qform(), atol=1e-6)
    np.testing.assert_allclose(written.header.get_zooms(), given.header.get_zooms())
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 2)
    values = set(np.unique(np.asarray(written.dataobj)).tolist())
    assert values <= {0, 1, 2}  # dataset.json's label values: background, organ, lesion
    assert sorted(p.name for p in out.iterdir()) == ["case.nii.gz", "volumes.csv"]  # no temporary names left


# --- bad images, the CLI, the registered model -----------------------------------------------------------
@pytest.fixture
def xray_run(workdir):
    """A COMPLETE xray-heart trial run in the store with real (untrained) weights and model.json."""
    from bench.tasks.xray_heart.pipeline import model_info
    from bench.tracking import Tracker

    fold = xray_fold(0, 3)
    tracker = Tracker("xray-heart")
    run_id = tracker.start_trial(None, "t000", fold.config, {"study": "s"})
    tracker.log_trial_artifacts(run_id, fold.config, fold.weights, model=model_info(fold.config, CLASSES))
    tracker.log_metrics(run_id, {"val_auroc": 0.5})
    tracker.end(run_id, "COMPLETE")
    return run_id


def test_bad_image_is_one_line_the_rest_are_predicted_and_exit_1(xray_run, workdir, capsys):
    from bench.cli import main

    data = image_folder(workdir / "new", n=2, bad=True)
    out = workdir / "preds"
    assert main(["predict", "--task", "xray-heart", "--data", str(data), "--out", str(out),
                 "--run-id", xray_run]) == 1
    err = capsys.readouterr().err
    bad = [line for line in err.splitlines() if "broken.png" in line]
    assert len(bad) == 1 and "skipped" in bad[0] and "Traceback" not in err
    with (out / "predictions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["img0", "img1"]
    assert list(rows[0])[:6] == ["id", *[f"prob_{c}" for c in CLASSES], "predicted"]
    assert all(math.isclose(sum(float(r[f"prob_{c}"]) for c in CLASSES), 1.0, abs_tol=1e-5) for r in rows)
    from PIL import Image

    with Image.open(out / "masks" / "img1.png") as mask:
        assert mask.size == (48, 44)  # the image's own size (w, h)
    assert not [p for p in out.rglob(".*")]  # nothing half-written


@pytest.mark.slow  # a fresh Python importing MLflow and torch (~25 s on a loaded 2-core box)
def test_registered_model_loads_and_predicts_in_a_fresh_process(xray_run, workdir):
    from bench.predict.register import register
    from bench.tracking import Tracker

    data = image_folder(workdir / "new", n=2)
    done = register("xray-heart", "heart", run_id=xray_run, example=data / "img0.png")
    assert str(done) == "heart version 1"
    version = Tracker("xray-heart").client.get_model_version("heart", "1")
    assert version.run_id == xray_run and version.tags["metric.val_auroc"] == "0.5" and version.tags["folds"] == "0"
    paths = [str(data / "img0.png"), str(data / "img1.png")]
    code = ("import json, mlflow, pandas\n"
            "m = mlflow.pyfunc.load_model('models:/heart/latest')\n"
            f"rows = m.predict(pandas.DataFrame({{'image': {paths!r}}}))\n"
            "print(json.dumps(rows.to_dict(orient='records')))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}"}
    done = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r["id"] for r in rows] == ["img0", "img1"] and all(r["error"] == "" for r in rows)
    here = predictor_for(TrialModel("xray-heart", xray_run, [xray_fold(0, 3)], {}, {}))
    for row, path in zip(rows, paths):
        expected = here.predict(here.item(Path(path))).probs
        np.testing.assert_allclose([row[f"prob_{c}"] for c in CLASSES], expected, rtol=0, atol=1e-9)


# --- what the trial scored (a search each) ---------------------------------------------------------------
def _val_ids(task: str, fold: int) -> tuple[str, ...]:
    from bench.data.splits import load_split

    (path,) = glob.glob(f".bench/splits/{task}-*.json")
    return load_split(path).part("val", fold)


def _runs(task: str, kind: str):
    from bench.tracking import Tracker

    tracker = Tracker(task)
    return tracker, sorted(tracker.search(f"tags.`bench.kind` = '{kind}'"),
                           key=lambda r: int(r.data.tags.get("fold", 0)))


@pytest.mark.slow  # a two-fold smoke search (~1-2 min on a loaded 2-core box)
def test_xray_predictions_are_what_each_fold_scored_and_the_default_is_their_ensemble(workdir, capsys):
    from bench.cli import main

    data = workdir / "xr"
    assert main(["datasets", "make-phantom", "--task", "xray-heart", "--format", "png", "--cases", "16",
                 "--out", str(data)]) == 0
    assert main(["search", "--task", "xray-heart", "--preset", "smoke", "--trials", "1", "--folds", "2",
                 "--data", str(data), "--format", "png"]) == 0
    tracker, folds = _runs("xray-heart", "fold")
    assert len(folds) == 2
    for k, run in enumerate(folds):
        manifest = model_file.loads(tracker.read_artifact(run.info.run_id, "model.json"), "model.json")
        assert manifest["classes"] == list(CLASSES) and set(manifest["models"]) == {"segmenter", "classifier"}
        out = workdir / f"fold{k}"
        assert main(["predict", "--task", "xray-heart", "--data", str(data), "--out", str(out),
                     "--folds", str(k)]) == 0
        with (out / "predictions.csv").open() as fh:
            rows = {r["id"]: r for r in csv.DictReader(fh)}
        scored = json.loads(tracker.read_artifact(run.info.run_id, "val_cases.json"))["fields"]["probs"]
        got = [[float(rows[i][f"prob_{c}"]) for c in CLASSES] for i in _val_ids("xray-heart", k)]
        # the trial scored its validation images in batches, predict one at a time: float32 sums only
        np.testing.assert_allclose(got, scored, rtol=0, atol=1e-5)
    assert main(["predict", "--task", "xray-heart", "--data", str(data), "--out", str(workdir / "both")]) == 0
    assert "2 fold models" in capsys.readouterr().out
    with (workdir / "fold0" / "predictions.csv").open() as a, (workdir / "fold1" / "predictions.csv").open() as b, \
            (workdir / "both" / "predictions.csv").open() as c:
        for r0, r1, r in zip(csv.DictReader(a), csv.DictReader(b), csv.DictReader(c)):
            for cls in CLASSES:
                key = f"prob_{cls}"
                assert float(r[key]) == pytest.approx((float(r0[key]) + float(r1[key])) / 2, abs=1e-9)


# a one-trial smoke search on the organ phantom (~10 s here)
def test_segmentation_masks_are_what_the_trial_scored(workdir):
    import nibabel as nib

    from bench.cli import main
    from bench.tasks.seg_engine.training import infer
    from bench.tasks.segmentation.data import prepare
    from bench.tasks.segmentation.predict import Predictor

    folder = workdir / "Dataset501_Organ"
    assert main(["datasets", "make-phantom", "--task", "segmentation", "--format", "nnunet", "--cases", "12",
                 "--out", str(folder)]) == 0
    assert main(["search", "--task", "segmentation", "--preset", "smoke", "--trials", "1", "--data",
                 str(folder)]) == 0
    _, (run,) = _runs("segmentation", "trial")
    out = workdir / "preds"
    assert main(["predict", "--task", "segmentation", "--data", str(folder / "imagesTr"), "--out", str(out)]) == 0
    # what the trial scored: its own inference on its own preprocessed validation volumes
    from bench.predict.model import from_store

    model = from_store("segmentation", run.info.run_id)
    predictor = Predictor(model.folds)
    (fold,) = predictor.folds
    data = prepare(model.config)
    from bench.guidance import LESION_GUIDANCE
    from bench.tasks.segmentation.pipeline import SegVolumes

    val = data.parts["val"]
    organs = infer(fold.guide_net, SegVolumes(LESION_GUIDANCE.create("none"), val, "guide", None), fold.guide_window)
    lesions = infer(fold.target_net, SegVolumes(fold.guide_strategy, val, "target", organs), fold.target_window,
                    fold.threshold)
    for case_id, organ, lesion in zip(_val_ids("segmentation", 0), organs, lesions):
        written = np.asarray(nib.load(str(out / f"{case_id}.nii.gz")).dataobj).transpose(2, 1, 0)
        assert written.shape == lesion.shape  # the phantom's volumes share one grid: no resampling, no padding
        assert np.array_equal(written == 2, lesion.astype(bool))
        assert np.array_equal(written > 0, organ.astype(bool) | lesion.astype(bool))


def test_leaderboard_ends_with_the_predict_command_of_the_best_trial(xray_run, capsys):
    from bench.cli import main

    assert main(["leaderboard", "--task", "xray-heart"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-3] == "Use the best trial:"
    assert lines[-2] == f"  bench predict --task xray-heart --run-id {xray_run} --data IMAGES --out PREDICTIONS"
    assert lines[-1] == f"  bench register --task xray-heart --run-id {xray_run} --name NAME"
    assert max(len(line) for line in lines) <= 120
    assert main(["leaderboard", "--task", "xray-heart", "--format", "csv"]) == 0
    assert "bench predict" not in capsys.readouterr().out  # CSV stays a table


def ct_fold(fold: int = 0) -> FoldModel:
    """A ct-lung fold model with real (untrained) weights; its plan is its config (spacing, windows)."""
    from bench.tasks.ct_lung.spec import SMOKE_PARAMS
    from bench.tasks.seg_engine.nets import build_seg_net

    params = {k: v for k, v in SMOKE_PARAMS.items() if k in ("spacing", "patch", "infer_roi", "width")}
    config = TrialConfig(task="ct-lung", seg_arch="monai_unet", guidance="none", fold=fold, task_params=params)
    torch.manual_seed(fold)
    patch = tuple(params["patch"])
    weights = {"lung_segmenter": build_seg_net("monai_unet", 1, "3d", width=params["width"], patch=patch).state_dict(),
               "lesion_segmenter": build_seg_net("monai_unet", 1, "3d", width=params["width"], patch=patch).state_dict()}
    return FoldModel(fold, weights, model_file.from_legacy(config), f"run{fold}")


def test_ct_lung_masks_lie_on_the_input_grid(tmp_path):
    import nibabel as nib

    folder = oblique_case(tmp_path / "in", "scan.nii.gz")
    out = tmp_path / "out"
    summary = predict("ct-lung", folder, out, model=TrialModel("ct-lung", "r", [ct_fold(0)], {}, {}))
    assert summary.ok and [r["id"] for r in summary.rows] == ["scan"]
    given = nib.load(str(folder / "scan.nii.gz"))
    for name in ("lung", "lesion"):
        written = nib.load(str(out / f"scan_{name}.nii.gz"))
        assert written.shape == given.shape  # the trial's 10 x 8 x 8 mm grid was resampled back
        np.testing.assert_allclose(written.affine, given.affine, atol=1e-6)
        assert set(np.unique(np.asarray(written.dataobj)).tolist()) <= {0, 1}


@pytest.mark.slow  # registers, then starts `mlflow models serve` (~30-60 s on a loaded 2-core box)
def test_mlflow_models_serve_answers_a_post_with_the_same_rows(xray_run, workdir):
    import signal
    import socket
    import time
    import urllib.request

    from bench.predict.register import register

    data = image_folder(workdir / "new", n=2)
    register("xray-heart", "heart", run_id=xray_run, example=data / "img0.png")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/heart/latest",
                               "--env-manager", "local", "-p", str(port)], cwd=workdir, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        body = json.dumps({"dataframe_split": {"columns": ["image"],
                                               "data": [[str(data / "img0.png")], [str(data / "img1.png")]]}})
        deadline, answer = time.monotonic() + 240, None
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", body.encode(),
                                                 {"Content-Type": "application/json"})
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read().decode().replace("NaN", "null"))
            except OSError:
                time.sleep(2)
        assert answer is not None, "the server never answered"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    rows = answer["predictions"]
    here = predictor_for(TrialModel("xray-heart", xray_run, [xray_fold(0, 3)], {}, {}))
    assert [r["id"] for r in rows] == ["img0", "img1"]
    for row, name in zip(rows, ("img0.png", "img1.png")):
        expected = here.predict(here.item(data / name)).probs
        np.testing.assert_allclose([row[f"prob_{c}"] for c in CLASSES], expected, rtol=0, atol=1e-9)
