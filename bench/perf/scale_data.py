"""Data at scale: one xray-heart trial on phantom PNG folders of growing size (issue 22).

For each patient count N: ``bench datasets make-phantom --task xray-heart --cases N`` (a fresh process,
timed), the cache build (``prepare`` in a fresh process: images decoded, resized and written row by row;
its rate in images/s), then one trial at fixed epochs in a fresh process whose peak resident memory
(``VmHWM``) is the figure. On a CPU machine the loader reads batches in the trial's process (no workers),
so VmHWM is the whole trial's memory. At the smallest N the training loop is also timed back to back with
the data in memory and streamed from the cache (images/s, same batches), the A/B the goal names.

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

from bench.perf._common import cpu_count

BASELINE_GB = {1000: 3.29, 4000: 4.49}  # the in-memory path, issue 22 (cpu preset search, 128 px, 1 + 1 epochs)

_TRIAL = """
import dataclasses, json, sys, time, torch
from bench import runtime
from bench.config import TrialConfig
from bench.trial import run_trial
from bench.tasks.xray_heart.data import prepare
cfg = TrialConfig(**json.loads(sys.argv[1]))
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
    train = data.parts["train"].select("image", "heart")
    loss = SEG_LOSSES.create("dice")
    for label, rows in (("stream", train), ("memory", train.in_memory()), ("stream_again", train)):
        seg = build_models(cfg, 2)[0]
        times = []
        fit(seg, lambda m, b: loss(m(b["image"]), b["heart"]), rows, epochs=2, batch_size=cfg.batch_size,
            lr=1e-3, optimiser="adam", seed=0, on_epoch=lambda e, l: times.append(time.perf_counter()))
        out[label + "_images_per_s"] = len(rows) / (times[1] - times[0])  # the second epoch: warm
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


def _python(config: dict[str, Any], what: str, env: dict[str, str], placement: str = "auto") -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", _TRIAL, json.dumps(config), what, placement], env=env, capture_output=True,
                          text=True, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"scale-data {what} failed: {proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def scale_data(patients: list[int] | tuple[int, ...] = (1000, 4000, 16000), image_size: int = 128,
               seg_epochs: int = 1, cls_epochs: int = 1, batch_size: int = 16, max_train_cases: int | None = None,
               placement: str = "stream", root: str | None = None, keep: bool = False) -> dict[str, Any]:
    """Peak memory, training images/s and cache build rate of one trial for each patient count.

    Args:
        patients: patient counts (about 2 images each, plus 30 site-shifted patients).
        image_size, seg_epochs, cls_epochs, batch_size: the trial (default: the issue's 128 px, 1 + 1 epochs).
        max_train_cases: cap on training images (None: all), to bound the wall time of large N on a CPU.
        placement: the trial's data placement (``stream``: every N streams, so the figures compare like with
            like; ``auto``: what the runtime policy would choose).
        root: folder for the phantom folders and caches (default a temp folder on the working disk).
        keep: keep the phantom folders and caches afterwards.

    Returns:
        Per N: images, phantom write seconds, cache build images/s, trial seconds, peak RSS (MB), cache bytes;
        the A/B training images/s at the smallest N; growth of peak memory and the goals.
    """
    base = Path(root or Path.cwd() / ".bench-scale-data")
    base.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_TRACKING_URI":
           f"sqlite:///{base / 'mlflow.db'}"}
    rows: dict[str, dict[str, Any]] = {}
    ab: dict[str, Any] = {}
    try:
        for n in patients:
            folder, cache = base / f"phantom-{n}", base / f"cache-{n}"
            shutil.rmtree(cache, ignore_errors=True)
            run_env = {**env, "BENCH_CACHE": str(cache)}
            write_s = _bench("datasets", "make-phantom", "--task", "xray-heart", "--out", str(folder), "--format",
                             "png", "--cases", str(n), env=run_env) if not folder.is_dir() else float("nan")
            config = {"task": "xray-heart", "data": str(folder), "data_format": "png", "image_size": image_size,
                      "seg_epochs": seg_epochs, "cls_epochs": cls_epochs, "batch_size": batch_size,
                      **({"max_train_cases": max_train_cases} if max_train_cases else {})}
            built = _python(config, "prepare", run_env)  # builds the cache: decode, resize, write row by row
            trial = _python(config, "trial", run_env, placement)
            cache_bytes = sum(p.stat().st_size for p in cache.rglob("*.npy"))
            rows[str(n)] = {"patients": n, "images": built["images"], "train_images": trial["train_images"],
                            "phantom_write_s": write_s, "cache_build_s": built["prepare_s"],
                            "cache_build_images_per_s": built["images"] / built["prepare_s"],
                            "cache_build_peak_rss_mb": built["peak_rss_mb"], "cache_bytes": cache_bytes,
                            "trial_s": trial["trial_s"], "peak_rss_mb": trial["peak_rss_mb"],
                            "data_placement": trial["data"], "data_bytes": trial["data_bytes"],
                            "val_auroc": trial["val_auroc"],
                            "baseline_in_memory_gb": BASELINE_GB.get(n)}
            if n == patients[0]:
                ab = _python(config, "ab", run_env)
            # each N as it is done, so a long run that is stopped still leaves its figures
            (base / "partial.json").write_text(json.dumps({"runs": rows, "training_ab": ab}, indent=1) + "\n")
            if not keep:
                shutil.rmtree(cache, ignore_errors=True)
    finally:
        if not keep:
            for n in patients:
                shutil.rmtree(base / f"phantom-{n}", ignore_errors=True)
                shutil.rmtree(base / f"cache-{n}", ignore_errors=True)
    first, last = rows[str(patients[0])], rows[str(patients[-1])]
    growth = last["peak_rss_mb"] / first["peak_rss_mb"] - 1
    ratio = ab.get("stream_images_per_s", float("nan")) / ab.get("memory_images_per_s", float("nan"))
    return {
        "runs": rows,
        "training_ab": {**ab, "stream_over_memory": ratio,
                        "note": "seg training, 2nd epoch, same batches; streamed, in memory, streamed again "
                                "back to back on a loaded shared box"},
        "peak_growth": growth,
        "goal": "peak memory +<=10% from smallest to largest N and <= 3.29 GB; streamed images/s >= 0.9x memory",
        "met": {"flat": growth <= 0.10, "under_3.29GB": last["peak_rss_mb"] / 1024 <= 3.29, "images_per_s": ratio >= 0.9},
        "settings": {"patients": list(patients), "image_size": image_size, "seg_epochs": seg_epochs,
                     "cls_epochs": cls_epochs, "batch_size": batch_size, "max_train_cases": max_train_cases,
                     "placement": placement, "loader_workers": 0 if cpu_count() and not _gpu() else "policy"},
        "loadavg": os.getloadavg(),
    }


def _gpu() -> bool:
    import torch

    return torch.cuda.is_available()
