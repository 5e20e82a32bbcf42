"""Organ phantom for the generic segmentation task: an organ with enclosed lesions, in 3D or 2D.

Each case is a body (ellipsoid, or ellipse in 2D) holding one organ (label 1, an ellipsoid with a wavy
surface) with 0-3 lesions (label 2) that lie wholly inside it; every fourth case has none. Each case also
holds 1-2 lesion-like blobs in the body *outside* the organ, unlabelled, so a lesion segmenter that ignores
the organ has something to get wrong and organ guidance has something to fix. Intensities per channel
(arbitrary units within 0..255, so the 2D variant fits PNG): channel 0 shows lesions and look-alikes
darker than the organ (as a hypodense liver tumour on CT); channel 1 (if asked for) shows lesions bright
and look-alikes like the body, so the channels together tell them apart. Gaussian noise and a slight blur.
Deterministic from the seed (one random stream per case), pure numpy/scipy, one case in memory at a time.

Example:
    >>> case = next(generate_organ(OrganPhantomSpec(n_patients=1)))
    >>> case.image.shape, sorted(np.unique(case.masks["label"]).tolist())  # doctest: +SKIP
    ((1, 24, 48, 48), [0, 1, 2])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bench.data.case import Case

ORGAN_LABELS = {"background": 0, "organ": 1, "lesion": 2}
CHANNEL_NAMES = ("T1", "T2", "PD")
# Per channel: background, body, organ, lesion, look-alike (arbitrary units, 0..255 with noise).
CONTRAST = ((10.0, 100.0, 150.0, 95.0, 95.0), (10.0, 70.0, 100.0, 170.0, 70.0), (10.0, 120.0, 90.0, 60.0, 130.0))
NOISE = 8.0


@dataclass(frozen=True)
class OrganPhantomSpec:
    """What to generate; ``shape`` None takes (24, 48, 48) in 3D and (96, 96) in 2D.

    Spacing is (3.0, 1.5, 1.5) mm in 3D (a 72 mm cube at the default shape) and 1.0 mm in 2D (the PNG
    layout stores none, so it reads back as unknown).
    """

    n_patients: int = 20
    shape: tuple[int, ...] | None = None
    dims: int = 3
    channels: int = 1
    seed: int = 0

    def __post_init__(self):
        from bench.errors import ConfigError

        if self.dims not in (2, 3):
            raise ConfigError(f"an organ phantom must have dims 2 or 3, but got {self.dims}.")
        if not 1 <= self.channels <= len(CHANNEL_NAMES):
            raise ConfigError(f"an organ phantom must have 1..{len(CHANNEL_NAMES)} channels, but got "
                              f"{self.channels}.")
        if self.shape is not None and len(self.shape) != self.dims:
            raise ConfigError(f"an organ phantom's shape must have {self.dims} axes, but got {self.shape}.")
        if self.n_patients < 1:
            raise ConfigError(f"an organ phantom needs at least 1 patient, but got {self.n_patients}.")

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.shape) if self.shape else ((24, 48, 48) if self.dims == 3 else (96, 96))

    @property
    def spacing(self) -> tuple[float, ...]:
        """Spacing in mm that keeps the field of view of the default shape whatever ``shape`` is."""
        default = (24, 48, 48) if self.dims == 3 else (96, 96)
        base = (3.0, 1.5, 1.5) if self.dims == 3 else (1.0, 1.0)
        return tuple(float(b * d / n) for b, d, n in zip(base, default, self.grid))

    @property
    def channel_names(self) -> tuple[str, ...]:
        return CHANNEL_NAMES[: self.channels]

    def name(self) -> str:
        return (f"phantom-organ-v1-{self.dims}d-c{self.channels}-n{self.n_patients}-s"
                f"{'x'.join(map(str, self.grid))}-seed{self.seed}")


def generate_organ(spec: OrganPhantomSpec = OrganPhantomSpec()) -> Iterator[Case]:
    """The phantom's cases one at a time (ids ``organ_000``, ...; each case its own patient)."""
    for i in range(spec.n_patients):
        rng = np.random.default_rng([spec.seed, i])
        image, label = _render(spec, rng, with_lesions=i % 4 != 3)
        yield Case(
            id=f"organ_{i:03d}", patient_id=f"organ_{i:03d}", image=image, spacing=spec.spacing,
            masks={"label": label}, meta={"channels": list(spec.channel_names), "label_values": dict(ORGAN_LABELS),
                                          "axes": "zyx" if spec.dims == 3 else "yx"},
        )


