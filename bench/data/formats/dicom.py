"""Folder of DICOM radiographs + labels.csv: the layout a hospital export (or the phantom) gives.

Layout::

    <any path>.dcm                 one image per file (DX/CR, 1 sample per pixel)
    masks/<name>/<case_id>.png     optional masks, non-zero = inside, same shape as the image
    labels.csv                     one row per image; columns:
        file | sop_instance_uid    which image (path relative to the folder, or the DICOM SOPInstanceUID)
        label | class              the class (scheme from the data, or checked against given classes)
        case_id                    optional; else the file's path relative to the folder, without suffix
        patient_id                 optional; else the DICOM PatientID, else one patient per image
        site                       optional; else the DICOM InstitutionName
        mask_<name>                optional mask path (relative), e.g. mask_heart
        split_part                 optional official part: test, trainval or test_shifted
        any other column           kept as a label (numbers parsed), e.g. ctr

Pixel pipeline (PS3.3 C.11): stored values -> modality LUT/rescale -> VOI LUT or window centre/width
(pydicom.pixels.apply_modality_lut / apply_voi_lut) -> scaled to [0, 1] over the nominal output range ->
inverted for MONOCHROME1, so bone is bright for every site. Spacing is PixelSpacing, else
ImagerPixelSpacing (mm); a value that is present but zero or negative (real archives have them) counts
as unknown, and with neither valid the spacing is None (unknown), never 0 or 1 mm. Compressed transfer syntaxes decode through pydicom's optional plugins
(pylibjpeg, python-gdcm); without them the error names the file and what to install.

Patient names, birth dates and every other identifying tag are never read into a Case; the case id is
the labels file's case_id or the file's relative path without suffix, and the patient id is used only for grouping splits.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from bench.data.case import Case, CaseRef
from bench.data.formats import FORMATS
from bench.data.formats._common import (
    CsvRow,
    atomic_folder,
    check_labels,
    load_all,
    number,
    read_mask,
    read_table,
    save_masks,
    write_labels_csv,
)
from bench.errors import DataError

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic"}
_KNOWN_COLUMNS = {"case_id", "file", "sop_instance_uid", "label", "class", "patient_id", "site", "split_part"}
PLUGIN_HINT = (
    "Install a decoder plugin for it, e.g. `pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg` "
    "or `pip install python-gdcm`, or decompress the files (e.g. `gdcmconv --raw`)"
)


@FORMATS.register("dicom")
class DicomFolder:
    """DICOM radiographs with a labels.csv (file or SOPInstanceUID, label, optional patient/mask columns)."""

    LOOKS_LIKE = "dicom: DICOM files with labels.csv"

    @staticmethod
    def recognise(root: Path) -> bool:
        from bench.data.formats._common import holds_dicom

        return (root / "labels.csv").is_file() and holds_dicom(root)

    def scan(self, path: str | Path, classes: Sequence[str] | None = None) -> list[CaseRef]:
        """One ref per labels.csv row; only DICOM headers are read (for PatientID/InstitutionName if needed)."""
        root = Path(path)
        if not root.is_dir():
            raise DataError(f"{root}: a dicom data set must be a folder, but it is not one.")
        table = root / "labels.csv"
        rows = read_table(table, [("file", "sop_instance_uid"), ("label", "class")])
        files = _dicom_files(root)
        if not files:
            raise DataError(f"{root}: a dicom folder must contain .dcm files, but it has none.")
        by_uid = _index_by_uid(files) if "sop_instance_uid" in rows[0] else {}
        check_labels(table, ((line, row.get("label") or row.get("class", "")) for line, row in
                             enumerate(rows, start=2)), classes)
        refs, labelled, seen_files = [], set(), set()
        for line, row in enumerate(rows, start=2):
            where = f"{table}:{line}"
            if row.get("file"):
                file = Path(os.path.normpath(root / row["file"]))
            elif row.get("sop_instance_uid") in by_uid:
                file = by_uid[row["sop_instance_uid"]]
            else:
                raise DataError(f"{where}: each row must name an existing DICOM file, but this one names none.")
            label = row.get("label") or row.get("class", "")
            case_id = row.get("case_id") or file.relative_to(root).with_suffix("").as_posix()
            if case_id in labelled or file in seen_files:
                raise DataError(f"{where}: each image must be listed once, but '{case_id}' repeats.")
            labelled.add(case_id)
            seen_files.add(file)
            if not file.is_file():
                raise DataError(f"{file}: each file named in labels.csv must be a readable DICOM file, but it is "
                                f"missing ({where}). Fix the path or remove the row.")
            patient_id, site = row.get("patient_id", ""), row.get("site", "")
            if not (patient_id and site):
                header = _dcmread(file, stop_before_pixels=True)
                patient_id = patient_id or str(header.get("PatientID", ""))
                site = site or str(header.get("InstitutionName", ""))
            row = {**row, "patient_id": patient_id or case_id, "site": site}
            refs.append(CaseRef(case_id, row["patient_id"], partial(self._case, root, file, case_id, label, row),
                                site, {"class": label},
                                {"split_part": row["split_part"]} if row.get("split_part") else {}))
        unlabelled = sorted(set(files) - seen_files)
        if unlabelled:
            raise DataError(
                f"{unlabelled[0]}: every image must have a row in labels.csv, but this one (and "
                f"{len(unlabelled) - 1} more) has none. Add its label or move it out of the folder."
            )
        return refs

    def read(self, path: str | Path, classes: Sequence[str] | None = None) -> list[Case]:
        return load_all(self.scan(path, classes))

    def _case(self, root: Path, file: Path, case_id: str, label: str, row: dict[str, str]) -> Case:
        ds = _dcmread(file)
        image = to_unit_range(ds, file)
        masks = {
            col[len("mask_") :]: read_mask(root / rel, image.shape)
            for col, rel in row.items() if col.startswith("mask_") and rel
        }
        extra = {k: number(v) for k, v in row.items() if k not in _KNOWN_COLUMNS and not k.startswith("mask_") and v}
        return Case(
            id=case_id,
            patient_id=row.get("patient_id") or str(ds.get("PatientID", "")) or case_id,
            site=row.get("site") or str(ds.get("InstitutionName", "")),
            image=image,
            spacing=_spacing(ds),
            masks=masks,
            labels={"class": label, **extra},
            # technical tags only: nothing here can identify a patient
            meta={"modality": str(ds.get("Modality", "")), "photometric": str(ds.PhotometricInterpretation),
                  **({"split_part": row["split_part"]} if row.get("split_part") else {})},
        )

    def write(self, cases: Iterable[Case], out: str | Path) -> Path:
        """One DX file per case (12-bit, rescale + window, fake patient tags) + masks, written as the cases
        come (one in memory), then labels.csv, whose columns are the masks and labels of all the cases."""
        rows: list[CsvRow] = []
        with atomic_folder(out) as tmp:
            (tmp / "images").mkdir()
            for c in cases:
                rel = f"images/{c.id}.dcm"
                write_dicom(c, tmp / rel)
                save_masks(c, tmp)
                rows.append(CsvRow.of(c, [c.id, rel, c.labels["class"], c.meta.get("split_part", "")]))
            # no patient_id column on purpose: the reader takes it from the DICOM PatientID tag
            write_labels_csv(tmp / "labels.csv", ["case_id", "file", "label", "split_part"], rows)
        return Path(out)


def _dicom_files(root: Path) -> list[Path]:
    return sorted(Path(os.path.normpath(p)) for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in DICOM_SUFFIXES)


def _index_by_uid(files: list[Path]) -> dict[str, Path]:
    index = {}
    for f in files:
        ds = _dcmread(f, stop_before_pixels=True)
        index[str(ds.get("SOPInstanceUID", ""))] = f
    return index


def _dcmread(file: Path, stop_before_pixels: bool = False):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(file, stop_before_pixels=stop_before_pixels)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{file}: must be a readable DICOM file, but reading failed: {exc}. "
                        "Re-export it or remove it from the folder.") from exc


def to_unit_range(ds, file: Path | str = "<dataset>") -> np.ndarray:
    """Display-ready grey levels in [0, 1] (bone bright) from a DICOM dataset's stored pixels."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DataError(f"{file}: a radiograph must have 1 sample per pixel, but got {ds.SamplesPerPixel}.")
    try:
        stored = ds.pixel_array
    except Exception as exc:  # pydicom raises RuntimeError/ValueError/NotImplementedError by cause
        syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        if syntax is not None and syntax.is_compressed:
            raise DataError(
                f"{file}: compressed pixel data ({syntax.name}) needs a decoder plugin, but none could decode it "
                f"({type(exc).__name__}: {exc}). {PLUGIN_HINT}."
            ) from exc
        raise DataError(f"{file}: the pixel data must be complete and decodable, but got {exc}. "
                        "The file is probably truncated; re-export it.") from exc
    if stored.ndim != 2:
        raise DataError(f"{file}: a radiograph must be one 2D frame, but got pixel array shape {stored.shape}.")
    values = apply_modality_lut(stored, ds)
    low, high = _modality_range(ds)
    if "WindowCenter" in ds or ds.get("VOILUTSequence"):
        values = apply_voi_lut(values, ds, prefer_lut=True)
        if ds.get("VOILUTSequence") and "WindowCenter" not in ds:
            low, high = 0.0, float(2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1)
    image = (np.asarray(values, np.float64) - low) / max(high - low, 1e-12)
    image = np.clip(image, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        image = 1.0 - image
    return image.astype(np.float32)


def _modality_range(ds) -> tuple[float, float]:
    """Nominal range of modality-LUT output (PS3.3 C.11.1), the same rule pydicom's windowing uses."""
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    low, high = (0, 2**bits - 1) if int(ds.PixelRepresentation) == 0 else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    return low * slope + intercept, high * slope + intercept


def _spacing(ds) -> tuple[float, float] | None:
    """PixelSpacing, else ImagerPixelSpacing (mm); zero, negative or unparsable counts as absent; None: unknown."""
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        if tag in ds and ds[tag].value:
            try:
                row, col = (float(v) for v in ds[tag].value)
            except (TypeError, ValueError):
                continue
            if row > 0 and col > 0:
                return (row, col)
    return None


# --- writing (phantom export) ------------------------------------------------------------------------
_FIRST = ("Alex", "Sam", "Robin", "Kim", "Noor", "Jules", "Mika", "Ariel", "Tove", "Emil", "Lena", "Ravi")
_LAST = ("Phantom", "Testperson", "Dummy", "Example", "Sample", "Mock", "Specimen", "Placeholder")
_SITE_TAGS = {  # (manufacturer, photometric): one site stores MONOCHROME1, as some CR readers do
    "site-A": ("Acme Radiography", "MONOCHROME2"),
    "site-B": ("Borealis Imaging", "MONOCHROME1"),
    "site-C": ("Cobalt Medical", "MONOCHROME2"),
    "site-D": ("Delta DR", "MONOCHROME2"),
}


def _fake(patient_id: str) -> tuple[str, str]:
    """Deterministic fake name and birth date for a pseudonym (the phantom has no real people)."""
    h = int(hashlib.sha256(patient_id.encode()).hexdigest(), 16)
    name = f"{_LAST[h % len(_LAST)]}^{_FIRST[(h >> 8) % len(_FIRST)]}"
    birth = datetime.date(1950, 1, 1) + datetime.timedelta(days=(h >> 16) % 25000)
    return name, birth.strftime("%Y%m%d")


def write_dicom(case: Case, path: Path) -> None:
    """One 12-bit DX image: stored = round(v * 4095) (inverted for MONOCHROME1), rescale -1024, full window."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    manufacturer, photometric = _SITE_TAGS.get(case.site, ("Generic DR", "MONOCHROME2"))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DX_FOR_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["bench-phantom", case.id])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    name, birth = _fake(case.patient_id)
    visit = int(hashlib.sha256(case.id.encode()).hexdigest(), 16) % 3000
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = name, case.patient_id, birth, "O"
    ds.StudyDate = (datetime.date(2015, 1, 1) + datetime.timedelta(days=visit)).strftime("%Y%m%d")
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["study", case.id])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["series", case.id])
    ds.SOPClassUID, ds.SOPInstanceUID = DX_FOR_PRESENTATION, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.ViewPosition, ds.BodyPartExamined = "DX", "PA", "CHEST"
    ds.InstitutionName, ds.Manufacturer = case.site, manufacturer
    ds.PresentationIntentType = "FOR PRESENTATION"
    image = np.clip(np.asarray(case.image, np.float64), 0, 1)
    stored = np.round((1 - image if photometric == "MONOCHROME1" else image) * 4095).astype(np.uint16)
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "US"
    # LINEAR window covering the whole rescaled range exactly (PS3.3 C.11.2.1.2): identity on display
    ds.WindowCenter, ds.WindowWidth = 1024, 4096
    if case.spacing:  # unknown spacing stays absent rather than written as 1 mm
        ds.ImagerPixelSpacing = [f"{s:.4f}" for s in case.spacing[:2]]
    ds.PixelData = stored.astype("<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
