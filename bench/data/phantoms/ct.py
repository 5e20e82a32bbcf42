"""Chest CT phantom: HU volumes with lungs, airways, vessels and lung lesions, plus look-alikes outside the lungs.

Each volume is int16 Hounsfield units on an (z, y, x) grid (rows run anterior→posterior, columns patient
right→left, as a DICOM axial slice is displayed). Anatomy: air outside the body (−1000), subcutaneous fat
(≈ −100), muscle/mediastinum (≈ 40), spine and ribs (300-700), two lungs (≈ −850 with smooth texture)
crossed by vessels (≈ 40) and bronchi (air), a trachea in the mediastinum. Lesions by class:

* ``normal``: none;
* ``nodule``: 1-3 solid nodules, 3-30 mm, 0-60 HU; about a third juxta-pleural (touching the chest wall);
* ``GGO``: 1-2 ground-glass opacities, 10-30 mm, −600…−300 HU with soft edges.

Every case also gets 1-3 nodule-like blobs *outside* the lungs (in mediastinal fat or the chest-wall fat),
so a lesion segmenter that is not restricted to the lung has something to get wrong. Ground truth: ``lung``
(1 = right, 2 = left), ``lesion`` (binary, always inside the lung) and the case label. Pure numpy/scipy,
deterministic from the seed; 30 volumes of 32×64×64 take about 2.5 s.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bench.data.case import Case
from bench.data.phantoms.specs import CT_CLASSES as CLASSES
from bench.data.phantoms.specs import CtPhantomSpec

SITES = ("site-A", "site-B")
SITE_NOISE_HU = {"site-A": 12.0, "site-B": 22.0}
CLASS_MIX = (0.3, 0.4, 0.3)





def _grid(spec: CtPhantomSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel-centre coordinates in mm, origin at the volume centre (z up, y posterior, x patient-left)."""
    axes = [(np.arange(n) - (n - 1) / 2) * s for n, s in zip(spec.shape, spec.spacing)]
    return np.meshgrid(*axes, indexing="ij")


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    from scipy import ndimage  # imported on use: `bench tasks` reads only CLASSES

    field = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-6)


