"""Generic patch training and sliding-window inference over lists of volumes (both ct-lung stages).

Training draws lesion/background-balanced patches (MONAI ``RandCropByPosNegLabel``) from whole volumes
mapped onto the segmenter's grid by a ``LESION_GUIDANCE`` strategy one volume at a time (the cases are
the cache's memory-mapped volumes); inference runs a sliding window volume by volume and maps the logits
back with the strategy's ``outputs``. An epoch's patches (``samples`` per volume) are shuffled into batches
by one permutation of them all; when they are many (by the runtime policy, ``patches_on_disk``) they are
written to the trial's scratch space as they are cropped and read back a batch at a time, so memory holds a
volume and a batch whatever the number of volumes, and the numbers are those of patches held in memory.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.inferers import sliding_window_inference
from monai.transforms import (
    Compose,
    RandCropByPosNegLabel,
    RandFlip,
    RandGaussianNoise,
    RandScaleIntensity,
    SpatialPad,
)
from monai.transforms.utils import map_binary_to_indices
from monai.utils import convert_to_tensor

from bench import runtime
from bench.data.cache import RowStream, scratch, write_rows
from bench.data.rows import NpyColumn
from bench.guidance import LesionGuidance
from bench.tasks.seg_engine.guided import Guided, to_image_grid, to_segmenter_grid
from bench.train import Batch, device, make_optimiser, train_epochs


class Volumes:
    """Network inputs of one part, built one volume at a time when drawn: ``guided(i)`` is case ``i`` on the
    segmenter's grid (input channels (C,D,H,W), target and lung (1,D,H,W)), ``lung(i)`` the guiding lung on the
    image grid for ``guide.outputs`` at inference.

    Nothing is precomputed: the cases are the cache's memory-mapped volumes, and a volume's guided form lives
    while patches are cropped from it (training) or a sliding window runs over it (inference), so memory
    holds a volume or two, not the part.
    """

    def __init__(self, guide: LesionGuidance, cases: Sequence[dict[str, np.ndarray]], target: str,
                 lungs: Sequence[np.ndarray] | None):
        self.guide, self.cases, self.target, self.lungs = guide, cases, target, lungs

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def channels(self) -> int:
        return 1 + self.guide.extra_channels

    def lung(self, i: int) -> np.ndarray:
        return np.zeros(self.cases[i]["image"].shape, np.uint8) if self.lungs is None else self.lungs[i]

    def guided(self, i: int) -> Guided:
        case = self.cases[i]
        return to_segmenter_grid(self.guide, case["image"], case[self.target], self.lung(i))


def make_volumes(cases, target: str, guide: LesionGuidance, lungs: Sequence[np.ndarray] | None) -> Volumes:
    """``lungs`` guide each case (None: no lungs, e.g. for the lung stage itself with ``none`` guidance)."""
    return Volumes(guide, cases, target, lungs)


def train_net(
    net: torch.nn.Module,
    vols: Volumes,
    loss_fn: Callable,
    *,
    patch: tuple[int, int, int],
    samples: int,
    pos_fraction: float,
    epochs: int,
    batch_size: int,
    lr: float,
    optimiser: str,
    seed: int,
    augment: bool,
    on_epoch: Callable[[int, float], None],
) -> None:
    """Patch training: each epoch draws ``samples`` lesion/background-balanced patches per volume, and
    :func:`bench.train.train_epochs` (the one epoch loop) trains on them."""
    policy = runtime.current()
    runtime.prepare_model(net, policy, spatial_dims=3)
    step = runtime.TrainStep(net, make_optimiser(optimiser, net.parameters(), lr), policy)
    crop = RandCropByPosNegLabel(spatial_size=patch, pos=pos_fraction, neg=1.0 - pos_fraction, num_samples=samples)
    crop.set_random_state(seed)
    # Spatial augmentation moves every channel (image, lung, target, region) together; intensity
    # augmentation touches the CT channel only.
    flip = RandFlip(prob=0.5, spatial_axis=2)
    flip.set_random_state(seed + 1)
    intensity = Compose([RandScaleIntensity(factors=0.1, prob=0.5), RandGaussianNoise(prob=0.3, std=0.02)])
    intensity.set_random_state(seed + 2)
    pad = SpatialPad(patch)
    gen = torch.Generator().manual_seed(seed)
    n_in, n_t = vols.channels, target_channels(vols)
    count = len(vols) * samples  # RandCropByPosNegLabel draws exactly num_samples from each (padded) volume
    on_disk = patches_on_disk(count * (n_in + n_t + 1) * int(np.prod(patch)) * 4, policy)

    def patch_batch(b: torch.Tensor) -> Batch:
        if augment:
            b = torch.stack([convert_to_tensor(flip(bi), track_meta=False) for bi in b])
            ct = torch.stack([convert_to_tensor(intensity(bi[:1]), track_meta=False) for bi in b])
            b = torch.cat([ct, b[:, 1:]], dim=1)
        b = runtime.prepare_batch(b, policy)
        x = b[:, :n_in]
        target, lung = b[:, n_in : n_in + n_t], b[:, n_in + n_t : n_in + n_t + 1]
        return (lambda m: loss_fn(vols.guide.restrict(m(x), lung), target)), len(x)

    with scratch("ct-patches-") if on_disk else contextlib.nullcontext() as space:

        @contextlib.contextmanager
        def epoch_batches(epoch: int) -> Iterator[Iterator[Batch]]:
            folder = space / f"epoch{epoch}" if space is not None else None
            batch_of = _epoch_patches(_draw_patches(vols, crop, pad), count, folder)
            # The same permutation of the same patches either way: the numbers do not depend on where they lie.
            order = torch.randperm(count, generator=gen)
            try:
                yield (patch_batch(batch_of(order[start : start + batch_size]))
                       for start in range(0, len(order), batch_size))
            finally:
                del batch_of  # the epoch's patches (in memory) or their file's descriptor
                if folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)

        train_epochs(net, step, epochs=epochs, epoch_batches=epoch_batches, count=count, on_epoch=on_epoch,
                     accumulate=torch.float64)


def target_channels(vols) -> int:
    """Target channels of a part's volumes: one per label segmented (one output each); ct-lung's: 1."""
    return int(getattr(vols, "target_channels", 1))


def patches_on_disk(nbytes: int, policy: runtime.Runtime) -> bool:
    """Whether an epoch's patches (``nbytes`` in all) are staged in scratch rather than held in memory: as the
    runtime policy places data (``stream`` / ``resident``), else by size (``runtime.HOST_RESIDENT_MAX_BYTES``),
    so memory stays flat in the number of volumes."""
    if policy.data_placement != "auto":
        return policy.data_placement == "stream"
    return nbytes > runtime.HOST_RESIDENT_MAX_BYTES


def _epoch_patches(drawn: Iterator[torch.Tensor], count: int, folder: Path | None
                   ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The epoch's ``count`` patches, taken a batch at a time by position: stacked in memory, or (``folder``
    given) written there row by row as they are drawn and read back by offset (``bench.data.rows``)."""
    if folder is None:
        every = torch.stack(list(drawn))
        return lambda idx: every[idx]
    folder.mkdir()
    write_rows(folder, RowStream(count, ({"patch": p.numpy()} for p in drawn)))
    stored = NpyColumn(folder / "patch.npy")
    return lambda idx: torch.from_numpy(stored.take(idx.numpy()))


