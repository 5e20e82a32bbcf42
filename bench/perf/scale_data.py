"""Data at scale: one xray-heart trial on phantom PNG folders of growing size (issue 22).

For each patient count N: ``bench datasets make-phantom --task xray-heart --cases N`` (a fresh process,
timed), the cache build (``prepare`` in a fresh process: images decoded, resized and written row by row;
its rate in images/s), then one trial at fixed epochs in a fresh process whose peak resident memory
(``VmHWM``) is the figure. On a CPU machine the loader reads batches in the trial's process (no workers),
so VmHWM is the whole trial's memory. At the smallest N the training loop is also timed back to back with
the data streamed from the cache, in memory, and streamed again (images/s, same batches, on a fixed subset of
``ab_train_cases`` training images: images/s is the figure, not the epoch), the A/B the goal names.
``ab_only`` runs just that A/B (phantom and cache included) at each N, e.g. the 1,000-patient A/B alone:

    bench perf --suite scale-data --out results/perf/scale-data --param 'patients=[1000]' --param ab_only=true

Goals: peak memory grows by at most 10% from the smallest to the largest N and stays at most 3.29 GB (the
in-memory path's figure at 1,000 patients); streamed training images/s within 10% of in-memory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.errors import ConfigError
from bench.perf._common import cpu_count

BASELINE_GB = {1000: 3.29, 4000: 4.49}  # the in-memory path, issue 22 (cpu preset search, 128 px, 1 + 1 epochs)

_TRIAL = """
import dataclasses, json, sys, time, torch
from bench import runtime
from bench.config import TrialConfig
from bench.trial import run_trial
from bench.tasks.xray_heart.data import prepare
cfg = TrialConfig.from_dict(json.loads(sys.argv[1]))
what = sys.argv[2]
runtime.activate(dataclasses.replace(runtime.Runtime.choose(), data_placement=sys.argv[3]))
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
t = time.perf_counter()
data = prepare(cfg)
out = {"prepare_s": time.perf_counter() - t, "images": sum(len(p) for p in data.parts.values()),
       "train_images": len(data.parts["train"]), "after_prepare_mb": hwm()}
if what == "trial":
    t = time.perf_counter()
    r = run_trial(cfg)
    out.update(trial_s=time.perf_counter() - t, val_auroc=r.objective, data=r.tags.get("bench.runtime.data"),
               data_bytes=int(r.tags.get("bench.runtime.data_bytes", 0)))
elif what == "ab":
    from bench.tasks.xray_heart.pipeline import build_models
    from bench.losses import SEG_LOSSES
    from bench.train import fit
    epochs = int(sys.argv[4])  # the first is a warm-up; images/s over the others
    train = data.parts["train"].select("image", "heart")
    loss = SEG_LOSSES.create("dice")
    for label, rows in (("stream", train), ("memory", train.in_memory()), ("stream_again", train)):
        seg = build_models(cfg, 2)[0]
        times = [time.perf_counter()]
        fit(seg, lambda m, b: loss(m(b["image"]), b["heart"]), rows, epochs=epochs, batch_size=cfg.batch_size,
            lr=1e-3, optimiser="adam", seed=0, on_epoch=lambda e, l: times.append(time.perf_counter()))
        out[label + "_images_per_s"] = len(rows) * (epochs - 1) / (times[-1] - times[1])
        out[label + "_epoch_s"] = [round(b - a, 3) for a, b in zip(times, times[1:])]
    out["ab_train_images"] = len(train)
