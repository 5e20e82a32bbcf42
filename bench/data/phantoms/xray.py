"""Frontal chest radiograph phantom with heart/lung masks, a congenital-heart-disease class and site effects.

Anatomy is drawn from parametric shapes on one coordinate grid (fractions of the image width): body
outline, two lung fields closed below by diaphragm domes, ribs as curved bands, spine and mediastinum,
lung vessels as the zero-crossings of band-passed noise fading away from the hila, and a heart outlined row
by row so that each class moves the border where its radiographic sign lives:

- normal: cardiothoracic ratio (CTR) about 0.42-0.50, normal vessel density;
- VSD: left heart enlarged (left border and apex pushed out), more vessels (shunt vascularity);
- ASD: right heart border bulging, prominent pulmonary artery segment, more vessels;
- TOF: boot shape (raised, upturned apex, concave pulmonary segment), fewer vessels.

``difficulty`` in [0, 1] shrinks every class sign towards normal and widens the per-patient spread, so
the classes overlap more. Each patient has 1-3 images (follow-ups with small pose/exposure changes).

Sites (simulated hospitals) differ in intensity curve, noise, collimation border and a burned-in marker,
and in class mix: normals come mostly from site-A and disease mostly from site-B, the seed project's
real confound. A separate set of *site-shifted* patients breaks that association (normals from site-B,
disease from site-A, and an unseen site-D); their cases carry ``meta["split_part"] = "test_shifted"`` so
the standard split puts them in the ``test_shifted`` part, where a classifier that learned the site
instead of the heart loses its score.

Pure numpy/scipy and deterministic from the seed. ``export(cases, out, fmt)`` writes the cases in a real
on-disk format (``dicom`` or ``png``) that the matching reader reads back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.data.case import Case
from bench.data.phantoms.specs import XRAY_CLASSES as CLASSES
from bench.data.phantoms.specs import XrayPhantomSpec

SITES = ("site-A", "site-B", "site-C")
SHIFTED_SITES = ("site-A", "site-B", "site-D")
# Class mix per site (normal, VSD, ASD, TOF): the confound a site-learning classifier exploits.
SITE_CLASS_MIX = {
    "site-A": (0.70, 0.10, 0.10, 0.10),
    "site-B": (0.10, 0.30, 0.30, 0.30),
    "site-C": (0.25, 0.25, 0.25, 0.25),
}
# In the shifted part the association is inverted; site-D is a hospital no training case comes from.
SHIFTED_CLASS_MIX = {
    "site-A": (0.10, 0.30, 0.30, 0.30),
    "site-B": (0.70, 0.10, 0.10, 0.10),
    "site-D": (0.25, 0.25, 0.25, 0.25),
}


@dataclass(frozen=True)
class SiteStyle:
    """How one hospital's detector and workflow leave their mark on every image it produces."""

    gamma: float  # intensity curve (detector/processing LUT)
    offset: float
    noise: float  # quantum + electronic noise, as a fraction of full scale
    border: float  # collimation border width, fraction of the image side
    border_value: float  # what the collimator leaves there (burned-in black or white)
    marker: tuple[float, float]  # (row, col) of the burned-in side marker, fractions of the side
    monochrome1: bool  # the site's DICOM stores inverted grey levels


SITE_STYLES = {
    "site-A": SiteStyle(0.85, 0.02, 0.020, 0.03, 0.0, (0.06, 0.08), False),
    "site-B": SiteStyle(1.20, -0.02, 0.035, 0.06, 1.0, (0.06, 0.86), True),
    "site-C": SiteStyle(1.00, 0.00, 0.028, 0.00, 0.0, (0.88, 0.08), False),
    "site-D": SiteStyle(1.05, 0.04, 0.030, 0.045, 0.0, (0.88, 0.86), False),
}





