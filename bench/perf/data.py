"""Data loading: epochs read from the memory-mapped preprocessed cache vs decoding the DICOM export each epoch.

Both paths end in the same mini-batches of preprocessed tensors. The decode path is what a loader without
the cache would do every epoch (read every DICOM file, apply the pixel pipeline, resize, standardise); the
cache path is what ``xray_heart.prepare`` does after the first trial (``np.load(mmap_mode="r")``).

``mode="cxr14"`` measures real sizes instead: ``n_images`` synthetic ``source_px``² 8-bit PNGs (1024²,
as ChestX-ray14 ships them) in the ChestX-ray14 layout with a CheXmask table beside them, cached through
the streaming path (scan -> one image decoded, resized and written at a time): build throughput and the
build process's peak RSS (goal <= 2 GB), then the per-epoch read time from the cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.perf._common import isolated_store, median, quiet, timed


def _gather(arrays: dict, batch_size: int, seed: int) -> int:
    """Draw every mini-batch of one epoch (shuffled) as torch tensors; returns the number of batches."""
    import numpy as np
    import torch

    from bench.train import batches

    n = len(arrays["image"])
    count = 0
    for idx in batches(n, batch_size, torch.Generator().manual_seed(seed)):
        rows = np.sort(idx.numpy())  # ascending rows: sequential reads from the memory map
        image = torch.from_numpy(np.ascontiguousarray(arrays["image"][rows]))
        heart = torch.from_numpy(np.ascontiguousarray(arrays["heart"][rows])).float()
        count += int(image.shape[0] > 0 and heart.shape[0] > 0)
    return count


def data(n_patients: int = 100, n_shifted_patients: int = 30, phantom_size: int = 128, image_size: int = 64,
         epochs: int = 3, batch_size: int = 16, arch: str = "unet", encoder: str = "resnet18",
         step_repeats: int = 5, seed: int = 0, mode: str = "phantom", n_images: int = 2000,
         source_px: int = 1024) -> dict[str, Any]:
    """Epoch time from the cache vs decoding DICOM every epoch (goal: >= 20x), and loader vs model step time.

    With ``mode="cxr14"``: cache build throughput and peak memory on ``n_images`` synthetic ``source_px``²
    PNGs in the ChestX-ray14 + CheXmask layout, and epoch read time from the cache (see ``cxr14_data``);
    only ``image_size``, ``epochs``, ``batch_size`` and ``seed`` apply then.

    The phantom is exported to DICOM (``phantom_size``² pixels, 12-bit, one file per image) in a temp folder;
    the cache is built once from that export, untimed. Then ``epochs`` decode epochs and ``epochs`` cache
    epochs run interleaved; medians are compared. A model training step (``arch``/``encoder`` on one batch,
    forward + backward + Adam) is timed ``step_repeats`` times to set the loader's cost against it.

    Args:
        n_patients, n_shifted_patients, phantom_size: phantom spec of the DICOM export.
        image_size: preprocessed side (what the cache stores and the model sees).
        epochs: measured epochs per path; batch_size: rows per mini-batch.
        arch, encoder: the model whose step time the loader is compared with.
        step_repeats: timed model steps (after one warm-up step).
        seed: phantom and batch order.

    Returns:
        ``ratio`` (decode epoch / cache epoch, wall medians), ``cpu_ratio``, per-epoch seconds of both paths,
        ``loader_batch_s`` vs ``model_step_s`` and ``loader_share`` (loader / (loader + step)).
    """
    if mode == "cxr14":
        return cxr14_data(n_images, source_px, image_size, epochs, batch_size, seed)
    if mode != "phantom":
        from bench.errors import ConfigError

        raise ConfigError(f"mode must be 'phantom' or 'cxr14', but got '{mode}'.")
    import torch

    from bench.data.cache import cached_arrays, fingerprint
    from bench.data.formats import FORMATS
    from bench.data.phantoms.xray import CLASSES, XrayPhantomSpec, export, generate
    from bench.losses import SEG_LOSSES
    from bench.models import SEG_MODELS

    # The task's own preprocessing, so both paths produce byte-identical arrays; it is not public API, but a
    # benchmark of the cache must time exactly what the cache saves.
    from bench.tasks.xray_heart import _preprocess

    quiet()
    spec = XrayPhantomSpec(n_patients=n_patients, n_shifted_patients=n_shifted_patients, size=phantom_size,
                           seed=seed)
    reader = FORMATS.create("dicom")
    with isolated_store() as tmp:
        folder = export(generate(spec), Path(tmp) / "dicom", "dicom")
        n_files = sum(1 for _ in folder.rglob("*.dcm"))
        export_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

        def build():
            return _preprocess(reader.read(folder, CLASSES), image_size)

        key = fingerprint({"perf": "data", "spec": spec.name(), "size": image_size})
        _, _, arrays = timed(lambda: cached_arrays(key, build))  # built once, untimed in the ratio

        def decode_epoch() -> int:
            return _gather(build(), batch_size, seed)

        def cache_epoch() -> int:
            return _gather(cached_arrays(key, build), batch_size, seed)

        runs: list[dict[str, Any]] = []
        for rep in range(epochs):
            order = [("decode", decode_epoch), ("cache", cache_epoch)]
            for name, fn in order if rep % 2 == 0 else order[::-1]:
                wall, cpu, n_batches = timed(fn)
                runs.append({"path": name, "epoch": rep, "wall_s": wall, "cpu_s": cpu, "batches": n_batches})
        cache_bytes = sum(a.nbytes for a in arrays.values())

    torch.manual_seed(seed)
    model = SEG_MODELS.create(arch, in_channels=1, classes=1, encoder=encoder).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = SEG_LOSSES.create("dice")
    x = torch.randn(batch_size, 1, image_size, image_size)
    y = (torch.rand(batch_size, 1, image_size, image_size) > 0.5).float()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    step()  # warm-up
    steps = [timed(step)[:2] for _ in range(step_repeats)]

    def med(path: str, key: str) -> float:
        return median([r[key] for r in runs if r["path"] == path])

    decode_s, cache_s = med("decode", "wall_s"), med("cache", "wall_s")
    n_batches = runs[0]["batches"]
    loader_batch_s = cache_s / max(n_batches, 1)
    step_s = median([w for w, _ in steps])
    return {
        "ratio": decode_s / cache_s,
        "goal": ">= 20",
        "met": decode_s / cache_s >= 20,
        "cpu_ratio": med("decode", "cpu_s") / med("cache", "cpu_s"),
        "decode_epoch_s": decode_s,
        "cache_epoch_s": cache_s,
        "images": len(arrays["image"]),
        "dicom_files": n_files,
        "export_mb": export_bytes / 1e6,
        "cache_mb": cache_bytes / 1e6,
        "loader_batch_s": loader_batch_s,
        "loader_samples_per_s": len(arrays["image"]) / cache_s,
        "model_step_s": step_s,
        "model_step_cpu_s": median([c for _, c in steps]),
        "model_samples_per_s": batch_size / step_s,
        "loader_share": loader_batch_s / (loader_batch_s + step_s),
        "settings": {"phantom": spec.name(), "image_size": image_size, "epochs": epochs, "batch_size": batch_size,
                     "model": f"{arch}/{encoder}", "step_repeats": step_repeats,
                     "page_cache": "warm: the cache files are re-read right after being written"},
        "runs": runs,
    }


GOAL_PEAK_MB = 2048


def cxr14_data(n_images: int = 2000, source_px: int = 1024, image_size: int = 256, epochs: int = 3,
               batch_size: int = 16, seed: int = 0) -> dict[str, Any]:
    """Cache build of full-size radiographs, streamed: throughput, peak RSS (goal <= 2 GB), epoch read time.

    The data set (PNGs, Data_Entry_2017.csv, the two list files, a CheXmask CSV with RLE heart/lung
    masks) is written first, one image at a time, untimed. The build runs in a fresh process so that its
    peak RSS (``ru_maxrss``) is the build's own; ``baseline_rss_mb`` is that process's peak after the
    imports, before the first image. Epochs then draw every shuffled mini-batch from the memory map.
    """
    import os

    from bench.data.cache import cached_arrays

    quiet()
    with isolated_store() as tmp:
        folder = Path(tmp) / "cxr14"
        wall_write, _, written = timed(lambda: write_synthetic_cxr14(folder, n_images, source_px, seed))
        cache = os.environ["BENCH_CACHE"]
        key = f"perf-cxr14-{n_images}-{source_px}-{image_size}"
        build = _run_fresh(str(folder), cache, key, image_size)
        arrays = cached_arrays(key, lambda: (_ for _ in ()).throw(RuntimeError("cache must exist")))
        _gather(arrays, batch_size, seed)  # warm-up: imports and first page-ins are not an epoch's cost
        runs = [timed(lambda rep=rep: _gather(arrays, batch_size, seed + rep)) for rep in range(epochs)]
        cache_mb = sum(a.nbytes for a in arrays.values()) / 1e6
    epoch_s = median([wall for wall, _, _ in runs])
    return {
        "mode": "cxr14",
        "images": n_images,
        "source_px": source_px,
        "png_mb": written["png_bytes"] / 1e6,
        "chexmask_csv_mb": written["csv_bytes"] / 1e6,
        "write_s": wall_write,
        "build_s": build["wall_s"],
        "build_cpu_s": build["cpu_s"],
        "scan_s": build["scan_s"],
        "build_images_per_s": n_images / build["wall_s"],
        "peak_rss_mb": build["peak_rss_mb"],
        "baseline_rss_mb": build["baseline_rss_mb"],
        "goal": f"peak_rss_mb <= {GOAL_PEAK_MB}",
        "met": build["peak_rss_mb"] <= GOAL_PEAK_MB,
        "all_in_memory_mb": n_images * source_px**2 * 4 / 1e6,  # what holding every float32 image would take
        "cache_mb": cache_mb,
        "cache_epoch_s": epoch_s,
        "cache_epoch_cpu_s": median([cpu for _, cpu, _ in runs]),
        "cache_samples_per_s": n_images / epoch_s,
        "settings": {"image_size": image_size, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                     "page_cache": "warm: the cache files are read right after being written"},
    }


def _run_fresh(folder: str, cache: str, key: str, image_size: int) -> dict[str, float]:
    """``_build_in_fresh_process`` in a new interpreter (a fork would inherit this process's peak RSS)."""
    import json
    import os
    import subprocess
    import sys

    import bench

    code = ("import json, sys; from bench.perf.data import _build_in_fresh_process as build; "
            "print(json.dumps(build(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))))")
    package_parent = str(Path(bench.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code, folder, cache, key, str(image_size)], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the cache build process must succeed, but it failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _build_in_fresh_process(folder: str, cache: str, key: str, image_size: int) -> dict[str, float]:
    """Runs in a spawned process: scan + streamed cache build; its own peak RSS comes back."""
    import os
    import resource
    import time

    os.environ["BENCH_CACHE"] = cache
    import torch  # noqa: F401  (imported before the baseline, as a trial would have it)

    import bench.data.formats  # noqa: F401  (every reader's imports, also before the baseline)
    from bench.data.cache import cached_arrays
    from bench.data.labels import CARDIOMEGALY_CLASSES
    from bench.data.radiograph import radiograph_rows
    from bench.data.stream import scan_cases

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    wall, cpu = time.perf_counter(), time.process_time()
    refs = scan_cases(folder, "chexmask", CARDIOMEGALY_CLASSES)
    scan_s = time.perf_counter() - wall
    cached_arrays(key, lambda: radiograph_rows(refs, image_size, CARDIOMEGALY_CLASSES))
    return {"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu, "scan_s": scan_s,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "baseline_rss_mb": baseline}


def write_synthetic_cxr14(root: Path, n_images: int, source_px: int = 1024, seed: int = 0) -> dict[str, int]:
    """ChestX-ray14 layout (+ CheXmask ChestX-Ray8.csv) of synthetic chest-like 8-bit PNGs, one at a time.

    Two patients' worth of images per ``patient`` id (follow-ups), every 8th patient with Cardiomegaly;
    the last fifth of patients are listed in test_list.txt. Masks are ellipses, RLE-encoded as CheXmask does.
    """
    import csv

    import numpy as np
    from PIL import Image

    from bench.data.formats.chexmask import encode_rle

    images = root / "images_001" / "images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:source_px, 0:source_px] / source_px
    names, test_names = [], []
    n_patients = max(1, n_images // 2)
    with (root / "Data_Entry_2017.csv").open("w", newline="") as entries, \
            (root / "ChestX-Ray8.csv").open("w", newline="") as masks:
        entry_writer, mask_writer = csv.writer(entries), csv.writer(masks)
        entry_writer.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age",
                               "Patient Gender", "View Position", "OriginalImage[Width", "Height]",
                               "OriginalImagePixelSpacing[x", "y]"])
        mask_writer.writerow(["Image Index", "Dice RCA (Max)", "Dice RCA (Mean)", "Landmarks", "Left Lung",
                              "Right Lung", "Heart", "Height", "Width"])
        for i in range(n_images):
            patient = i % n_patients
            name = f"{patient + 1:08d}_{i // n_patients:03d}.png"
            cardio = patient % 8 == 0
            heart_r = 0.16 if cardio else 0.11
            cx, cy = 0.5 + rng.normal(0, 0.01), 0.6 + rng.normal(0, 0.01)
            heart = ((xx - cx) / heart_r) ** 2 + ((yy - cy) / (heart_r * 0.8)) ** 2 < 1
            left = ((xx - 0.68) / 0.15) ** 2 + ((yy - 0.45) / 0.3) ** 2 < 1
            right = ((xx - 0.32) / 0.15) ** 2 + ((yy - 0.45) / 0.3) ** 2 < 1
            pixels = 170 - 80 * (left | right) + 60 * heart + 20 * yy + rng.normal(0, 3, heart.shape)
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(images / name, compress_level=1)
            entry_writer.writerow([name, "Cardiomegaly" if cardio else "No Finding", i // n_patients,
                                   f"{patient + 1:08d}", 50, "M", "PA", 2500, 2048, 0.139, 0.139])
            mask_writer.writerow([name, 0.9, 0.85, "381,223,345,227,309,248", encode_rle(left), encode_rle(right), encode_rle(heart),
                                  source_px, source_px])
            (test_names if patient >= n_patients * 4 // 5 else names).append(name)
    (root / "train_val_list.txt").write_text("".join(n + "\n" for n in names))
    (root / "test_list.txt").write_text("".join(n + "\n" for n in test_names))
    return {"png_bytes": sum(p.stat().st_size for p in images.iterdir()),
            "csv_bytes": (root / "ChestX-Ray8.csv").stat().st_size}