out["peak_rss_mb"] = hwm()
print("RESULT " + json.dumps(out))
"""


def _bench(*args: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bench.cli", *args], env=env, capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        raise RuntimeError(f"bench {' '.join(args)} failed: {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def _python(config: dict[str, Any], what: str, env: dict[str, str], placement: str = "auto",
            ab_epochs: int = 2) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _TRIAL, json.dumps(config), what, placement, str(ab_epochs)],
                          env=env, capture_output=True, text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"scale-data {what} failed: {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def scale_data(patients: list[int] | tuple[int, ...] = (1000, 4000, 16000), image_size: int = 128,
               seg_epochs: int = 1, cls_epochs: int = 1, batch_size: int = 16, max_train_cases: int | None = None,
               placement: str = "stream", root: str | None = None, keep: bool = False,
               ab_train_cases: int | None = 128, ab_epochs: int = 3, ab_only: bool = False) -> dict[str, Any]:
    """Peak memory, training images/s and cache build rate of one trial for each patient count.

    Args:
        patients: patient counts (about 2 images each, plus 30 site-shifted patients).
        image_size, seg_epochs, cls_epochs, batch_size: the trial (default: the issue's 128 px, 1 + 1 epochs).
        max_train_cases: cap on training images (None: all), to bound the wall time of large N on a CPU.
        placement: the trial's data placement (``stream``: every N streams, so the figures compare like with
            like; ``auto``: what the runtime policy would choose).
        root: folder for the phantom folders and caches (default a temp folder on the working disk).
        keep: keep the phantom folders and caches afterwards.
        ab_train_cases: training images of the streamed / in-memory A/B at the smallest N (a fixed subset,
            rows spread over the cache; None: the whole train part). Images/s is the figure, so a hundred or two
            suffice: 128 at 128 px (3 variants x 3 epochs: 1,152 training steps of one image) keeps the A/B at
            1,000 patients to minutes on a 2-core CPU (1.6 images/s under a load of 10, several times that idle).
        ab_epochs: epochs of each A/B variant; the first is a warm-up, images/s is over the rest (>= 2).
        ab_only: only the A/B (with the phantom and the cache it needs) at each N: no trial, no peak memory.

    Returns:
        Per N: images, phantom write seconds, cache build images/s, trial seconds, peak RSS (MB), cache bytes;
        the A/B training images/s at the smallest N; growth of peak memory and the goals.
    """
    if ab_epochs < 2:
        raise ConfigError(f"ab_epochs must be at least 2 (a warm-up, then timed epochs), but got {ab_epochs}.")
    base = Path(root or Path.cwd() / ".bench-scale-data")
    base.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_TRACKING_URI":
           f"sqlite:///{base / 'mlflow.db'}"}
    rows: dict[str, dict[str, Any]] = {}
    ab: dict[str, Any] = {}
    ab_by_n: dict[str, dict[str, Any]] = {}
    try:
        for n in patients:
            folder, cache = base / f"phantom-{n}", base / f"cache-{n}"
            shutil.rmtree(cache, ignore_errors=True)
            run_env = {**env, "BENCH_CACHE": str(cache)}
            write_s = _bench("datasets", "make-phantom", "--task", "xray-heart", "--out", str(folder), "--format",
                             "png", "--cases", str(n), env=run_env) if not folder.is_dir() else float("nan")
            config = {"task": "xray-heart", "data": str(folder), "data_format": "png", "seg_epochs": seg_epochs,
                      "task_params": {"image_size": image_size, "cls_epochs": cls_epochs}, "batch_size": batch_size,
                      **({"max_train_cases": max_train_cases} if max_train_cases else {})}
            built = _python(config, "prepare", run_env)  # builds the cache: decode, resize, write row by row
            cache_bytes = sum(p.stat().st_size for p in cache.rglob("*.npy"))
            if n == patients[0] or ab_only:
                ab_config = {**config, "max_train_cases": ab_train_cases} if ab_train_cases else config
                ab = _python(ab_config, "ab", run_env, ab_epochs=ab_epochs)
                ab_by_n[str(n)] = ab
            if ab_only:
                rows[str(n)] = {"patients": n, "images": built["images"], "phantom_write_s": write_s,
                                "cache_build_s": built["prepare_s"], "cache_bytes": cache_bytes,
                                "cache_build_images_per_s": built["images"] / built["prepare_s"]}
                (base / "partial.json").write_text(json.dumps({"runs": rows, "training_ab": ab_by_n}, indent=1)
                                                   + "\n")
                if not keep:
                    shutil.rmtree(cache, ignore_errors=True)
                continue
            trial = _python(config, "trial", run_env, placement)
            rows[str(n)] = {"patients": n, "images": built["images"], "train_images": trial["train_images"],
                            "phantom_write_s": write_s, "cache_build_s": built["prepare_s"],
                            "cache_build_images_per_s": built["images"] / built["prepare_s"],
                            "cache_build_peak_rss_mb": built["peak_rss_mb"], "cache_bytes": cache_bytes,
                            "trial_s": trial["trial_s"], "peak_rss_mb": trial["peak_rss_mb"],
                            "data_placement": trial["data"], "data_bytes": trial["data_bytes"],
                            "val_auroc": trial["val_auroc"],
                            "baseline_in_memory_gb": BASELINE_GB.get(n)}
            # each N as it is done, so a long run that is stopped still leaves its figures
            (base / "partial.json").write_text(json.dumps({"runs": rows, "training_ab": ab}, indent=1) + "\n")
            if not keep:
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        if not keep:
            for n in patients:
                shutil.rmtree(base / f"phantom-{n}", ignore_errors=True)
                shutil.rmtree(base / f"cache-{n}", ignore_errors=True)
    ab = ab_by_n[str(patients[0])]
    ratio = _ratio(ab)
    settings = {"patients": list(patients), "image_size": image_size, "seg_epochs": seg_epochs,
                "cls_epochs": cls_epochs, "batch_size": batch_size, "max_train_cases": max_train_cases,
                "placement": placement, "loader_workers": 0 if cpu_count() and not _gpu() else "policy",
                "ab_train_cases": ab_train_cases, "ab_epochs": ab_epochs, "ab_only": ab_only}
    training_ab = {**ab, "stream_over_memory": ratio,
                   "note": f"seg training of {ab['ab_train_images']} images, {ab_epochs - 1} timed epoch(s) after "
                           "a warm-up, same batches; streamed, in memory, streamed again back to back"}
    if ab_only:
        return {"runs": rows, "training_ab": training_ab,
                "training_ab_by_patients": {k: {**v, "stream_over_memory": _ratio(v)} for k, v in ab_by_n.items()},
                "goal": "streamed images/s >= 0.9x memory", "met": {"images_per_s": ratio >= 0.9},
                "settings": settings, "loadavg": os.getloadavg()}
    first, last = rows[str(patients[0])], rows[str(patients[-1])]
    growth = last["peak_rss_mb"] / first["peak_rss_mb"] - 1
    return {
        "runs": rows,
        "training_ab": training_ab,
        "peak_growth": growth,
        "goal": "peak memory +<=10% from smallest to largest N and <= 3.29 GB; streamed images/s >= 0.9x memory",
        "met": {"flat": growth <= 0.10, "under_3.29GB": last["peak_rss_mb"] / 1024 <= 3.29, "images_per_s": ratio >= 0.9},
        "settings": settings,
        "loadavg": os.getloadavg(),
    }


def _ratio(ab: dict[str, Any]) -> float:
    """Streamed over in-memory images/s, the streamed figure being the mean of its runs before and after."""
    stream = (ab["stream_images_per_s"] + ab["stream_again_images_per_s"]) / 2
    return stream / ab["memory_images_per_s"]


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()