def _heart_shape(label: str, difficulty: float, rng: np.random.Generator) -> dict[str, float]:
    """Heart geometry as fractions of the thorax width; the class moves it along its radiographic sign.

    ``effect`` scales every class sign (1 = textbook, 0 = indistinguishable from normal); the
    per-patient factor drawn around it is what makes the classes overlap at high difficulty.
    """
    effect = (1.0 - 0.75 * difficulty) * rng.uniform(1.0 - 0.6 * difficulty, 1.0 + 0.3 * difficulty)
    shape = {
        # normal: left extent ~0.28, right ~0.18 of the thorax width -> CTR ~0.42-0.50
        "left": rng.uniform(0.26, 0.30),
        "right": rng.uniform(0.16, 0.20),
        "top": rng.uniform(0.46, 0.49),  # as fractions of the image height
        "bottom": rng.uniform(0.74, 0.77),
        "apex_row": rng.uniform(0.80, 0.88),  # where the left border is widest (0 = top, 1 = bottom)
        "pa_bulge": 0.0,  # pulmonary artery segment (upper left border): + prominent, - concave
        "right_bulge": 0.0,
        "apex_lift": 0.0,
        "vessels": rng.uniform(0.9, 1.1),
    }
    if label == "VSD":
        shape["left"] += effect * rng.uniform(0.06, 0.10)
        shape["bottom"] += effect * 0.02
        shape["vessels"] *= 1 + effect * rng.uniform(0.5, 0.8)
    elif label == "ASD":
        shape["right"] += effect * rng.uniform(0.05, 0.08)
        shape["right_bulge"] = effect * rng.uniform(0.6, 1.0)
        shape["pa_bulge"] = effect * rng.uniform(0.5, 0.9)
        shape["vessels"] *= 1 + effect * rng.uniform(0.4, 0.7)
    elif label == "TOF":
        shape["left"] += effect * rng.uniform(0.01, 0.03)
        shape["apex_lift"] = effect * rng.uniform(0.6, 1.0)
        shape["apex_row"] -= effect * 0.25
        shape["pa_bulge"] = -effect * rng.uniform(0.6, 1.0)
        shape["vessels"] *= 1 - effect * rng.uniform(0.4, 0.6)
    return shape


def _heart_borders(shape: dict[str, float], rows: np.ndarray, cx: float, half_thorax: float):
    """Right (image-left) and left (image-right) heart border x for each row; NaN outside the heart."""
    top, bottom = shape["top"], shape["bottom"]
    t = (rows - top) / (bottom - top)
    inside = (t >= 0) & (t <= 1)
    t = np.clip(t, 0, 1)
    # right border: round atrial contour, widest low down; ASD adds a bulge over the right atrium
    right = shape["right"] * np.clip(np.sin(np.pi * (0.15 + 0.85 * t)), 0, 1) ** 0.6
    right *= 1 + 0.25 * shape["right_bulge"] * np.exp(-(((t - 0.6) / 0.18) ** 2))
    # left border: aortic knob/pulmonary segment above, ventricle below peaking at the apex row
    apex = shape["apex_row"]
    ventricle = np.exp(-(((t - apex) / 0.45) ** 2))
    left = shape["left"] * (0.55 + 0.45 * ventricle)
    left *= 1 + 0.18 * shape["pa_bulge"] * np.exp(-(((t - 0.22) / 0.09) ** 2))
    # TOF: the apex is lifted off the diaphragm and upturned, so the lower left border falls away
    left *= 1 - 0.35 * shape["apex_lift"] * np.clip((t - apex) / max(1 - apex, 1e-3), 0, 1) ** 1.5
    # the bottom of the heart rounds off onto the diaphragm
    taper = np.sqrt(np.clip((1 - t) / 0.12, 0, 1))
    x_right = cx - 2 * half_thorax * right * taper
    x_left = cx + 2 * half_thorax * left * taper
    return np.where(inside, x_right, np.nan), np.where(inside, x_left, np.nan)


