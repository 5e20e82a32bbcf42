"""The organ rule's figures (``bench.data.seg_inspect.GUIDE_MIN_BORDER``): phantoms drawn after the layouts of
real data sets, each printed with the share of the target's surface its neighbour makes up, the reverse share
and the two labels' surface ratio (target / neighbour). A target is guided by its neighbour when the share is
>= GUIDE_MIN_BORDER and the surface ratio <= ORGAN_SURFACE_RATIO.

Run: ``PYTHONPATH=. python scripts/seg_border_layouts.py``
"""

from __future__ import annotations

import numpy as np

from bench.data.seg_inspect import GUIDE_MIN_BORDER, ORGAN_SURFACE_RATIO, border_areas, border_shares, organs

Z, Y, X = np.mgrid[:48, :64, :64].astype(float)


def ellipsoid(centre, radii) -> np.ndarray:
    return sum(((g - c) / r) ** 2 for g, c, r in zip((Z, Y, X), centre, radii)) <= 1


ORGAN = ellipsoid((24, 32, 32), (14, 20, 16))


def lesion(centre, r, clip=False) -> np.ndarray:
    label = ORGAN.astype(np.uint8)
    ball = ellipsoid(centre, (r, r, r))
    label[ball & ORGAN if clip else ball] = 2
    return label


def halves() -> np.ndarray:
    body = ellipsoid((24, 32, 32), (5, 20, 6))
    label = np.zeros(body.shape, np.uint8)
    label[body & (Y < 32)], label[body & (Y >= 32)] = 1, 2
    return label


def core_and_shell() -> np.ndarray:  # prostate: peripheral zone (1) a posterior shell around the transition zone (2)
    tz = ellipsoid((24, 32, 32), (9, 9, 11))
    label = np.zeros(tz.shape, np.uint8)
    label[ellipsoid((24, 34, 32), (11, 12, 14)) & ~tz & (Y >= 32)], label[tz] = 1, 2
    return label


LAYOUTS = {
    "tumour enclosed in its organ (liver)": lesion((24, 32, 32), 5),
    "tumour clipped to the organ, touching its surface": lesion((24, 32, 46), 6, clip=True),
    "exophytic tumour, centre on the surface (KiTS)": lesion((24, 32, 48), 6),
    "exophytic tumour, a quarter inside": lesion((24, 32, 51), 6),
    "exophytic tumour, an eighth inside": lesion((24, 32, 52.2), 6),
    "two halves of one structure (hippocampus)": halves(),
    "core and shell (prostate TZ=2 / PZ=1)": core_and_shell(),
}

if __name__ == "__main__":
    print(f"guide when share >= {GUIDE_MIN_BORDER} and surface ratio <= {ORGAN_SURFACE_RATIO}")
    for name, label in LAYOUTS.items():
        areas = border_areas(label, [0, 1, 2])
        share, surface = border_shares(areas), areas.sum(axis=1)
        guided = organs(areas, {"background": 0, "one": 1, "two": 2})
        print(f"{name:52s} 2->1 share {share[2, 1]:.2f} ratio {surface[2] / surface[1]:.2f} "
              f"guide {guided['two']['guide']!s:5s} | 1->2 share {share[1, 2]:.2f} guide {guided['one']['guide']}")
