"""Registry of on-disk data formats. Each reader turns a folder into Case records; writers export them."""

from bench.registry import Registry

FORMATS: Registry = Registry("data format")

from bench.data.formats import (  # noqa: F401  (registration side effects)
    chestxray14,
    chexmask,
    chexpert,
    ct_dicom,
    dicom,
    jsrt,
    luna16,
    msd,
    nifti,
    png,
)

__all__ = ["FORMATS"]
