"""CT DICOM series (one file per slice) + optional labels.csv and NIfTI label maps.

Layout (what ``make-phantom --format dicom`` writes; a hospital export needs only the DICOM files)::

    dicom/<any name>           one CT slice per file, any folder depth, any order
    labels.csv                 optional: series_uid, case_id, patient_id, site, class, mask_lung, mask_lesion
    masks/<case_id>_<name>.nii.gz   label maps on the series' grid (voxel axes x, y, z)

Reading: files are grouped by SeriesInstanceUID; localizers (ImageType LOCALIZER) are dropped; slices are
sorted by ImagePositionPatient projected on the slice normal (never InstanceNumber, which scanners number
head-first or feet-first); HU come from the modality LUT (RescaleSlope/Intercept); the z spacing is the
median step between positions. Duplicate positions (dropped) and gaps (missing slices) are reported in
``Case.meta["problems"]``. Patient names and ids are never copied: a case gets a hashed pseudonym.
"""

from __future__ import annotations

import csv
import hashlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.data.case import Case
from bench.data.ct_io import check_label_matches, read_nifti, write_nifti
from bench.data.formats import FORMATS
from bench.data.formats._common import atomic_folder
from bench.errors import DataError, describe_error

if TYPE_CHECKING:  # pydicom loads when a series is read or written, so listing formats stays light
    import pydicom
    from pydicom.dataset import FileDataset

FAKE_NAMES = ("Doe^Jane", "Roe^Richard", "Smith^Alex", "Garcia^Maria", "Chen^Wei", "Okafor^Ngozi")
INTERCEPT = -1024.0


def pseudonym(prefix: str, value: str) -> str:
    return f"{prefix}-{hashlib.sha256(value.encode()).hexdigest()[:12]}"


@FORMATS.register("ct_dicom")
class CtDicom:
    """CT DICOM series (one file per slice), grouped by SeriesInstanceUID; optional labels.csv + NIfTI masks."""

    LOOKS_LIKE = "ct_dicom: DICOM slice files"

    @staticmethod
    def recognise(root: Path) -> bool:
        from bench.data.formats._common import holds_dicom

        return holds_dicom(root)

    def read(self, path: str | Path, classes: Sequence[str] = ()) -> list[Case]:
        return list(self.iter_cases(path, classes))

    def iter_cases(self, path: str | Path, classes: Sequence[str] = ()) -> Iterator[Case]:
        """The series one at a time: every header is read first (no pixels), then one volume is assembled."""
        root = Path(path)
        labels = _read_labels(root)
        series = _scan(root)
        if not series:
            raise DataError(f"{root}: a ct_dicom folder must contain CT image slices, but none were found.")
        for uid in sorted(series):
            yield _case(root, uid, series.pop(uid), labels.get(uid, {}), classes)

    def write(self, cases: Sequence[Case], out: str | Path) -> Path:
        from pydicom.uid import generate_uid

        with atomic_folder(out) as tmp:
            (tmp / "dicom").mkdir()
            (tmp / "masks").mkdir()
            rows = []
            rng = np.random.default_rng(0)
            files: list[tuple[str, FileDataset]] = []
            for k, case in enumerate(cases):
                study = generate_uid(entropy_srcs=["bench-study", case.patient_id, case.id])
                series = generate_uid(entropy_srcs=["bench-series", case.id])
                for z in range(case.image.shape[0]):
                    files.append(("", _slice(case, k, z, study, series)))
                files.append(("", _localizer(case, k, study)))
                row = {"series_uid": series, "case_id": case.id, "patient_id": case.patient_id, "site": case.site,
                       "class": case.labels.get("class", "")}
                for name, mask in sorted(case.masks.items()):
                    rel = f"masks/{case.id}_{name}.nii.gz"
                    write_nifti(tmp / rel, mask.astype(np.uint8), case.spacing)
                    row[f"mask_{name}"] = rel
                rows.append(row)
            # Out of order on purpose: file names say nothing about slice order.
            for n, i in enumerate(rng.permutation(len(files))):
                files[i][1].save_as(tmp / "dicom" / f"IM{n:06d}", enforce_file_format=True)
            columns = sorted({c for r in rows for c in r}, key=lambda c: (c.startswith("mask_"), c))
            with (tmp / "labels.csv").open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        return Path(out)


def _case(root: Path, uid: str, slices, row: dict[str, str], classes: Sequence[str]) -> Case:
    image, spacing, problems, first = _assemble(uid, slices)
    case_id = row.get("case_id") or pseudonym("series", uid)
    masks = {}
    for column, rel in row.items():
        if column.startswith("mask_") and rel:
            mask, mspacing = read_nifti(root / rel)
            check_label_matches(first, root / rel, image.shape, spacing, mask.shape, mspacing)
            masks[column[len("mask_") :]] = mask.astype(np.uint8)
    label = row.get("class", "")
    if classes and label and label not in classes:
        raise DataError(f"{root / 'labels.csv'}: class must be one of {list(classes)}, but got '{label}'.")
    return Case(
        id=case_id,
        patient_id=row.get("patient_id") or pseudonym("pt", str(slices[0][1].get("PatientID", uid))),
        site=row.get("site", ""),
        image=image,
        spacing=spacing,
        masks=masks,
        labels={"class": label} if label else {},
        meta={"modality": "CT", "units": "HU", "axes": "zyx", "slices": int(image.shape[0]), "problems": problems},
    )


def _read_labels(root: Path) -> dict[str, dict[str, str]]:
    table = root / "labels.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if rows and "series_uid" not in rows[0]:
        raise DataError(f"{table}: labels.csv must have a series_uid column, but has {list(rows[0])}.")
    return {r["series_uid"]: r for r in rows}