def _draw_patches(vols: Volumes, crop: RandCropByPosNegLabel, pad: SpatialPad) -> Iterator[torch.Tensor]:
    """Every volume's patches in volume order, one volume in memory at a time: guided, padded, cropped, dropped."""
    n_in, n_t = vols.channels, target_channels(vols)
    with warnings.catch_warnings():  # lesion-free volumes: MONAI warns and samples background only
        warnings.simplefilter("ignore")
        for i in range(len(vols)):
            g = vols.guided(i)
            # Plain tensors: MONAI's MetaTensor bookkeeping costs more than the tiny CPU convolutions.
            arr = convert_to_tensor(pad(torch.from_numpy(np.concatenate([g.inputs, g.target, g.lung]))),
                                    track_meta=False)
            # patches centred on any target label (one target: its mask itself)
            label = arr[n_in : n_in + 1] if n_t == 1 else arr[n_in : n_in + n_t].amax(0, keepdim=True)
            fg, bg = map_binary_to_indices(label)
            patches = [convert_to_tensor(p, track_meta=False).clone()
                       for p in crop(arr, label=label, fg_indices=fg, bg_indices=bg)]
            del g, arr, label, fg, bg
            yield from patches


@torch.no_grad()
def infer(net: torch.nn.Module, vols: Volumes, patch: tuple[int, int, int], threshold: float = 0.0
          ) -> list[np.ndarray]:
    """Binary predictions (logit > ``threshold``) on whole volumes: sliding window, then ``guide.outputs``."""
    return list(_predictions(net, vols, patch, threshold))


def _predictions(net: torch.nn.Module, vols: Volumes, patch: tuple[int, int, int], threshold: float
                 ) -> Iterator[np.ndarray]:
    for logits in image_logits(net, vols, patch):
        yield decode(logits, threshold, getattr(vols, "class_order", ()))