def _render(spec: OrganPhantomSpec, rng: np.random.Generator, with_lesions: bool):
    from scipy import ndimage  # imported on use: listing tasks never draws a phantom

    shape, spacing = spec.grid, spec.spacing
    fov = np.array([n * s for n, s in zip(shape, spacing)])
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)]
    pts = np.meshgrid(*axes, indexing="ij")
    body = _ellipsoid(pts, np.zeros(spec.dims), fov * rng.uniform(0.40, 0.46, spec.dims))
    # Organ: off-centre ellipsoid, surface made wavy by smooth noise so no two organs share a shape.
    centre = fov * rng.uniform(-0.08, 0.08, spec.dims)
    semi = fov * rng.uniform(0.20, 0.27, spec.dims)
    wobble = ndimage.gaussian_filter(rng.standard_normal(shape), 3.0)
    wobble /= np.abs(wobble).max() + 1e-6
    organ = (_radius(pts, centre, semi) <= 1.0 + 0.12 * wobble) & body
    lesion = np.zeros(shape, bool)
    vox = min(spacing)
    if with_lesions:
        # Enclosed: every lesion voxel at least one voxel (the coarsest axis) from the organ's surface, so the
        # lesion is a hole in the organ's label; a lesion too big for the organ is shrunk to fit.
        depth = ndimage.distance_transform_edt(organ, sampling=spacing)
        margin = max(spacing) + vox
        for _ in range(int(rng.integers(1, 4))):
            radius = min(rng.uniform(2.5, 6.0) * vox, float(depth.max()) - margin)
            where = np.argwhere(depth >= radius + margin)
            if radius < vox or not len(where):
                continue
            c = where[rng.integers(len(where))]
            lesion |= (_distance(pts, np.array([p[tuple(c)] for p in pts])) <= radius) & organ
    # Look-alikes: lesion-sized blobs in the body, outside the organ (not labelled).
    lookalike = np.zeros(shape, bool)
    outside = ndimage.distance_transform_edt(body & ~organ, sampling=spacing)
    for _ in range(int(rng.integers(1, 3))):
        radius = rng.uniform(2.5, 5.0) * vox
        where = np.argwhere(outside >= radius + vox)
        if len(where):
            c = where[rng.integers(len(where))]
            lookalike |= (_distance(pts, np.array([p[tuple(c)] for p in pts])) <= radius) & ~organ
    label = organ.astype(np.uint8)
    label[lesion] = ORGAN_LABELS["lesion"]
    image = np.empty((spec.channels, *shape), np.float32)
    for k in range(spec.channels):
        bg, body_v, organ_v, lesion_v, look_v = CONTRAST[k]
        plane = np.full(shape, bg, np.float32)
        plane[body] = body_v
        plane[organ] = organ_v
        plane[lesion] = lesion_v
        plane[lookalike] = look_v
        plane = ndimage.gaussian_filter(plane, 0.6) + rng.normal(0.0, NOISE, shape).astype(np.float32)
        image[k] = np.clip(plane, 0.0, 255.0)
    return image, label


def _radius(pts, centre, semi) -> np.ndarray:
    return np.sqrt(sum(((p - c) / s) ** 2 for p, c, s in zip(pts, centre, semi)))


def _ellipsoid(pts, centre, semi) -> np.ndarray:
    return _radius(pts, centre, semi) <= 1.0


def _distance(pts, centre) -> np.ndarray:
    return np.sqrt(sum((p - c) ** 2 for p, c in zip(pts, centre)))
