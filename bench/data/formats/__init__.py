"""Registry of on-disk data formats. Each reader turns a folder into Case records; writers export them."""

from bench.registry import Registry

FORMATS: Registry = Registry("data format")

from bench.data.formats import ct_dicom, luna16, msd, nifti, png  # noqa: E402,F401  (registration side effects)

__all__ = ["FORMATS"]