@torch.no_grad()
def image_logits(net: torch.nn.Module, vols: Volumes, patch: tuple[int, int, int]) -> Iterator[torch.Tensor]:
    """Each volume's float32 logits (K, D, H, W) on the image grid (K outputs: one per target label or region),
    in order: the sliding window over its guided input, mapped back by ``guide.outputs`` (what :func:`infer`
    decodes; ``bench predict`` averages them over fold models as probabilities, then decodes)."""
    dev = device()
    net.to(dev).eval()
    predictor = _never_batch_of_one(net)
    i = 0
    while i < len(vols):  # two volumes at a time: their guided inputs live while their windows run
        inputs = [vols.guided(j).inputs for j in range(i, min(i + 2, len(vols)))]
        if len(inputs) == 2 and inputs[0].shape != inputs[1].shape:
            inputs = inputs[:1]
        xt = torch.from_numpy(np.stack(inputs)).to(dev)
        # The windows of both volumes go to the network together; 2D windows are single slices: many per call.
        with runtime.autocast():
            logits = sliding_window_inference(xt, roi_size=patch, sw_batch_size=8 if patch[0] > 1 else 64,
                                              predictor=predictor, overlap=0.25)
        for k in range(len(inputs)):
            yield to_image_grid(vols.guide, logits[k : k + 1].float(), vols.lung(i + k))[0]
        i += len(inputs)


def decode(logits: torch.Tensor, threshold: float, class_order=()) -> np.ndarray:
    """(K, D, H, W) logits -> a (D, H, W) uint8 mask: one output, logit > ``threshold``; K outputs (one per
    label, non-overlapping labels), label k+1 where output k is the largest of those above ``threshold``;
    with ``class_order`` (nnU-Net regions' ``regions_class_order``) each region's voxels above ``threshold``
    get its value, region by region, later ones over earlier ones, as nnU-Net converts regions back."""
    if class_order:
        out = torch.zeros(logits.shape[1:], dtype=torch.uint8, device=logits.device)
        for channel, value in zip(logits, class_order):
            out[channel > threshold] = int(value)
        return out.cpu().numpy()
    if len(logits) == 1:
        return (logits[0] > threshold).cpu().numpy().astype(np.uint8)
    above = (logits > threshold).any(dim=0)
    return torch.where(above, logits.argmax(dim=0) + 1, 0).cpu().numpy().astype(np.uint8)


def _never_batch_of_one(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``net`` that never sees a 3D batch of one window: on CPU PyTorch runs a stride-1 Conv3d on a single
    sample with its slow reference kernel (``slow_conv3d_forward``; SegResNet on one 32x64x64 window: 419 ms)
    and on two with oneDNN (138 ms for both), so a lone window is run beside a copy of itself. Each sample's
    outputs do not depend on the others in the batch (eval mode: no batch statistics)."""

    def predictor(x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5 and len(x) == 1 and x.device.type == "cpu":
            return net(torch.cat([x, x]))[:1]
        return net(x)

    return predictor


class Predictions:
    """Where a trial's predicted masks go: one (N, D, H, W) uint8 array per part and call. With a scratch
    ``folder`` (the volumes stream) each prediction is written a volume at a time and memory-mapped back, so
    a part's masks are never all in memory; without one (resident volumes) they are stacked in memory. The
    values are the same either way."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self._made = 0

    def predict(self, net: torch.nn.Module, vols: Volumes, patch: tuple[int, int, int], threshold: float = 0.0
                ) -> np.ndarray:
        if not len(vols):
            return np.zeros((0,), np.uint8)
        produced = _predictions(net, vols, patch, threshold)
        if self.folder is None:
            return np.stack(list(produced))
        self._made += 1
        folder = self.folder / f"pred-{self._made}"
        folder.mkdir()
        try:
            write_rows(folder, RowStream(len(vols), ({"pred": p} for p in produced)))
        finally:
            produced.close()
        return np.load(folder / "pred.npy", mmap_mode="r", allow_pickle=False)

    def drop(self, preds: np.ndarray | None) -> None:
        """Free ``preds`` (a superseded epoch's predictions): its scratch file goes (a map of it stays valid)."""
        if isinstance(preds, np.memmap) and preds.filename and self.folder is not None:
            shutil.rmtree(Path(preds.filename).parent, ignore_errors=True)


@contextlib.contextmanager
def predictions(streamed: bool) -> Iterator[Predictions]:
    """A trial's :class:`Predictions`: in a scratch folder (removed at the end) when its volumes stream."""
    if not streamed:
        yield Predictions(None)
        return
    with scratch("predictions-") as folder:
        yield Predictions(folder)
