import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from bench.data.formats import FORMATS
from bench.data.formats.dicom import to_unit_range
from bench.data.inspect import inspect
from bench.data.phantoms.xray import CLASSES
from bench.errors import DataError

READER = FORMATS.create("dicom")


def _rewrite_labels(folder: Path, edit) -> None:
    with (folder / "labels.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    rows = edit(rows)
    with (folder / "labels.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_export_has_realistic_tags_and_reader_keeps_no_phi(dicom_folder, tiny_cases):
    files = sorted((dicom_folder / "images").glob("*.dcm"))
    ds = pydicom.dcmread(files[0])
    assert ds.Modality == "DX" and ds.BitsStored == 12 and ds.RescaleIntercept == -1024
    assert str(ds.PatientName) and ds.PatientBirthDate and ds.PatientID
    photometrics = {pydicom.dcmread(f, stop_before_pixels=True).PhotometricInterpretation for f in files}
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}
    cases = READER.read(dicom_folder, CLASSES)
    for c in cases:
        text = repr((c.id, c.site, c.meta, c.labels))
        src = pydicom.dcmread(dicom_folder / "images" / f"{c.id}.dcm", stop_before_pixels=True)
        assert str(src.PatientName) not in text and src.PatientBirthDate not in text
        assert c.patient_id == src.PatientID  # no patient_id column: taken from the DICOM tag
        assert c.spacing == pytest.approx((0.35 * 1024 / 64,) * 2, rel=1e-3)


def _minimal(tmp_path, stored, **tags) -> pydicom.Dataset:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = tags.pop("syntax", ExplicitVRLittleEndian)
    ds = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    for k, v in tags.items():
        setattr(ds, k, v)
    ds.PixelData = stored.astype("<u2").tobytes()
    return ds


def test_pixel_pipeline_applies_rescale_window_and_monochrome1(tmp_path):
    stored = np.array([[0, 1000], [2000, 4095]], np.uint16)
    ds = _minimal(tmp_path, stored, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=1900, WindowWidth=2001)
    # PS3.3 C.11.2.1.2.1 LINEAR window on rescaled values, output range = rescaled 12-bit range
    values = stored * 2.0 - 100
    expected = np.clip((values - 1899.5) / 2000 + 0.5, 0, 1)
    assert np.allclose(to_unit_range(ds), expected, atol=1e-6)
    ds.PhotometricInterpretation = "MONOCHROME1"
    assert np.allclose(to_unit_range(ds), 1 - expected, atol=1e-6)
    plain = _minimal(tmp_path, stored)
    assert np.allclose(to_unit_range(plain), stored / 4095.0)


def test_pixel_spacing_preferred_over_imager_spacing(tmp_path):
    from bench.data.formats.dicom import _spacing

    ds = _minimal(tmp_path, np.zeros((2, 2), np.uint16), ImagerPixelSpacing=[0.2, 0.2], PixelSpacing=[0.18, 0.19])
    assert _spacing(ds) == (0.18, 0.19)


def test_rows_by_sop_instance_uid(dicom_folder):
    def by_uid(rows):
        for r in rows:
            r["sop_instance_uid"] = pydicom.dcmread(dicom_folder / r.pop("file"), stop_before_pixels=True).SOPInstanceUID
        return rows

    _rewrite_labels(dicom_folder, by_uid)
    assert len(READER.read(dicom_folder, CLASSES)) == len(list((dicom_folder / "images").glob("*.dcm")))


def test_compressed_without_plugin_names_file_and_plugin(tmp_path):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    ds = _minimal(tmp_path, np.zeros((4, 4), np.uint16), syntax=JPEGLSLossless)
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 30])
    ds["PixelData"].VR = "OB"
    with pytest.raises(DataError, match=r"(?s)x\.dcm: compressed pixel data \(JPEG-LS.*pylibjpeg"):
        to_unit_range(ds, tmp_path / "x.dcm")


def test_truncated_file(dicom_folder):
    victim = min((dicom_folder / "images").glob("*.dcm"))
    victim.write_bytes(victim.read_bytes()[:-500])
    with pytest.raises(DataError, match=rf"{victim.name}: .*(truncated|readable)"):
        READER.read(dicom_folder, CLASSES)


def test_not_dicom(dicom_folder):
    victim = min((dicom_folder / "images").glob("*.dcm"))
    victim.write_bytes(b"hello")
    with pytest.raises(DataError, match=rf"{victim.name}: must be a readable DICOM file"):
        READER.read(dicom_folder, CLASSES)


def test_image_without_label(dicom_folder):
    _rewrite_labels(dicom_folder, lambda rows: rows[1:])
    with pytest.raises(DataError, match="every image must have a row in labels.csv"):
        READER.read(dicom_folder, CLASSES)


def test_label_not_in_classes(dicom_folder):
    def bad(rows):
        rows[0]["label"] = "Cardiomegaly"
        return rows

    _rewrite_labels(dicom_folder, bad)
    with pytest.raises(DataError, match=r"labels.csv:2: the label must be one of .*but got 'Cardiomegaly'"):
        READER.read(dicom_folder, CLASSES)


def test_mask_of_wrong_shape(dicom_folder):
    with (dicom_folder / "labels.csv").open() as fh:
        mask = dicom_folder / next(csv.DictReader(fh))["mask_heart"]
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(mask)
    with pytest.raises(DataError, match=rf"{mask.name}: a mask must have its image's shape \(64, 64\), but got \(10, 12\)"):
        READER.read(dicom_folder, CLASSES)


def test_empty_folder_and_missing_labels(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="labels.csv: the data folder must contain this labels file"):
        READER.read(tmp_path / "empty", CLASSES)
    (tmp_path / "empty" / "labels.csv").write_text("file,label\n")
    with pytest.raises(DataError, match="at least one image"):
        READER.read(tmp_path / "empty", CLASSES)


def test_zero_or_negative_pixel_spacing_means_unknown(dicom_folder):
    """Real archives carry PixelSpacing 0\\0 (or negative): fall back to ImagerPixelSpacing, else unknown (None)."""
    first, second = sorted((dicom_folder / "images").glob("*.dcm"))[:2]
    ds = pydicom.dcmread(first)
    imager = tuple(float(v) for v in ds.ImagerPixelSpacing)
    ds.PixelSpacing = [0, 0]
    ds.save_as(first)
    ds = pydicom.dcmread(second)
    ds.PixelSpacing = ["-0.1", "-0.1"]
    del ds.ImagerPixelSpacing
    ds.save_as(second)
    spacing = {c.id: c.spacing for c in READER.read(dicom_folder)}
    assert spacing[first.stem] == pytest.approx(imager)
    assert spacing[second.stem] is None  # unknown, never 1 mm
    assert all(min(s) > 0 for s in spacing.values() if s is not None)
    report = inspect(dicom_folder, "xray-heart", "dicom")
    assert report["spacing_mm"]["unknown"] == 1 and min(report["spacing_mm"]["min"]) > 0