def _scan(root: Path) -> dict[str, list[tuple[Path, pydicom.Dataset]]]:
    """Headers of every CT image file under root, grouped by series; localizers and non-DICOM files skipped."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, list] = defaultdict(list)
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.name.startswith("._") or p.suffix in (".csv", ".gz", ".json", ".nii", ".txt"):
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except InvalidDicomError:
            continue  # not DICOM (README, thumbnails...): not our business
        except Exception as exc:
            raise DataError(f"{p}: must be a readable DICOM file, but reading failed: {describe_error(exc)}.") from exc
        if "PixelSpacing" not in ds or "ImagePositionPatient" not in ds:
            continue
        if "LOCALIZER" in [str(v).upper() for v in ds.get("ImageType", [])]:
            continue
        series[str(ds.SeriesInstanceUID)].append((p, ds))
    return series


def _assemble(uid: str, slices: list[tuple[Path, pydicom.Dataset]]):
    import pydicom
    from pydicom.pixels import apply_modality_lut

    first_path, first = slices[0]
    geometry = _geometry(first)
    for p, ds in slices[1:]:
        if _geometry(ds) != geometry:
            raise DataError(
                f"{p}: all slices of series …{uid[-8:]} must share size, pixel spacing and orientation "
                f"(as {first_path.name}: {geometry}), but got {_geometry(ds)}. The folder mixes series; "
                "separate them or fix SeriesInstanceUID."
            )
    iop = np.array(first.ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    pos = np.array([float(np.dot(np.array(ds.ImagePositionPatient, float), normal)) for _, ds in slices])
    order = np.argsort(pos, kind="stable")
    problems: list[str] = []
    kept = [order[0]]
    for i in order[1:]:
        if abs(pos[i] - pos[kept[-1]]) < 1e-3:
            continue
        kept.append(i)
    if len(kept) < len(order):
        problems.append(f"{len(order) - len(kept)} duplicate slice(s) at the same position were dropped")
    steps = np.diff(pos[kept])
    dz = float(np.median(steps)) if len(steps) else float(first.get("SliceThickness", 1.0))
    gaps = np.flatnonzero(steps > 1.5 * dz)
    if len(gaps):
        missing = int(sum(round(steps[g] / dz) - 1 for g in gaps))
        problems.append(f"about {missing} slice(s) missing: {len(gaps)} gap(s) larger than 1.5 x {dz:.2f} mm")
    volume = []
    for i in kept:
        p = slices[i][0]
        try:
            ds = pydicom.dcmread(p)
            volume.append(apply_modality_lut(ds.pixel_array, ds).astype(np.float32))
        except Exception as exc:  # truncated PixelData and friends
            raise DataError(f"{p}: a CT slice must hold its full pixel data, but decoding failed: {describe_error(exc)}.") from exc
    hu = np.clip(np.round(np.stack(volume)), -32768, 32767).astype(np.int16)
    row_mm, col_mm = (float(v) for v in first.PixelSpacing)
    return hu, (dz, row_mm, col_mm), problems, first_path


def _geometry(ds) -> tuple:
    return (int(ds.Rows), int(ds.Columns), tuple(round(float(v), 4) for v in ds.PixelSpacing),
            tuple(round(float(v), 4) for v in ds.ImageOrientationPatient))


def _base(case: Case, k: int, study: str, series: str, sop: str) -> FileDataset:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["bench-for", study])
    ds.Modality, ds.Manufacturer, ds.BodyPartExamined = "CT", "bench-phantom", "CHEST"
    # Fake but realistic identifiers: the readers must never copy them anywhere.
    ds.PatientName = FAKE_NAMES[k % len(FAKE_NAMES)]
    ds.PatientID = f"PID-{case.patient_id}"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber = "20240101", "120000", f"ACC{k:06d}"
    ds.KVP, ds.SliceThickness = 120, float(case.spacing[0])
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = INTERCEPT, 1.0, "HU"
    ds.WindowCenter, ds.WindowWidth = -600, 1500
    return ds


def _slice(case: Case, k: int, z: int, study: str, series: str) -> FileDataset:
    from pydicom.uid import generate_uid

    depth, rows, cols = case.image.shape
    dz, dy, dx = case.spacing
    ds = _base(case, k, study, series, generate_uid(entropy_srcs=["bench-sop", case.id, str(z)]))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SeriesNumber, ds.SeriesDescription = 2, "CHEST 5mm"
    ds.InstanceNumber = depth - z  # feet-first numbering: InstanceNumber runs against position
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [-(cols - 1) / 2 * dx, -(rows - 1) / 2 * dy, (z - (depth - 1) / 2) * dz]
    ds.SliceLocation = float(ds.ImagePositionPatient[2])
    ds.Rows, ds.Columns, ds.PixelSpacing = rows, cols, [dy, dx]
    raw = np.clip(np.asarray(case.image[z], np.int32) - int(INTERCEPT), 0, 4095).astype(np.uint16)
    ds.PixelData = raw.tobytes()
    return ds


def _localizer(case: Case, k: int, study: str) -> FileDataset:
    from pydicom.uid import generate_uid

    """A scout image in its own series, as scanners export it; readers must drop it."""
    ds = _base(case, k, study, generate_uid(entropy_srcs=["bench-scout", case.id]),
               generate_uid(entropy_srcs=["bench-scout-sop", case.id]))
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.ImagePositionPatient = [-128.0, 0.0, 80.0]
    ds.Rows, ds.Columns, ds.PixelSpacing = 32, 32, [5.0, 8.0]
    ds.PixelData = np.full((32, 32), 1024, np.uint16).tobytes()
    return ds
