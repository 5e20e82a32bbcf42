"""Each CT reader on files written in its real layout: round trip, ordering, and one clear error per bad input."""

import json
import shutil

import numpy as np
import pydicom
import pytest

from bench.data.ct_io import write_nifti
from bench.data.formats import FORMATS
from bench.data.formats.luna16 import _to_sitk, official_split, sphere_mask
from bench.errors import DataError
from bench.tasks.ct_lung.data import inspect as inspect_ct  # the task hook: resolves --format, then reads


def _by_image(cases):
    return {c.image.tobytes(): c for c in cases}


@pytest.mark.parametrize("fmt", ["ct_dicom", "msd", "nifti", "luna16"])
def test_round_trip(fmt, tiny_ct, ct_folders):
    back = FORMATS.create(fmt).read(ct_folders[fmt], ("normal", "nodule", "GGO"))
    assert len(back) == len(tiny_ct)  # the DICOM localizers are dropped
    originals = _by_image(tiny_ct)
    for case in back:
        ref = originals[case.image.tobytes()]  # HU identical, slices in anatomical order
        assert case.spacing == pytest.approx(ref.spacing)
        assert np.array_equal(case.masks["lung"] > 0, ref.masks["lung"] > 0)
        if fmt == "luna16":  # spheres from world coordinates: every true lesion is hit
            hit = case.masks["lesion"].astype(bool) & ref.masks["lesion"].astype(bool)
            assert hit.any() == ref.masks["lesion"].any()
        else:
            assert np.array_equal(case.masks["lesion"], ref.masks["lesion"])
            assert case.labels["class"] == ref.labels["class"]
        assert case.meta["problems"] == []


def test_dicom_is_realistic_and_read_without_phi(ct_folders):
    files = sorted((ct_folders["ct_dicom"] / "dicom").iterdir())
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "CT" and ds.RescaleIntercept == -1024 and str(ds.PatientName)
    cases = FORMATS.create("ct_dicom").read(ct_folders["ct_dicom"])
    text = repr([(c.id, c.patient_id, c.site, c.labels, c.meta) for c in cases])
    assert "^" not in text and "PID-" not in text
    report = inspect_ct(ct_folders["ct_dicom"], "dicom")
    json.dumps(report)
    assert report["cases"] == len(cases) and report["hu"]["min"] < -900 and "^" not in json.dumps(report)


def _copy(ct_folders, fmt, tmp_path):
    return shutil.copytree(ct_folders[fmt], tmp_path / fmt)


def _slices(root):
    out = {}
    for p in sorted((root / "dicom").iterdir()):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        if "LOCALIZER" not in ds.ImageType:
            out.setdefault(ds.SeriesInstanceUID, []).append((float(ds.ImagePositionPatient[2]), p))
    return [sorted(v) for _, v in sorted(out.items())]


def test_dicom_duplicate_and_missing_slices_are_reported(ct_folders, tmp_path):
    root = _copy(ct_folders, "ct_dicom", tmp_path)
    (root / "labels.csv").unlink()  # masks would no longer fit the thinned series
    series = _slices(root)
    shutil.copy(series[0][2][1], root / "dicom" / "copy_of_slice")
    series[1][3][1].unlink()
    problems = {c.image.shape[0]: c.meta["problems"] for c in FORMATS.create("ct_dicom").read(root)}
    text = json.dumps(inspect_ct(root, "ct_dicom")["problems"])
    assert "duplicate" in text and "missing" in text
    assert any("missing" in " ".join(p) for n, p in problems.items() if n == 7)


def test_dicom_truncated_slice_names_the_file(ct_folders, tmp_path):
    root = _copy(ct_folders, "ct_dicom", tmp_path)
    victim = _slices(root)[0][4][1]
    victim.write_bytes(victim.read_bytes()[:-300])
    with pytest.raises(DataError, match=victim.name):
        FORMATS.create("ct_dicom").read(root)


def test_dicom_mixed_series_is_an_error(ct_folders, tmp_path):
    root = _copy(ct_folders, "ct_dicom", tmp_path)
    victim = _slices(root)[0][2][1]
    ds = pydicom.dcmread(victim)
    ds.PixelSpacing = [0.7, 0.7]
    ds.save_as(victim)
    with pytest.raises(DataError, match=f"{victim.name}.*mixes series"):
        FORMATS.create("ct_dicom").read(root)