def _render(shape: dict[str, float], size: int, rng: np.random.Generator, style: SiteStyle, follow_up: bool):
    """One radiograph with its heart and lung masks and the true CTR measured on the masks."""
    from scipy import ndimage  # imported on use: `bench tasks` reads only CLASSES

    # Pose and exposure of this visit: small shift/rotation/scale on follow-ups only.
    dx, dy = (rng.uniform(-0.02, 0.02, 2) if follow_up else (0.0, 0.0))
    angle = np.deg2rad(rng.uniform(-3, 3)) if follow_up else 0.0
    scale = rng.uniform(0.97, 1.03) if follow_up else 1.0
    exposure = rng.uniform(0.92, 1.08) if follow_up else 1.0

    grid = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy0, xx0 = np.meshgrid(grid, grid, indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    xx = 0.5 + ((xx0 - 0.5 - dx) * c + (yy0 - 0.5 - dy) * s) / scale
    yy = 0.5 + (-(xx0 - 0.5 - dx) * s + (yy0 - 0.5 - dy) * c) / scale
    cx, half_thorax = 0.5, 0.36

    body = ((xx - cx) / 0.46) ** 2 + ((yy - 0.55) / 0.62) ** 2 < 1
    # Diaphragm domes: the right (image-left) dome sits higher, as in most adults.
    dome = {-1: 0.78, 1: 0.81}
    lung_field = np.zeros((size, size), bool)
    for side in (-1, 1):
        lx = cx + side * 0.19
        u = (xx - lx) / 0.17
        dome_y = dome[side] - 0.07 * (1 - np.clip(u, -1, 1) ** 2)
        apex_y = 0.17 + 0.06 * u**2
        lung_field |= (np.abs(u) < 1) & (yy > apex_y) & (yy < dome_y + 0.05 * np.abs(u) ** 3)
    mediastinum = (np.abs(xx - cx) < 0.055) & (yy < 0.55)

    rows = (np.arange(size, dtype=np.float32) + 0.5) / size
    # borders are computed on the *patient's* rows, then looked up through the pose transform
    xr, xl = _heart_borders(shape, rows, cx, half_thorax)
    row_idx = np.clip((yy * size).astype(int), 0, size - 1)
    with np.errstate(invalid="ignore"):
        heart = (xx > xr[row_idx]) & (xx < xl[row_idx]) & ~np.isnan(xr[row_idx])
    lungs = lung_field & ~heart & ~mediastinum
    left_lung = lungs & (xx > cx)  # patient's left = image right
    right_lung = lungs & (xx <= cx)

    image = np.where(body, 0.50, 0.04).astype(np.float32)
    below = body & ~lung_field & (yy > 0.7)
    image[below] = 0.70  # abdomen under the diaphragm
    image[lung_field] = 0.16
    # Ribs: curved bands crossing each lung field, denser than lung.
    phase = (yy - 0.16 - 0.35 * (xx - cx) ** 2) / 0.065
    ribs = ((phase % 1.0) < 0.32) & (phase > 0) & (phase < 10) & body & (np.abs(xx - cx) > 0.04)
    image += 0.10 * ribs * (lung_field | (np.abs(xx - cx) < 0.42))
    # Vessels: zero-crossings of band-passed noise (worm-like lines), stronger near the hila.
    noise = rng.standard_normal((size, size)).astype(np.float32)
    band = ndimage.gaussian_filter(noise, size / 90) - ndimage.gaussian_filter(noise, size / 30)
    ridge = np.exp(-((band / (band.std() + 1e-6) / 0.35) ** 2))
    hilum = np.exp(-np.minimum((xx - cx + 0.12) ** 2 + (yy - 0.45) ** 2, (xx - cx - 0.12) ** 2 + (yy - 0.45) ** 2)
                   / 0.03)
    image += lungs * ridge * (0.06 + 0.22 * hilum) * shape["vessels"]
    image[mediastinum & body] = 0.62
    image[(np.abs(xx - cx) < 0.03) & body] = 0.78  # spine
    image[heart] = 0.66 + 0.04 * (yy[heart] - 0.5)

    image = ndimage.gaussian_filter(image, 0.6 * size / 128)
    image = np.clip(image * exposure + style.offset, 0, 1) ** style.gamma
    image += rng.normal(0, style.noise, image.shape).astype(np.float32)
    _burn_in(image, style, size)
    image = np.clip(image, 0, 1).astype(np.float32)

    ctr = _ctr(heart, left_lung | right_lung)
    return image, heart.astype(np.uint8), left_lung.astype(np.uint8), right_lung.astype(np.uint8), ctr


def _burn_in(image: np.ndarray, style: SiteStyle, size: int) -> None:
    """Collimation border and an 'L'-shaped lead marker, the site's fingerprint on every image."""
    b = round(style.border * size)
    if b:
        image[:b], image[-b:], image[:, :b], image[:, -b:] = (style.border_value,) * 4
    r, c = int(style.marker[0] * size), int(style.marker[1] * size)
    k = max(2, size // 32)
    image[r : r + 3 * k, c : c + k] = 1.0
    image[r + 2 * k : r + 3 * k, c : c + 2 * k] = 1.0


def _ctr(heart: np.ndarray, lungs: np.ndarray) -> float:
    """Cardiothoracic ratio: widest heart extent over widest thorax (outer lung borders)."""
    return float(heart.any(axis=0).sum() / max(_width(lungs), 1))


def _width(mask: np.ndarray) -> int:
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[-1] - cols[0] + 1) if len(cols) else 0


def _patients(spec: XrayPhantomSpec, rng: np.random.Generator) -> list[tuple[str, str, str, str]]:
    """(patient pseudonym, site, class, split part) for every patient, main set then shifted set."""
    out = []
    for p in range(spec.n_patients):
        site = SITES[p % len(SITES)]
        out.append((f"P{p:04d}", site, CLASSES[rng.choice(len(CLASSES), p=SITE_CLASS_MIX[site])], ""))
    for p in range(spec.n_shifted_patients):
        site = SHIFTED_SITES[p % len(SHIFTED_SITES)]
        out.append((f"S{p:04d}", site, CLASSES[rng.choice(len(CLASSES), p=SHIFTED_CLASS_MIX[site])],
                    "test_shifted"))
    return out


def generate(spec: XrayPhantomSpec = XrayPhantomSpec()) -> list[Case]:  # noqa: B008  (frozen: immutable)
    """Make the phantom data set; the same spec always gives the same cases, bit for bit.

    Example:
        >>> cases = generate(XrayPhantomSpec(n_patients=3, n_shifted_patients=0, size=64))
        >>> sorted(cases[0].masks), cases[0].image.shape
        (['heart', 'lung_left', 'lung_right'], (64, 64))
    """
    return list(iter_cases(spec))


def iter_cases(spec: XrayPhantomSpec = XrayPhantomSpec()) -> Iterator[Case]:  # noqa: B008  (frozen: immutable)
    """The cases of ``generate(spec)``, one at a time (for writing a large phantom without holding it)."""
    rng = np.random.default_rng(spec.seed)
    for patient, site, label, part in _patients(spec, rng):
        shape = _heart_shape(label, spec.difficulty, rng)
        style = SITE_STYLES[site]
        for visit in range(int(rng.integers(1, spec.max_images_per_patient + 1))):
            image, heart, lung_l, lung_r, ctr = _render(shape, spec.size, rng, style, follow_up=visit > 0)
            yield (
                Case(
                    id=f"{patient}-{visit}",
                    patient_id=patient,
                    site=site,
                    image=image,
                    # 0.35 mm detector pitch at 1024 px (~36 cm field), scaled with the image size
                    spacing=(0.35 * 1024 / spec.size,) * 2,
                    masks={"heart": heart, "lung_left": lung_l, "lung_right": lung_r},
                    labels={"class": label, "ctr": round(ctr, 4)},
                    meta={"split_part": part} if part else {},
                )
            )


def export(cases: Iterable[Case], out: str | Path, fmt: str = "png") -> Path:
    """Write cases in a real on-disk format through that format's writer (``dicom`` or ``png``), one case at
    a time as ``cases`` yields them.

    Example:
        >>> export(generate(XrayPhantomSpec(n_patients=2, n_shifted_patients=0, size=64)), "/tmp/ph", "dicom")
        PosixPath('/tmp/ph')
    """
    from bench.data.formats import FORMATS

    writer = FORMATS.create(fmt)
    if not hasattr(writer, "write"):
        from bench.errors import DataError

        writable = [n for n in FORMATS.names() if hasattr(FORMATS.get(n), "write")]
        raise DataError(f"{out}: the export format must be one of {writable}, but got '{fmt}' (read-only).")
    return writer.write(cases, out)


def make_phantom(out: str | Path, fmt: str = "png", n_patients: int = 100, seed: int = 0, size: int = 128,
                 difficulty: float = 0.5, n_shifted_patients: int = 30) -> Path:
    """Generate the phantom and write it in ``fmt`` (what `bench datasets make-phantom` calls), one case in
    memory at a time: 64k patients write in the memory of one."""
    spec = XrayPhantomSpec(n_patients=n_patients, n_shifted_patients=n_shifted_patients, size=size, seed=seed,
                           difficulty=difficulty)
    return export(iter_cases(spec), out, fmt)
