"""What the built-in phantoms generate (their specs and classes), without numpy: task specs read these when
``bench --help`` or ``bench tasks`` starts, and the generators (``xray.py``, ``ct.py``) import them."""

from __future__ import annotations

from dataclasses import dataclass

XRAY_CLASSES = ("normal", "VSD", "ASD", "TOF")
CT_CLASSES = ("normal", "nodule", "GGO")


@dataclass(frozen=True)
class XrayPhantomSpec:
    """What to generate; ``name()`` identifies the bytes (cache keys and split files hang on it)."""

    n_patients: int = 100
    n_shifted_patients: int = 30
    size: int = 128
    seed: int = 0
    max_images_per_patient: int = 3
    difficulty: float = 0.5

    def __post_init__(self) -> None:
        from bench.errors import ConfigError

        if not 32 <= self.size <= 1024:
            raise ConfigError(f"phantom size must be in 32..1024 px, but got {self.size}.")
        if not 0.0 <= self.difficulty <= 1.0:
            raise ConfigError(f"phantom difficulty must be in [0, 1], but got {self.difficulty}.")
        if self.n_patients < 1 or self.n_shifted_patients < 0 or self.max_images_per_patient < 1:
            raise ConfigError(
                "phantom needs n_patients >= 1, n_shifted_patients >= 0 and max_images_per_patient >= 1, "
                f"but got {self.n_patients}, {self.n_shifted_patients}, {self.max_images_per_patient}."
            )

    def name(self) -> str:
        return (
            f"phantom-xray-v2-n{self.n_patients}-sh{self.n_shifted_patients}-s{self.size}-seed{self.seed}"
            f"-i{self.max_images_per_patient}-d{self.difficulty:g}"
        )


@dataclass(frozen=True)
class CtPhantomSpec:
    """What to generate. The field of view is fixed in mm, so ``shape`` only changes the resolution.

    Example:
        >>> from bench.data.phantoms.ct import generate
        >>> cases = generate(CtPhantomSpec(n_patients=2, shape=(16, 32, 32)))
        >>> cases[0].image.dtype, cases[0].image.shape
        (dtype('int16'), (16, 32, 32))
    """

    n_patients: int = 24
    shape: tuple[int, int, int] = (32, 64, 64)
    fov_mm: tuple[float, float, float] = (160.0, 256.0, 256.0)
    seed: int = 0
    max_scans_per_patient: int = 2

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(f / s) for f, s in zip(self.fov_mm, self.shape))  # type: ignore[return-value]

    def name(self) -> str:
        shape = "x".join(map(str, self.shape))
        return f"phantom-ct-v1-n{self.n_patients}-s{shape}-seed{self.seed}"