def test_dicom_label_spacing_mismatch(ct_folders, tiny_ct, tmp_path):
    root = _copy(ct_folders, "ct_dicom", tmp_path)
    mask = root / "masks" / f"{tiny_ct[0].id}_lesion.nii.gz"
    write_nifti(mask, tiny_ct[0].masks["lesion"], (1.0, 1.0, 1.0))
    with pytest.raises(DataError, match=f"{mask.name}.*spacing"):
        FORMATS.create("ct_dicom").read(root)


def test_msd_skips_resource_forks_and_reports_missing_labels(ct_folders, tmp_path):
    root = _copy(ct_folders, "msd", tmp_path)
    (root / "imagesTr" / "._lung_001.nii.gz").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"].append({"image": "./imagesTr/._lung_001.nii.gz", "label": "./labelsTr/._lung_001.nii.gz"})
    (root / "dataset.json").write_text(json.dumps(meta))
    assert len(FORMATS.create("msd").read(root)) == len(meta["training"]) - 1
    (root / "labelsTr" / "lung_002.nii.gz").unlink()
    with pytest.raises(DataError, match="lung_002.nii.gz.*label file"):
        FORMATS.create("msd").read(root)


def test_msd_without_lung_masks_and_with_shape_mismatch(ct_folders, tmp_path):
    root = _copy(ct_folders, "msd", tmp_path)
    shutil.rmtree(root / "lungsTr")
    cases = FORMATS.create("msd").read(root)
    assert all("lung" not in c.masks for c in cases)
    write_nifti(root / "labelsTr" / "lung_001.nii.gz", np.zeros((3, 4, 5), np.uint8), cases[0].spacing)
    with pytest.raises(DataError, match="lung_001.nii.gz.*shape"):
        FORMATS.create("msd").read(root)


def test_nifti_missing_mask_and_truncated_volume(ct_folders, tiny_ct, tmp_path):
    root = _copy(ct_folders, "nifti", tmp_path)
    (root / "masks" / "lesion" / f"{tiny_ct[1].id}.nii.gz").unlink()
    with pytest.raises(DataError, match=f"{tiny_ct[1].id}.nii.gz.*'lesion' mask"):
        FORMATS.create("nifti").read(root)
    root = shutil.copytree(ct_folders["nifti"], tmp_path / "again")
    image = root / "images" / f"{tiny_ct[0].id}.nii.gz"
    image.write_bytes(image.read_bytes()[:200])
    with pytest.raises(DataError, match=image.name):
        FORMATS.create("nifti").read(root)


def test_luna16_spheres_and_official_split(ct_folders, tmp_path):
    image = _to_sitk(np.zeros((10, 20, 20), np.int16), (2.0, 1.0, 1.0))
    origin = np.array(image.GetOrigin())
    centre = origin + np.array([10.0, 10.0, 5 * 2.0])  # x, y, z in mm
    mask = sphere_mask(image, [(*centre, 6.0)])
    assert mask[5, 10, 10] == 1 and mask[5, 10, 13] == 1 and mask[5, 10, 14] == 0 and mask[7, 10, 10] == 0
    cases = FORMATS.create("luna16").read(ct_folders["luna16"])
    assert {c.meta["subset"] for c in cases} == {0, 1, 2}
    split = official_split("ct-lung", "x", cases)
    assert set(split.test) == {c.id for c in cases if c.meta["subset"] == 2} and len(split.folds) == 2
    root = _copy(ct_folders, "luna16", tmp_path)
    raw = next((root / "subset0").glob("*.raw"))
    raw.write_bytes(raw.read_bytes()[:100])
    with pytest.raises(DataError, match=raw.stem):
        FORMATS.create("luna16").read(root)


def test_writers_leave_nothing_half_written(tiny_ct, tmp_path):
    broken = [tiny_ct[0], type(tiny_ct[0])(id="x", patient_id="p", image=tiny_ct[0].image,
                                            spacing=tiny_ct[0].spacing, masks={})]
    with pytest.raises(DataError, match="lesion"):
        FORMATS.create("msd").write(broken, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
