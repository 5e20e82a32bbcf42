"""Fixtures for the CT tests: a tiny phantom and folders written in each real on-disk format."""

from __future__ import annotations

import pytest

from bench.data.phantoms.ct import CtPhantomSpec, generate

TINY = CtPhantomSpec(n_patients=3, shape=(8, 24, 24), seed=5)


@pytest.fixture(scope="session")
def tiny_ct():
    return generate(TINY)


@pytest.fixture(scope="session")
def ct_folders(tiny_ct, tmp_path_factory):
    """The tiny phantom written once per format (read-only for tests: copy before corrupting)."""
    from bench.data.formats import FORMATS

    root = tmp_path_factory.mktemp("ct")
    return {fmt: FORMATS.create(fmt).write(tiny_ct, root / fmt) for fmt in ("ct_dicom", "msd", "nifti", "luna16")}