def _segment_distance(points, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance (mm) of every voxel centre to the segment a→b."""
    z, y, x = points
    ab = b - a
    t = ((z - a[0]) * ab[0] + (y - a[1]) * ab[1] + (x - a[2]) * ab[2]) / max(float(ab @ ab), 1e-6)
    t = np.clip(t, 0.0, 1.0)
    return np.sqrt((z - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 + (x - a[2] - t * ab[2]) ** 2)


def _anatomy(rng: np.random.Generator) -> dict:
    """Patient-level geometry (mm); follow-up scans reuse it with a little jitter."""
    return {
        "body": (rng.uniform(78, 92), rng.uniform(108, 122)),  # semi-axes y, x
        "fat": rng.uniform(8, 15),
        "lung": (rng.uniform(70, 78), rng.uniform(50, 58), rng.uniform(34, 40)),  # semi-axes z, y, x
        "lung_x": rng.uniform(46, 52),
        "hilum_z": rng.uniform(5, 20),
    }


def _render(spec: CtPhantomSpec, anat: dict, label: str, site: str, rng: np.random.Generator):
    from scipy import ndimage  # imported on use: `bench tasks` reads only CLASSES

    z, y, x = _grid(spec)
    pts = (z, y, x)
    vox = min(spec.spacing)
    by, bx = anat["body"]
    body_r = np.sqrt((y / by) ** 2 + (x / bx) ** 2)
    body = body_r <= 1.0
    hu = np.full(spec.shape, -1000.0, np.float32)
    hu[body] = -100.0  # fat first, muscle inside it
    inner = np.sqrt((y / (by - anat["fat"])) ** 2 + (x / (bx - anat["fat"])) ** 2) <= 1.0
    hu[inner] = 40.0 + 8.0 * _smooth_noise(rng, spec.shape, 1.5)[inner]

    # Lungs: ellipsoids either side of the mediastinum, cut from below by the diaphragm dome.
    lz, ly, lx = anat["lung"]
    lung = np.zeros(spec.shape, np.uint8)
    for side, sign in ((1, -1.0), (2, 1.0)):  # 1 = right lung (image left), 2 = left lung
        cx = sign * anat["lung_x"]
        r = ((z - 10) / lz) ** 2 + ((y + 2) / ly) ** 2 + ((x - cx) / lx) ** 2
        dome = z > -lz + 10 + 30 * (1 - np.clip(((y / ly) ** 2 + ((x - cx) / lx) ** 2), 0, 1))
        lung[(r <= 1.0) & dome & inner] = side
    lung_any = lung > 0
    hu[lung_any] = -850.0 + 35.0 * _smooth_noise(rng, spec.shape, 1.0)[lung_any]

    # Mediastinal fat pocket (anterior, upper) where look-alike nodes will sit.
    med_fat = (((z - 25) / 35) ** 2 + ((y + 35) / 18) ** 2 + (x / 16) ** 2 <= 1.0) & ~lung_any
    hu[med_fat] = -90.0

    # Vessels: tapering tubes from each hilum towards the periphery (inside the lungs only).
    for sign in (-1.0, 1.0):
        hilum = np.array([anat["hilum_z"], 0.0, sign * 22.0])
        for _ in range(int(rng.integers(6, 10))):
            end = hilum + np.array([rng.uniform(-55, 45), rng.uniform(-40, 45), sign * rng.uniform(20, 50)])
            d = _segment_distance(pts, hilum, end)
            vessel = (d <= rng.uniform(1.2, 3.0)) & lung_any
            hu[vessel] = 40.0

    # Airways: trachea in the mediastinum down to the carina, then main bronchi into each lung.
    carina = np.array([anat["hilum_z"] + 15, -5.0, 0.0])
    trachea = _segment_distance(pts, np.array([200.0, -5.0, 0.0]), carina) <= 8.0
    hu[trachea & inner] = -1000.0
    for sign in (-1.0, 1.0):
        end = carina + np.array([-25.0, 5.0, sign * 35.0])
        hu[(_segment_distance(pts, carina, end) <= 4.5) & inner] = -990.0

    # Bone: spine behind the mediastinum, ribs as arcs in the chest wall every ~25 mm of z.
    spine = (np.sqrt((y - (by - 28)) ** 2 + x**2) <= 14.0) & inner
    hu[spine] = 350.0 + 300.0 * (np.sqrt((y - (by - 28)) ** 2 + x**2) > 10.0)[spine]
    rib_ring = (body_r > 0.80) & (body_r < 0.88) & ~lung_any & inner
    rib_z = np.sin((z + 3.0 * np.cos(x / 30.0)) * 2 * np.pi / 25.0) > 0.6
    hu[rib_ring & rib_z] = 600.0

    # Look-alike blobs outside the lungs: same size and density as solid nodules.
    fat_wall = body & ~inner
    for _ in range(int(rng.integers(1, 4))):
        region = med_fat if rng.random() < 0.5 and med_fat.any() else fat_wall
        idx = np.argwhere(region)
        c = idx[rng.integers(len(idx))]
        centre = np.array([z[tuple(c)], y[tuple(c)], x[tuple(c)]])
        rad = rng.uniform(4, 10)
        dist = np.sqrt((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2)
        blob = (dist <= rad) & body & ~lung_any
        hu[blob] = rng.uniform(0, 60)

    lesion = np.zeros(spec.shape, bool)
    if label == "nodule":
        for _ in range(int(rng.integers(1, 4))):
            _add_lesion(hu, lesion, lung_any, pts, rng, vox, kind="solid")
    elif label == "GGO":
        for _ in range(int(rng.integers(1, 3))):
            _add_lesion(hu, lesion, lung_any, pts, rng, vox, kind="ggo")

    # Scanner: slight blur (point spread) and site-specific noise.
    hu = ndimage.gaussian_filter(hu, 0.5)
    hu += rng.normal(0.0, SITE_NOISE_HU[site], spec.shape).astype(np.float32)
    image = np.clip(np.round(hu), -1024, 3071).astype(np.int16)
    return image, lung, lesion.astype(np.uint8)


def _add_lesion(hu, lesion, lung, pts, rng, vox: float, kind: str) -> None:
    from scipy import ndimage  # imported on use: `bench tasks` reads only CLASSES

    z, y, x = pts
    if kind == "solid":
        diameter = float(np.exp(rng.uniform(np.log(3.0), np.log(30.0))))
        density = rng.uniform(0.0, 60.0)
        juxta = rng.random() < 0.35
    else:
        diameter = rng.uniform(10.0, 30.0)
        density = rng.uniform(-600.0, -300.0)
        juxta = False
    radius = diameter / 2
    depth = ndimage.distance_transform_edt(lung) * vox
    if juxta:  # centre just inside the pleura, so the nodule abuts the chest wall
        candidates = np.argwhere((depth > 0) & (depth <= max(vox, 0.4 * radius)))
    else:
        candidates = np.argwhere(depth >= radius + vox)
        if len(candidates) == 0:
            candidates = np.argwhere(depth >= depth.max() * 0.8)
    c = tuple(candidates[rng.integers(len(candidates))])
    stretch = rng.uniform(0.8, 1.25, 3) if kind == "ggo" else np.ones(3)
    dist = np.sqrt(((z - z[c]) / stretch[0]) ** 2 + ((y - y[c]) / stretch[1]) ** 2 + ((x - x[c]) / stretch[2]) ** 2)
    inside = (dist <= radius) & (lung > 0)
    if not inside.any():
        inside[c] = True  # sub-voxel nodule: keep at least its centre voxel
    # Partial-volume edge: density blends into the lung over one voxel.
    weight = np.clip((radius + vox / 2 - dist) / vox, 0.0, 1.0) * (lung > 0)
    weight[inside] = np.maximum(weight[inside], 0.7)
    if kind == "ggo":
        weight *= np.clip(0.8 + 0.2 * rng.standard_normal(weight.shape), 0.5, 1.0)
    hu[:] = hu * (1 - weight) + density * weight
    lesion |= inside


def generate(spec: CtPhantomSpec = CtPhantomSpec()) -> list[Case]:  # noqa: B008  (frozen: immutable)
    """Make the phantom data set; the same spec always gives the same volumes, bit for bit.

    Each patient has 1..max_scans_per_patient scans (follow-ups with jittered anatomy and new lesions of the
    same class), one site, and a pseudonymous id; case ids are ``P0000-0``, ``P0000-1``, ...
    """
    return list(iter_cases(spec))


def iter_cases(spec: CtPhantomSpec = CtPhantomSpec()) -> Iterator[Case]:  # noqa: B008  (frozen: immutable)
    """The cases of ``generate(spec)``, one volume at a time (a cache build holds one, not the set)."""
    for p in range(spec.n_patients):
        # One stream per patient and one per scan, so ids, classes and anatomy do not depend on the
        # volume shape (the smoke preset's tiny volumes share the standard split with the default ones).
        rng = np.random.default_rng([spec.seed, p])
        site = SITES[p % len(SITES)]
        label = CLASSES[rng.choice(len(CLASSES), p=CLASS_MIX)]
        anat = _anatomy(rng)
        patient = f"P{p:04d}"
        for visit in range(int(rng.integers(1, spec.max_scans_per_patient + 1))):
            jittered = {k: (tuple(v * rng.uniform(0.97, 1.03) for v in np.atleast_1d(v)) if isinstance(v, tuple)
                            else v * rng.uniform(0.97, 1.03)) for k, v in anat.items()}
            image, lung, lesion = _render(spec, jittered, label, site, np.random.default_rng([spec.seed, p, visit]))
            yield (
                Case(
                    id=f"{patient}-{visit}",
                    patient_id=patient,
                    site=site,
                    image=image,
                    spacing=spec.spacing,
                    masks={"lung": lung, "lesion": lesion},
                    labels={"class": label},
                    meta={"modality": "CT", "units": "HU", "axes": "zyx"},
                )
            )
