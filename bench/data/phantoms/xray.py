"""Frontal chest radiograph phantom with a heart mask and a congenital-heart-disease class.

Classes follow the radiographic signs used in the seed project:
normal (cardiothoracic ratio about 0.42-0.50), VSD (left heart enlarged), ASD (right heart border
bulging), TOF (boot shape: raised apex, narrow base). Each patient has 1-3 images (follow-ups with small
pose/exposure changes) from one simulated site. Pure numpy/scipy and deterministic from the seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bench.data.case import Case

CLASSES = ("normal", "VSD", "ASD", "TOF")
SITES = ("site-A", "site-B", "site-C")
# Each site's class mix echoes the seed's confound (normals mostly from one hospital).
SITE_CLASS_MIX = {
    "site-A": (0.55, 0.15, 0.15, 0.15),
    "site-B": (0.15, 0.30, 0.30, 0.25),
    "site-C": (0.25, 0.25, 0.25, 0.25),
}
SITE_GAMMA = {"site-A": 0.9, "site-B": 1.1, "site-C": 1.0}


@dataclass(frozen=True)
class XrayPhantomSpec:
    n_patients: int = 100
    size: int = 128
    seed: int = 0
    max_images_per_patient: int = 3

    def name(self) -> str:
        return f"phantom-xray-v1-n{self.n_patients}-s{self.size}-seed{self.seed}"


def _heart_shape(label: str, rng: np.random.Generator) -> dict[str, float]:
    """Heart geometry as fractions of the thorax width; the class moves it along its radiographic sign."""
    shape = {
        "left": rng.uniform(0.15, 0.17),  # extent left of the midline (patient's left = image right)
        "right": rng.uniform(0.11, 0.13),
        "height": rng.uniform(0.22, 0.26),
        "apex_lift": 0.0,
        "right_bulge": 0.0,
    }
    if label == "VSD":
        shape["left"] += rng.uniform(0.05, 0.08)
        shape["height"] += rng.uniform(0.02, 0.04)
    elif label == "ASD":
        shape["right"] += rng.uniform(0.04, 0.06)
        shape["right_bulge"] = rng.uniform(0.5, 0.8)
    elif label == "TOF":
        shape["left"] += rng.uniform(0.02, 0.04)
        shape["apex_lift"] = rng.uniform(0.5, 0.8)
        shape["height"] -= rng.uniform(0.02, 0.04)
    return shape


def _render(shape: dict[str, float], size: int, rng: np.random.Generator, gamma: float, jitter: float):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    cx = 0.5 + jitter * rng.uniform(-0.02, 0.02)
    cy = 0.5 + jitter * rng.uniform(-0.02, 0.02)
    image = np.full((size, size), 0.08, np.float32)

    body = ((xx - cx) / 0.44) ** 2 + ((yy - cy - 0.02) / 0.5) ** 2 < 1
    image[body] = 0.55
    lung_y = cy - 0.06
    lungs = np.zeros_like(body)
    for side in (-1, 1):
        lungs |= ((xx - cx - side * 0.17) / 0.14) ** 2 + ((yy - lung_y) / 0.3) ** 2 < 1
    vessels = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), size / 64)
    image[lungs] = 0.2 + 0.08 * vessels[lungs]
    spine = (np.abs(xx - cx) < 0.035) & body
    image[spine] = 0.8

    # heart: an ellipse sitting on the left diaphragm, extended by class-specific bulges
    hy = cy + 0.12
    left, right, height = shape["left"], shape["right"], shape["height"]
    hx = cx + (left - right) / 2
    half_w = (left + right) / 2
    heart = ((xx - hx) / half_w) ** 2 + ((yy - hy) / (height / 2)) ** 2 < 1
    if shape["right_bulge"]:
        bulge = ((xx - (cx - right + 0.02)) / 0.05) ** 2 + ((yy - hy + 0.02) / 0.07) ** 2 < shape["right_bulge"]
        heart |= bulge
    if shape["apex_lift"]:
        apex = ((xx - (cx + left - 0.05)) / 0.06) ** 2 + ((yy - hy + 0.08) / 0.05) ** 2 < shape["apex_lift"]
        heart = (heart & ~(((xx - hx - 0.02) / 0.04) ** 2 + ((yy - hy + height / 2) / 0.04) ** 2 < 1)) | apex
    heart &= body
    image[heart] = 0.75

    image = ndimage.gaussian_filter(image, 0.8) + rng.normal(0, 0.03, image.shape).astype(np.float32)
    image = np.clip(image, 0, 1) ** gamma
    # cardiothoracic ratio: widest heart extent over widest thorax (outer lung borders)
    ctr = heart.any(axis=0).sum() / max(lungs.any(axis=0).sum(), 1)
    return image.astype(np.float32), heart.astype(np.uint8), float(ctr)


def generate(spec: XrayPhantomSpec = XrayPhantomSpec()) -> list[Case]:
    """Make the phantom data set; the same spec always gives the same cases, bit for bit."""
    rng = np.random.default_rng(spec.seed)
    cases: list[Case] = []
    for p in range(spec.n_patients):
        site = SITES[p % len(SITES)]
        label = CLASSES[rng.choice(len(CLASSES), p=SITE_CLASS_MIX[site])]
        shape = _heart_shape(label, rng)
        patient = f"P{p:04d}"
        for visit in range(int(rng.integers(1, spec.max_images_per_patient + 1))):
            image, heart, ctr = _render(shape, spec.size, rng, SITE_GAMMA[site], jitter=1.0 if visit else 0.0)
            cases.append(
                Case(
                    id=f"{patient}-{visit}",
                    patient_id=patient,
                    site=site,
                    image=image,
                    masks={"heart": heart},
                    labels={"class": label, "ctr": ctr},
                )
            )
    return cases
