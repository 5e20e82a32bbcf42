"""Registry of on-disk data formats. Each reader turns a folder into Case records; writers export them."""

from bench.registry import Registry

FORMATS: Registry = Registry("data format")

from bench.data.formats import chestxray14, chexmask, dicom, jsrt, png  # noqa: F401  (registration side effects)

__all__ = ["FORMATS"]
