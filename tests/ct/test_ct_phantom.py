import numpy as np

from bench.data.phantoms.ct import CLASSES, CtPhantomSpec, generate
from bench.data.sources import standard_split_path
from bench.data.splits import load_split

from .conftest import TINY


def test_deterministic_and_shaped(tiny_ct):
    again = generate(TINY)
    assert [c.id for c in again] == [c.id for c in tiny_ct]
    for a, b in zip(again, tiny_ct):
        assert np.array_equal(a.image, b.image) and np.array_equal(a.masks["lesion"], b.masks["lesion"])
        assert a.image.dtype == np.int16 and a.image.shape == TINY.shape
        assert a.spacing == TINY.spacing and a.labels["class"] in CLASSES


def test_anatomy_hu_and_lesions_by_class():
    cases = generate(CtPhantomSpec(n_patients=10, seed=2))
    assert {"nodule", "GGO"} <= {c.labels["class"] for c in cases}
    for c in cases:
        lung = c.masks["lung"]
        assert set(np.unique(lung)) <= {0, 1, 2} and (lung == 1).any() and (lung == 2).any()
        assert -900 < np.median(c.image[lung > 0]) < -750  # lung parenchyma
        assert c.image.min() <= -950  # air outside the body
        lesion = c.masks["lesion"] > 0
        assert not (lesion & (lung == 0)).any(), "lesions lie inside the lungs"
        if c.labels["class"] == "normal":
            assert not lesion.any()
        else:
            assert lesion.any()
            if lesion.sum() >= 20:  # small ones are partial-volumed into the lung, as in real CT
                hu = c.image[lesion]
                assert (hu.max() > -100) if c.labels["class"] == "nodule" else (-750 < hu.mean() < -150)
        # Look-alikes: nodule-dense blobs outside the lungs, inside the fat.
        assert ((c.image > -30) & (c.image < 90) & (lung == 0)).any()


def test_ids_do_not_depend_on_shape():
    small, large = generate(CtPhantomSpec(n_patients=4, shape=(8, 16, 16))), generate(CtPhantomSpec(n_patients=4))
    assert [(c.id, c.labels) for c in small] == [(c.id, c.labels) for c in large]


def test_standard_split_matches_default_phantom():
    cases = generate(CtPhantomSpec(shape=(8, 16, 16)))  # ids equal the default phantom's
    split = load_split(standard_split_path("ct-lung", "phantom"), {c.id: c.patient_id for c in cases})
    assert split.task == "ct-lung" and len(split.folds) == 5 and split.test
