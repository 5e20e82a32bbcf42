"""Harness overhead: ``bench.train.fit`` with the task's per-epoch callback vs a bare PyTorch loop.

Both train the same smp U-Net from the same initial weights on the same batches in the same order, under
the same runtime policy (:mod:`bench.runtime`: precision, channels_last, compile, resident data), so the
ratio compares loops, not settings. The difference is split into what the harness adds: the training
loop itself (indexing every tensor of the part, loss accumulation), the per-epoch validation metrics,
and MLflow logging.
"""

from __future__ import annotations

from typing import Any

from bench.perf._common import isolated_store, median, quiet, timed


def _synthetic(n: int, size: int, seed: int):
    """Images with one bright disc each and its mask, plus the label/width columns a task part carries."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = torch.rand(n, 2, generator=gen) * size * 0.5 + size * 0.25
    radius = (torch.rand(n, generator=gen) * 0.15 + 0.1) * size
    dist = ((yy[None] - centre[:, 0, None, None]) ** 2 + (xx[None] - centre[:, 1, None, None]) ** 2).sqrt()
    heart = (dist < radius[:, None, None]).float()[:, None]
    image = heart + 0.5 * torch.randn(n, 1, size, size, generator=gen)
    return {"image": image, "heart": heart, "label": torch.randint(0, 4, (n,), generator=gen),
            "thorax_width": torch.full((n,), float(size) * 0.8)}


def _optimiser_steps(model, image_size: int, batch_size: int, repeats: int) -> dict[str, float]:
    """Median seconds of one Adam step, torch's CPU default (for-loop) vs ``foreach=True``, interleaved.

    On CPU torch picks the for-loop implementation unless asked; this measures what asking would save.
    """
    import torch

    x = torch.randn(batch_size, 1, image_size, image_size)
    model.train()
    model(x).mean().backward()  # gradients to step on; their values do not matter for the timing
    times: dict[str, list[float]] = {"for_loop_s": [], "foreach_s": []}
    opts = {"for_loop_s": torch.optim.Adam(model.parameters(), foreach=False),
            "foreach_s": torch.optim.Adam(model.parameters(), foreach=True)}
    for opt in opts.values():
        opt.step()  # allocates the moment buffers: first-step cost is not per-step cost
    for _ in range(repeats):
        for key, opt in opts.items():
            times[key].append(timed(opt.step)[0])
    return {key: median(values) for key, values in times.items()}


def overhead(image_size: int = 64, n_train: int = 128, n_val: int = 32, batch_size: int = 16, epochs: int = 3,
             repeats: int = 3, arch: str = "unet", encoder: str = "resnet18", loss: str = "dice",
             seed: int = 0, precision: str = "auto", compile: bool = False,
             channels_last: bool | None = None) -> dict[str, Any]:
    """Throughput of the harness relative to a bare PyTorch loop (goal: ratio >= 0.97).

    Five variants run ``repeats`` times each, interleaved (rotated each repeat), after one untimed warm-up:
    ``bare`` (plain loop over image/heart), ``bare_validated`` (the same loop plus a forward pass over the
    validation images and their Dice after every epoch, as a hand-written loop with a learning curve does),
    ``loop`` (``fit`` with a no-op callback over the whole part: image, heart, label, thorax_width, as the task
    passes it), ``loop_lean`` (the same over image and heart only) and ``harness`` (``fit`` with the
    xray-heart segmentation callback: validation predict + Dice, logged to MLflow through ``MlflowReporter``).
    ``ratio`` compares like with like (``bare_validated`` / ``harness``: the same training and the same
    validation work); ``training_only_ratio`` is ``bare`` / ``harness``, whose gap is mostly the validation
    forward pass itself (``validation_share_of_bare``), work the harness does on purpose.

    Args:
        image_size: input side in pixels (smp needs a multiple of 32).
        n_train: training images (``n_train * epochs`` samples per measurement).
        n_val: validation images predicted after each epoch in the harness variant.
        batch_size: mini-batch size for every variant.
        epochs: epochs per measurement.
        repeats: measurements per variant; medians are reported.
        arch: SEG_MODELS name; encoder: its encoder; loss: SEG_LOSSES name.
        seed: weights, data and batch order.
        precision: runtime precision for every variant (``auto``, ``fp32``, ``bf16``, ``fp16``); on CPU
            ``--param precision=bf16`` measures bf16 autocast against the fp32 default.
        compile: run the training steps through ``torch.compile`` (bare loop included).
        channels_last: force channels_last on or off (None: the policy's automatic choice).

    Returns:
        ``ratio`` (median bare_validated wall / median harness wall, i.e. harness throughput over the
        hand-written validated loop's), ``cpu_ratio`` (the same on process CPU time), ``training_only_ratio``,
        ``samples_per_s`` per variant, ``breakdown`` (seconds per measurement and share of harness time:
        loop, metrics, logging), ``optimiser_step_s`` (one Adam
        step over the model's parameters, for-loop vs foreach implementation), ``runtime`` (the policy
        every variant ran under) and the raw ``runs``.
    """
    from bench import runtime

    quiet()
    policy = runtime.Runtime.choose(precision=precision, compile=compile, channels_last=channels_last)
    with runtime.using(policy):
        result = _overhead(image_size, n_train, n_val, batch_size, epochs, repeats, arch, encoder, loss, seed, policy)
    result["runtime"] = policy.as_dict()
    result["settings"]["precision"] = policy.precision
    return result


def _overhead(image_size: int, n_train: int, n_val: int, batch_size: int, epochs: int, repeats: int, arch: str,
              encoder: str, loss: str, seed: int, policy) -> dict[str, Any]:
    import torch

    from bench import runtime
    from bench.losses import SEG_LOSSES
    from bench.metrics import mean_dice
    from bench.models import SEG_MODELS
    from bench.tracking import KIND_TAG, MlflowReporter, Tracker
    from bench.train import fit, predict

    data = _synthetic(n_train + n_val, image_size, seed)
    train = {k: v[:n_train] for k, v in data.items()}
    val = {k: v[n_train:] for k, v in data.items()}
    loss_fn = SEG_LOSSES.create(loss)
    dev = runtime.device(policy)

    def build():
        torch.manual_seed(seed)  # identical initial weights in every variant
        return SEG_MODELS.create(arch, in_channels=1, classes=1, encoder=encoder)

    def bare(model, n_epochs, validate=False):
        # What a user would write by hand: same optimiser, same permutation per epoch, same skipped batches,
        # and the same runtime policy as fit (autocast, GradScaler, channels_last, compile, data on the GPU).
        # ``validate``: the hand-written loop that also checks validation Dice after every epoch, as the harness
        # does for its learning curve and pruning (a forward pass over the validation images, then Dice).
        runtime.prepare_model(model, policy).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler(dev.type) if policy.precision == "fp16" else None
        net = torch.compile(model) if policy.compile else model
        gen = torch.Generator().manual_seed(seed)
        data = runtime.resident({"image": train["image"], "heart": train["heart"]}, policy)
        images, hearts = data["image"], data["heart"]
        for _ in range(n_epochs):
            order = torch.randperm(n_train, generator=gen).to(images.device)
            for start in range(0, n_train, batch_size):
                idx = order[start : start + batch_size]
                if len(idx) == 1 and n_train > 1:
                    continue
                x, y = runtime.prepare_batch(images[idx], policy), runtime.prepare_batch(hearts[idx], policy)
                opt.zero_grad(set_to_none=True)
                with runtime.autocast(policy):
                    batch_loss = loss_fn(net(x), y)
                if scaler is None:
                    batch_loss.backward()
                    opt.step()
                else:
                    scaler.scale(batch_loss).backward()
                    scaler.step(opt)
                    scaler.update()
            if validate:
                model.eval()
                with torch.no_grad(), runtime.autocast(policy):
                    out = net(runtime.prepare_batch(val["image"].to(images.device), policy)).float()
                mean_dice(out.cpu() > 0, val["heart"])
                model.train()

    def via_fit(model, n_epochs, on_epoch, tensors=None):
        fit(model, lambda m, b: loss_fn(m(b["image"]), b["heart"]), tensors or train, epochs=n_epochs,
            batch_size=batch_size, lr=1e-3, optimiser="adam", seed=seed, on_epoch=on_epoch)

    with isolated_store():
        tracker = Tracker("xray-heart")
        run_id = tracker.start_run("perf overhead", {KIND_TAG: "perf"})
        reporter = MlflowReporter(tracker, run_id)
        parts = {"metrics": 0.0, "logging": 0.0}

        def task_callback(model):
            # Mirrors xray_heart.run's seg_epoch: validation Dice every epoch, then one log call.
            def on_epoch(epoch: int, epoch_loss: float) -> None:
                wall, _, dice = timed(lambda: mean_dice(predict(model, val["image"]) > 0, val["heart"]))
                parts["metrics"] += wall
                wall, _, _ = timed(lambda: reporter.log({"seg_train_loss": epoch_loss, "seg_val_heart_dice": dice},
                                                        step=epoch))
                parts["logging"] += wall
            return on_epoch

        variants = {
            "bare": lambda m: bare(m, epochs),
            "bare_validated": lambda m: bare(m, epochs, validate=True),
            "loop": lambda m: via_fit(m, epochs, lambda e, v: None),
            # fit over only the two tensors the loss reads: isolates what indexing the unused columns costs
            "loop_lean": lambda m: via_fit(m, epochs, lambda e, v: None, {"image": train["image"],
                                                                         "heart": train["heart"]}),
            "harness": lambda m: via_fit(m, epochs, task_callback(m)),
        }
        bare(build(), 1)  # warm-up: first-call allocations and kernel selection are nobody's overhead
        runs: list[dict[str, Any]] = []
        names = list(variants)
        for rep in range(repeats):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:  # rotate so no variant always runs first
                model = build()
                parts.update(metrics=0.0, logging=0.0)
                wall, cpu, _ = timed(lambda fn=variants[name], m=model: fn(m))
                runs.append({"variant": name, "repeat": rep, "wall_s": wall, "cpu_s": cpu, **(
                    {"metrics_s": parts["metrics"], "logging_s": parts["logging"]} if name == "harness" else {})})

    def med(name: str, key: str) -> float:
        return median([r[key] for r in runs if r["variant"] == name])

    bare_s, loop_s, harness_s = med("bare", "wall_s"), med("loop", "wall_s"), med("harness", "wall_s")
    validated_s = med("bare_validated", "wall_s")
    lean_s = med("loop_lean", "wall_s")
    metrics_s, logging_s = med("harness", "metrics_s"), med("harness", "logging_s")
    samples = n_train * epochs
    breakdown = {
        "bare_s": bare_s,
        "loop_s": loop_s - bare_s,  # indexing all four part tensors per batch + loss accumulation + sync
        "metrics_s": metrics_s,  # validation predict + Dice per epoch
        "logging_s": logging_s,  # MlflowReporter.log per epoch (one sqlite log_batch)
        "unexplained_s": harness_s - loop_s - metrics_s - logging_s,  # noise between measurements
    }
    shares = {k.replace("_s", "_share"): v / harness_s for k, v in breakdown.items() if k != "bare_s"}
    return {
        # like for like: both loops train the same batches and validate after every epoch
        "ratio": validated_s / harness_s,
        "goal": ">= 0.97",
        "met": validated_s / harness_s >= 0.97,
        "cpu_ratio": med("bare_validated", "cpu_s") / med("harness", "cpu_s"),
        # against a loop that never validates: what the per-epoch validation itself costs is in the gap
        "training_only_ratio": bare_s / harness_s,
        "validation_share_of_bare": (validated_s - bare_s) / validated_s,
        "loop_ratio": bare_s / loop_s,
        "loop_lean_ratio": bare_s / lean_s,
        "samples_per_s": {"bare": samples / bare_s, "bare_validated": samples / validated_s, "loop": samples / loop_s, "loop_lean": samples / lean_s,
                          "harness": samples / harness_s},
        "optimiser_step_s": _optimiser_steps(build(), image_size, batch_size, max(repeats, 3)),
        "breakdown": {**breakdown, **shares},
        "settings": {"image_size": image_size, "n_train": n_train, "n_val": n_val, "batch_size": batch_size,
                     "epochs": epochs, "repeats": repeats, "model": f"{arch}/{encoder}", "loss": loss,
                     "device": str(dev)},
        "runs": runs,
    }
