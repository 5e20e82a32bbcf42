"""ct-lung's volume cache is built one volume at a time (issue 22) and gives the arrays the whole-set build gave;
``prepare`` hands out the cache's memory-mapped volumes, not copies."""

from __future__ import annotations

import dataclasses
import mmap

import numpy as np
import pytest
import torch
from monai.transforms import Resize, ScaleIntensityRange, SpatialPad

from bench.config import TrialConfig
from bench.data.cache import cache_root, cached_arrays
from bench.data.ct_io import lung_mask_from_hu
from bench.data.phantoms.ct import generate
from bench.errors import DataError
from bench.tasks import TASKS
from bench.tasks.ct_lung.data import HU_WINDOW, prepare, preprocess, preprocess_volume, volume_rows
from bench.tasks.ct_lung.spec import phantom_spec, task_param


def _whole_set_preprocess(cases, spacing):
    """The cache build as it was before issue 22 (every volume stacked in memory), kept to pin the values."""
    window = ScaleIntensityRange(a_min=HU_WINDOW[0], a_max=HU_WINDOW[1], b_min=0.0, b_max=1.0, clip=True)
    images, lungs, lesions = [], [], []
    for c in cases:
        hu = np.asarray(c.image, np.float32)
        lung = c.masks.get("lung")
        if lung is None:
            lung = lung_mask_from_hu(hu)
        lesion = c.masks.get("lesion", np.zeros(hu.shape, np.uint8))
        size = [max(1, round(n * s / t)) for n, s, t in zip(hu.shape, c.spacing, spacing)]
        image = window(hu[None])
        masks = torch.from_numpy(np.stack([lung > 0, lesion > 0]).astype(np.float32))
        if list(hu.shape) != size:
            image = Resize(size, mode="trilinear")(image)
            masks = Resize(size, mode="nearest")(masks)
        images.append(torch.as_tensor(image).float())
        lungs.append(torch.as_tensor(masks[:1]))
        lesions.append(torch.as_tensor(masks[1:]))
    shape = np.max([im.shape[1:] for im in images], axis=0).tolist()
    pad = SpatialPad(shape)
    return {
        "image": np.stack([pad(im).numpy()[0] for im in images]).astype(np.float32),
        "lung": np.stack([pad(m).numpy()[0] for m in lungs]).astype(np.uint8),
        "lesion": np.stack([pad(m).numpy()[0] for m in lesions]).astype(np.uint8),
        "case_id": np.array([c.id for c in cases]),
        "patient_id": np.array([c.patient_id for c in cases]),
        "label": np.array([str(c.labels.get("class", "")) for c in cases]),
    }


def _smoke() -> TrialConfig:
    return TrialConfig(task="ct-lung", **dict(TASKS.get("ct-lung").preset("smoke").config))


def _staged() -> list:
    return list((cache_root() / ".scratch").glob("ct-prep-*"))


def test_streamed_cache_holds_the_arrays_of_the_whole_set_build_on_the_smoke_phantom():
    config = _smoke()
    spacing = tuple(float(s) for s in task_param(config, "spacing"))
    cases = generate(phantom_spec(config))[:8]
    # Two volumes at other spacings resample to other sizes, so the common shape pads the rest.
    cases[1] = dataclasses.replace(cases[1], spacing=tuple(s * 1.3 for s in cases[1].spacing))
    cases[5] = dataclasses.replace(cases[5], spacing=tuple(s * 0.8 for s in cases[5].spacing),
                                   masks={"lesion": cases[5].masks["lesion"]})  # lungs derived from HU
    before = _whole_set_preprocess(cases, spacing)
    assert len({preprocess_volume(c, spacing)["image"].shape for c in cases}) == 3
    cached = cached_arrays("ct-stream-test", lambda: volume_rows(iter(cases), spacing))
    assert sorted(cached) == sorted(before) and sorted(preprocess(cases, spacing)) == sorted(before)
    for name, array in before.items():
        assert cached[name].dtype == array.dtype and np.array_equal(cached[name], array), name
        assert np.array_equal(preprocess(cases, spacing)[name], array), name
    assert _staged() == []  # the staged unpadded volumes are gone once the cache is written


def test_prepare_hands_out_the_cache_memory_mapped_volumes():
    data = prepare(_smoke())
    volumes = [a for cases in data.parts.values() for case in cases for a in case.values()]
    assert volumes and all(a.flags.c_contiguous and not a.flags.writeable for a in volumes)
    for a in volumes:
        base = a
        while isinstance(base, np.ndarray):
            assert not base.flags.owndata  # a view all the way down to the file's map: no copy in memory
            base = base.base
        assert isinstance(base, mmap.mmap)


def test_a_failed_or_empty_build_leaves_neither_cache_nor_staging():
    cases = generate(phantom_spec(_smoke()))[:3]

    def failing():
        yield from cases[:2]
        raise DataError("broken volume")

    with pytest.raises(DataError, match="broken volume"):
        cached_arrays("ct-stream-fail", lambda: volume_rows(failing(), (10.0, 8.0, 8.0)))
    with pytest.raises(DataError, match="at least one case"):
        cached_arrays("ct-stream-empty", lambda: volume_rows(iter(()), (10.0, 8.0, 8.0)))
    assert _staged() == [] and not (cache_root() / "ct-stream-fail").exists()


def test_patches_staged_in_scratch_train_exactly_as_patches_in_memory():
    """An epoch's patches on disk (many volumes, or the stream policy) give the losses and weights of the same
    patches held in memory, and their scratch folder is gone when training ends."""
    from bench import runtime
    from bench.guidance import LESION_GUIDANCE
    from bench.losses import SEG_LOSSES
    from bench.tasks.seg_engine.nets import build_seg_net
    from bench.tasks.seg_engine.training import make_volumes, patches_on_disk, train_net

    arrays = preprocess(generate(phantom_spec(_smoke()))[:4], (10.0, 8.0, 8.0))
    cases = [{name: arrays[name][i] for name in ("image", "lung", "lesion")} for i in range(4)]
    vols = make_volumes(cases, "lesion", LESION_GUIDANCE.create("none"), None)
    base = dataclasses.replace(runtime.Runtime.choose(), data_placement="auto")
    assert not patches_on_disk(runtime.HOST_RESIDENT_MAX_BYTES, base)
    assert patches_on_disk(runtime.HOST_RESIDENT_MAX_BYTES + 1, base)

    def train(placement: str) -> tuple[list[float], dict]:
        torch.manual_seed(0)
        net = build_seg_net("monai_unet", 1, "3d", width=8, patch=(16, 32, 32))
        losses, staged = [], []

        def on_epoch(epoch, value):
            losses.append(value)
            staged.append(len(list((cache_root() / ".scratch").glob("ct-patches-*"))))

        with runtime.using(dataclasses.replace(base, data_placement=placement)):
            train_net(net, vols, SEG_LOSSES.create("dice_ce"), patch=(16, 32, 32), samples=3, pos_fraction=0.5,
                      epochs=2, batch_size=4, lr=1e-3, optimiser="adam", seed=3, augment=True, on_epoch=on_epoch)
        assert staged == ([1, 1] if placement == "stream" else [0, 0])
        assert list((cache_root() / ".scratch").glob("ct-patches-*")) == []
        return losses, net.state_dict()

    in_memory, on_disk = train("resident"), train("stream")
    assert in_memory[0] == on_disk[0] and all(np.isfinite(in_memory[0]))
    assert all(torch.equal(in_memory[1][k], on_disk[1][k]) for k in in_memory[1])
