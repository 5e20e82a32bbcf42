"""Data loading: epochs read from the memory-mapped preprocessed cache vs decoding the DICOM export each epoch.

Both paths end in the same mini-batches of preprocessed tensors. The decode path is what a loader without
the cache would do every epoch (read every DICOM file, apply the pixel pipeline, resize, standardise); the
cache path is what ``xray_heart.prepare`` does after the first trial (``np.load(mmap_mode="r")``).
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
         step_repeats: int = 5, seed: int = 0) -> dict[str, Any]:
    """Epoch time from the cache vs decoding DICOM every epoch (goal: >= 20x), and loader vs model step time.

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
