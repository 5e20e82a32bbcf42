"""Any labelled segmentation data set in nnU-Net v2's raw layout or the Medical Segmentation Decathlon's.

nnU-Net v2 raw folder (Isensee et al. 2021, ``documentation/dataset_format.md``)::

    DatasetXXX_Name/dataset.json   {"channel_names": {"0": "T2", "1": "ADC"},
                                    "labels": {"background": 0, "PZ": 1, "TZ": 2},
                                    "numTraining": 32, "file_ending": ".nii.gz"}
    imagesTr/<case>_<XXXX><file_ending>   one file per channel XXXX = 0000, 0001, ...
    labelsTr/<case><file_ending>          integer label map on the image grid
    imagesTs/, labelsTs/                  optional held-out cases (scored only where labelsTs has them)

Medical Segmentation Decathlon task folder (Simpson et al. 2019)::

    TaskXX_Name/dataset.json   {"modality": {"0": "FLAIR", ...}, "labels": {"0": "background", "1": "edema"},
                                "numTraining": 484, "training": [{"image": "./imagesTr/x.nii.gz",
                                                                  "label": "./labelsTr/x.nii.gz"}, ...]}
    imagesTr/*.nii.gz          one 3D file, or one 4D file with the channels on the last axis
    labelsTr/*.nii.gz

macOS ``._*`` resource files (the MSD archives carry one beside every volume) are skipped. Listing a folder
(:func:`open_seg_dataset`) reads dataset.json and file names only; :meth:`SegDataset.load` decodes one case.
Volumes are (z, y, x) arrays with (z, y, x) spacing in mm from the NIfTI header (``bench.data.ct_io``);
nnU-Net's 2D layout (``file_ending`` ".png"/".bmp") holds one grayscale image per channel and an integer
label image, without spacing (None).

Patients: a case is its own patient unless ``patient_regex`` (one group over the case id) says which
patient it belongs to, so follow-up scans stay in one split part. Patient ids stay in the data layer.

Example:
    >>> ds = open_seg_dataset("Dataset501_Organ")            # doctest: +SKIP
    >>> ds.layout, ds.channels, ds.labels                    # doctest: +SKIP
    ('nnunet', ('CT',), {'background': 0, 'organ': 1, 'lesion': 2})
    >>> ds.load(ds.case_ids[0]).image.shape                  # doctest: +SKIP
    (1, 24, 48, 48)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from bench.data.case import Case, CaseRef
from bench.data.seg_splits import fold_of_cases, read_splits_final, write_splits_final
from bench.data.seg_write import LABEL_KEY, write_msd, write_nnunet
from bench.errors import DataError

NNUNET, MSD = "nnunet", "msd"
NIFTI_ENDINGS = (".nii.gz", ".nii")
IMAGE_2D_ENDINGS = (".png", ".bmp")


@dataclass(frozen=True)
class CaseFiles:
    """Where one case's pixels are: one file per channel, or one 4D file holding every channel (MSD)."""

    images: tuple[Path, ...]
    label: Path
    packed: bool = False  # one 4D NIfTI with the channels on its last axis


@dataclass(frozen=True)
class SegDataset:
    """What dataset.json and the file names say; nothing decoded until :meth:`load`.

    ``labels`` maps name -> value, background included, in value order. ``case_ids`` are the labelled
    training cases (imagesTr + labelsTr), ``test_ids`` the labelled held-out ones (imagesTs + labelsTs);
    images without labels are only counted (``unlabelled_test_ids``), never loaded or scored.
    """

    root: Path
    layout: str
    channels: tuple[str, ...]
    labels: dict[str, int]
    dims: int
    file_ending: str
    case_ids: tuple[str, ...]
    test_ids: tuple[str, ...] = ()
    num_training: int | None = None
    files: dict[str, CaseFiles] = field(default_factory=dict, repr=False, compare=False)
    patients: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # imagesTs cases with every channel but no label in labelsTs/: counted by inspect, never scored
    unlabelled_test_ids: tuple[str, ...] = ()
    # nnU-Net v2 region-based labels: region name -> the label values it unites (overlapping), and the value
    # each region's prediction writes back, in order (``regions_class_order``); empty for plain labels
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict, compare=False)
    regions_class_order: tuple[int, ...] = ()

    @property
    def dataset_json(self) -> Path:
        return self.root / "dataset.json"

    def patient_of(self, case_id: str) -> str:
        return self.patients.get(case_id, case_id)

    def load(self, case_id: str) -> Case:
        """One case: ``image`` float32 (C, *spatial), ``masks["label"]`` the integer label map (*spatial),
        ``spacing`` per spatial axis in mm (None for 2D images).

        Raises:
            DataError: a file is unreadable, a channel's or the label's shape differs from channel 0's, or
                the label map holds a value dataset.json does not name; the message names the file.
        """
        if case_id not in self.files:
            raise DataError(f"{self.root}: case id must be one of the data set's {len(self.files)} cases, "
                            f"but got '{case_id}'.")
        files = self.files[case_id]
        image, spacing = (_read_3d(files, len(self.channels)) if self.dims == 3 else _read_2d(files))
        label = _read_label(files.label, self.dims, image.shape[1:], spacing, files.images[0])
        present = set(np.unique(label).astype(int).tolist())
        stray = sorted(present - set(self.labels.values()))
        if stray:
            raise DataError(f"{files.label}: label values must be among dataset.json's labels "
                            f"{sorted(self.labels.values())}, but got {stray}. Fix the label map or "
                            f"{self.dataset_json}.")
        dtype = np.uint8 if max(self.labels.values()) < 256 else np.int32
        return Case(
            id=case_id, patient_id=self.patient_of(case_id), image=image, spacing=spacing,
            masks={LABEL_KEY: label.astype(dtype)},
            meta={"layout": self.layout, "channels": list(self.channels), "label_values": dict(self.labels),
                  "axes": "zyx" if self.dims == 3 else "yx"},
        )

    def refs(self) -> list[CaseRef]:
        """Every labelled case as a CaseRef (nothing decoded): training cases, then the labelled test cases
        with ``meta["split_part"] = "test"``; with splits_final.json beside dataset.json, each training case
        carries ``meta["split_fold"]`` (the fold whose val part holds it) and ``split_part = "trainval"``, so
        ``bench.data.splits.make_split`` gives nnU-Net's folds one for one; training cases the file does not
        name are test cases then (``bench.data.seg_splits.fold_of_cases``)."""
        folds = fold_of_cases(self.root, self.case_ids)
        refs = []
        for case_id in self.case_ids:
            if folds:
                meta = ({"split_part": "trainval", "split_fold": folds[case_id]} if case_id in folds
                        else {"split_part": "test"})
            else:
                meta = {"split_part": "trainval"} if self.test_ids else {}
            refs.append(CaseRef(case_id, self.patient_of(case_id), partial(self.load, case_id), meta=meta))
        refs += [CaseRef(c, self.patient_of(c), partial(self.load, c), meta={"split_part": "test"})
                 for c in self.test_ids]
        return refs


def open_seg_dataset(root: str | Path, patient_regex: str | None = None, strict: bool = True) -> SegDataset:
    """List a nnU-Net v2 raw folder or an MSD task folder (``root``, or the one Dataset*/Task* folder in it).

    Args:
        root: the folder holding dataset.json (or its parent, when it holds exactly one such folder).
        patient_regex: a regular expression with one group, searched in each case id; the group is the
            patient (``r"^(P\\d+)-"`` for ``P0001-0``, ``P0001-1``). None: each case is its own patient.
        strict: raise on every problem found while listing (see :func:`list_seg_dataset`); False returns
            the usable cases (``bench.data.seg_inspect`` lists the problems itself).

    Raises:
        DataError: no dataset.json, unreadable JSON, labels or channels missing or malformed, an unknown
            file ending, no labelled case; with ``strict``, also a missing label or channel file, numTraining
            disagreeing with the files, or region-based labels without regions_class_order. One line per
            problem, each naming its file.
    """
    ds, problems = list_seg_dataset(root, patient_regex)
    if strict and problems:
        raise DataError("\n".join(problems))
    return ds


def list_seg_dataset(root: str | Path, patient_regex: str | None = None) -> tuple[SegDataset, list[str]]:
    """(the data set of the complete cases, the problems found on the way, one line each naming a file).

    Raises:
        DataError: problems that leave nothing to list (see :func:`open_seg_dataset`).
    """
    table = find_dataset_json(Path(root))
    meta = _read_json(table)
    if "channel_names" in meta or "file_ending" in meta:
        ds, problems = _list_nnunet(table, meta)
    elif "modality" in meta or "training" in meta:
        ds, problems = _list_msd(table, meta)
    else:
        raise DataError(f"{table}: dataset.json must be nnU-Net v2's (channel_names, labels, numTraining, "
                        f"file_ending) or the Decathlon's (modality, labels, training), but its keys are "
                        f"{sorted(meta)}.")
    if not ds.case_ids:
        raise DataError("\n".join(problems) if problems else
                        f"{table.parent}: a data set must hold at least one labelled training case, but "
                        f"{table.parent / 'imagesTr'} and {table.parent / 'labelsTr'} have none.")
    patients = _patients(ds.case_ids + ds.test_ids, patient_regex)
    return SegDataset(**{**ds.__dict__, "patients": patients}), problems


def find_dataset_json(root: Path) -> Path:
    if (root / "dataset.json").is_file():
        return root / "dataset.json"
    inside = sorted({*root.glob("Dataset*_*/dataset.json"), *root.glob("Task*_*/dataset.json")})
    if len(inside) == 1:
        return inside[0]
    if not root.exists():
        raise DataError(f"{root}: the data path must exist, but it does not.")
    found = f"several ({', '.join(p.parent.name for p in inside)})" if inside else "none"
    raise DataError(f"{root}: a segmentation data folder must contain dataset.json (nnU-Net "
                    f"DatasetXXX_Name/ or MSD TaskXX_Name/), but found {found}. Point --data at the folder "
                    "that holds dataset.json.")


def looks_like(root: Path, layout: str) -> bool:
    """Cheap check for ``recognise``: dataset.json of ``layout`` (key names only) at ``root`` or one level in."""
    try:
        table = find_dataset_json(Path(root))
        meta = json.loads(table.read_text())
    except (DataError, OSError, ValueError):
        return False
    if not isinstance(meta, dict):
        return False
    if layout == NNUNET:
        return "channel_names" in meta and "file_ending" in meta
    return "modality" in meta and "training" in meta and "channel_names" not in meta


# --- listing ------------------------------------------------------------------------------------------
def _read_json(table: Path) -> dict:
    try:
        meta = json.loads(table.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{table}: dataset.json must be readable JSON, but reading failed: {exc}.") from exc
    if not isinstance(meta, dict):
        raise DataError(f"{table}: dataset.json must hold a JSON object, but got {type(meta).__name__}.")
    return meta


def _visible(folder: Path, ending: str) -> list[Path]:
    """Files of ``folder`` with ``ending``, macOS ``._*`` resource files left out."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.name.endswith(ending) and not p.name.startswith("._"))


def _channel_names(table: Path, raw, key: str) -> tuple[str, ...]:
    example = '{"0": "CT"}'
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{table}: dataset.json must name its input channels in '{key}' (e.g. {example}), "
                        f"but got {raw!r}.")
    try:
        indexed = sorted((int(k), str(v)) for k, v in raw.items())
    except (TypeError, ValueError):
        raise DataError(f"{table}: the keys of '{key}' must be channel numbers 0, 1, ..., but got "
                        f"{sorted(raw)}.") from None
    if [i for i, _ in indexed] != list(range(len(indexed))):
        raise DataError(f"{table}: the keys of '{key}' must be 0..{len(indexed) - 1} without gaps, but got "
                        f"{[i for i, _ in indexed]}.")
    return tuple(name for _, name in indexed)


def _nnunet_labels(table: Path, raw, problems: list[str]) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
    """(label name -> value, region name -> the values it unites). Region-based labels (nnU-Net v2: any
    value a list, as BraTS' ``"whole tumor": [1, 2, 3]``) make every foreground entry a region (an integer
    one of one value); the raw values the regions unite are named ``value N`` unless an entry names them."""
    example = '{"background": 0, "organ": 1}'
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{table}: dataset.json must name its labels in 'labels' (e.g. {example}), but got "
                        f"{raw!r}.")
    labels, regions, region_values = {}, {}, set()
    for name, value in raw.items():
        if isinstance(value, (list, tuple)):
            values = [v for v in value if isinstance(v, int) and not isinstance(v, bool)]
            if len(values) != len(value) or not values or min(values) < 0:
                raise DataError(f"{table}: a region in 'labels' must list integer label values (e.g. "
                                f'"whole tumor": [1, 2, 3]), but got {name!r}: {value!r}.')
            regions[str(name)] = tuple(values)
            region_values |= set(values)
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise DataError(f"{table}: each value in 'labels' must be an integer label value (e.g. {example}), "
                            f"but got {name!r}: {value!r}.")
        labels[str(name)] = value
    if regions:  # every foreground entry is a region then; integer ones unite one value
        regions = {**{n: (v,) for n, v in labels.items() if v != 0}, **regions}
        regions = {n: regions[n] for n in raw if n in regions}  # dataset.json's order
    for v in sorted(region_values - set(labels.values())):  # the raw values the regions group: valid in files
        labels[f"value {v}"] = v
    return _ordered_labels(table, labels), regions


def _regions_class_order(table: Path, meta: dict, regions: dict, problems: list[str]) -> tuple[int, ...]:
    """nnU-Net's ``regions_class_order``: the label value each region's prediction writes, region by region
    (later ones over earlier ones), one per region."""
    if not regions:
        return ()
    order = meta.get("regions_class_order")
    if (not isinstance(order, list) or len(order) != len(regions)
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in order)):
        problems.append(f"{table}: region-based 'labels' need 'regions_class_order', one positive label value per "
                        f"region ({len(regions)}: {list(regions)}), but got {order!r}. nnU-Net's BraTS example: "
                        "[1, 2, 3].")
        return ()
    return tuple(order)


def _ordered_labels(table: Path, labels: dict[str, int]) -> dict[str, int]:
    values = list(labels.values())
    if len(set(values)) != len(values):
        raise DataError(f"{table}: each label value must have one name, but 'labels' repeats values: {labels}.")
    if 0 not in values:
        raise DataError(f"{table}: 'labels' must include background with value 0, but got {labels}.")
    return dict(sorted(labels.items(), key=lambda kv: kv[1]))


def _list_nnunet(table: Path, meta: dict) -> tuple[SegDataset, list[str]]:
    root, problems = table.parent, []
    channels = _channel_names(table, meta.get("channel_names"), "channel_names")
    labels, regions = _nnunet_labels(table, meta.get("labels"), problems)
    class_order = _regions_class_order(table, meta, regions, problems)
    ending = meta.get("file_ending")
    if ending not in NIFTI_ENDINGS + IMAGE_2D_ENDINGS:
        raise DataError(f"{table}: 'file_ending' must be one of {list(NIFTI_ENDINGS + IMAGE_2D_ENDINGS)} "
                        f"(bench reads NIfTI volumes and 2D PNG/BMP images), but got {ending!r}.")
    files: dict[str, CaseFiles] = {}
    train = _nnunet_cases(root / "imagesTr", root / "labelsTr", ending, channels, files, problems, labelled=True)
    unlabelled: list[str] = []
    test = _nnunet_cases(root / "imagesTs", root / "labelsTs", ending, channels, files, problems, labelled=False,
                         unlabelled=unlabelled)
    num = meta.get("numTraining")
    if not isinstance(num, int) or isinstance(num, bool):
        problems.append(f"{table}: 'numTraining' must be the number of training cases, but got {num!r}.")
        num = None
    elif num != len(train) and not _has_missing(problems):
        problems.append(f"{table}: 'numTraining' must equal the labelled training cases in imagesTr/ and "
                        f"labelsTr/ ({len(train)}), but it says {num}. Fix numTraining or restore the files.")
    ds = SegDataset(root, NNUNET, channels, labels, 3 if ending in NIFTI_ENDINGS else 2, ending, tuple(train),
                    tuple(test), num, files, unlabelled_test_ids=tuple(unlabelled), regions=regions,
                    regions_class_order=class_order)
    return ds, problems


def _has_missing(problems: list[str]) -> bool:
    return any("it is missing" in p for p in problems)


def _nnunet_cases(images_dir: Path, labels_dir: Path, ending: str, channels: tuple[str, ...],
                  files: dict[str, CaseFiles], problems: list[str], labelled: bool,
                  unlabelled: list[str] | None = None) -> list[str]:
    """Complete cases of one part (Tr or Ts) into ``files``; missing channel/label files into ``problems``.

    Training cases need their label; test images without one in labelsTs/ are unlabelled: never scored, listed
    in ``unlabelled`` (when every channel is there).
    """
    pattern = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})" + re.escape(ending) + "$")
    by_case: dict[str, dict[int, Path]] = {}
    for path in _visible(images_dir, ending):
        m = pattern.match(path.name)
        if not m:
            problems.append(f"{path}: an image file must be named <case>_<XXXX>{ending} (XXXX the channel "
                            f"number), but it is not.")
            continue
        by_case.setdefault(m["case"], {})[int(m["channel"])] = path
    label_files = {p.name[: -len(ending)]: p for p in _visible(labels_dir, ending)}
    if not labelled and not label_files:
        if unlabelled is not None:
            unlabelled += [c for c, found in sorted(by_case.items()) if set(found) >= set(range(len(channels)))]
        return []
    complete = []
    for case in sorted(set(by_case) | set(label_files)):
        found = by_case.get(case, {})
        ok = True
        for k in sorted(set(found) - set(range(len(channels)))):
            problems.append(f"{found[k]}: channel numbers must be below {len(channels)} (dataset.json "
                            f"channel_names has {len(channels)}), but got {k:04d}.")
            ok = False
        for k, name in enumerate(channels):
            if k not in found:
                problems.append(f"{images_dir / f'{case}_{k:04d}{ending}'}: channel {k} ({name}) of case "
                                f"'{case}' must exist, but it is missing.")
                ok = False
        if case not in label_files:
            if labelled:
                problems.append(f"{labels_dir / (case + ending)}: every training case must have its label "
                                "file, but it is missing.")
            elif ok and unlabelled is not None:
                unlabelled.append(case)
            ok = False  # a test image without a label is never scored, so it is no problem
        if ok:
            files[case] = CaseFiles(tuple(found[k] for k in range(len(channels))), label_files[case])
            complete.append(case)
    return complete


def _list_msd(table: Path, meta: dict) -> tuple[SegDataset, list[str]]:
    root, problems = table.parent, []
    channels = _channel_names(table, meta.get("modality"), "modality")
    raw = meta.get("labels")
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{table}: dataset.json must name its labels in 'labels' (e.g. "
                        f'{{"0": "background", "1": "tumour"}}), but got {raw!r}.')
    try:
        labels = _ordered_labels(table, {str(name): int(value) for value, name in raw.items()})
    except (TypeError, ValueError):
        raise DataError(f"{table}: the keys of 'labels' must be label values (0, 1, ...), but got "
                        f"{sorted(raw)}.") from None
    entries = meta.get("training")
    if not isinstance(entries, list):
        raise DataError(f"{table}: dataset.json must list its cases in 'training', but "
                        + ("it has none." if entries is None else f"got a {type(entries).__name__}."))
    files: dict[str, CaseFiles] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            problems.append(f"{table}: each 'training' entry must have 'image' and 'label', but entry {i} "
                            + (f"has {', '.join(map(str, entry)) or 'no keys'}." if isinstance(entry, dict)
                               else f"is a {type(entry).__name__}."))
            continue
        image, label = root / str(entry["image"]), root / str(entry["label"])
        if image.name.startswith("._"):
            continue
        case = _stem(image.name)
        split = [image.with_name(f"{case}_{k:04d}.nii.gz") for k in range(len(channels))]
        if image.is_file():
            images, packed = (image,), len(channels) > 1
        elif all(p.is_file() for p in split):  # nnU-Net v1 kept the Decathlon json, one file per channel
            images, packed = tuple(split), False
        else:
            problems.append(f"{image}: every image that dataset.json's 'training' lists must exist, but it is "
                            "missing.")
            continue
        if not label.is_file():
            problems.append(f"{label}: every training case must have its label file, but it is missing.")
            continue
        files[case] = CaseFiles(images, label, packed)
    num = meta.get("numTraining")
    if isinstance(num, int) and not isinstance(num, bool) and num != len(entries):
        problems.append(f"{table}: 'numTraining' must equal the length of the 'training' list "
                        f"({len(entries)}), but it says {num}.")
    ds = SegDataset(root, MSD, channels, labels, 3, ".nii.gz", tuple(sorted(files)), (),
                    num if isinstance(num, int) else None, files)
    return ds, problems


def _stem(name: str) -> str:
    for ending in NIFTI_ENDINGS + IMAGE_2D_ENDINGS:
        if name.endswith(ending):
            return name[: -len(ending)]
    return name


def _patients(case_ids: tuple[str, ...], patient_regex: str | None) -> dict[str, str]:
    if not patient_regex:
        return {c: c for c in case_ids}
    try:
        pattern = re.compile(patient_regex)
    except re.error as exc:
        raise DataError(f"--grouping-regex must be a valid regular expression, but {patient_regex!r} is not: "
                        f"{exc}.") from None
    if pattern.groups != 1:
        raise DataError(f"--grouping-regex must have exactly one group (the patient), but {patient_regex!r} has "
                        f"{pattern.groups}. Example: '^(P\\d+)-' for case ids P0001-0, P0001-1.")
    patients = {}
    for case in case_ids:
        m = pattern.search(case)
        if not m or not m.group(1):
            raise DataError(f"--grouping-regex {patient_regex!r} must match every case id, but it does not match "
                            f"'{case}'.")
        patients[case] = m.group(1)
    return patients


# --- decoding -----------------------------------------------------------------------------------------
def _read_3d(files: CaseFiles, n_channels: int) -> tuple[np.ndarray, tuple[float, ...]]:
    from bench.data.ct_io import read_nifti

    if files.packed:
        image, spacing = read_nifti_channels(files.images[0])
        if image.shape[0] != n_channels:
            raise DataError(f"{files.images[0]}: a 4D image must hold one volume per channel of dataset.json "
                            f"({n_channels}) on its last axis, but it holds {image.shape[0]}.")
        return image, spacing
    first, spacing = read_nifti(files.images[0])
    image = np.empty((len(files.images), *first.shape), np.float32)
    image[0] = first
    del first
    for k, path in enumerate(files.images[1:], start=1):
        volume, _ = read_nifti(path)
        if volume.shape != image.shape[1:]:
            raise DataError(f"{path}: every channel must have the shape of channel 0 {image.shape[1:]} "
                            f"({files.images[0].name}), but got {volume.shape}.")
        image[k] = volume
    return image, spacing


def read_nifti_channels(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A 3D or 4D NIfTI (channels on the last axis, as the Decathlon stores multi-modal volumes) as a
    float32 (C, z, y, x) array and its (z, y, x) spacing; axes as ``bench.data.ct_io.read_nifti``."""
    from bench.data.ct_io import load_nifti

    img, data = load_nifti(path)
    if data.ndim == 3:
        data = data[..., None]
    if data.ndim != 4:
        raise DataError(f"{path}: an image must be 3D or 4D (channels last), but got shape {data.shape}.")
    zooms = img.header.get_zooms()[:3]
    image = np.ascontiguousarray(data.transpose(3, 2, 1, 0), dtype=np.float32)
    return image, (float(zooms[2]), float(zooms[1]), float(zooms[0]))


def read_image_2d(path: Path, what: str) -> np.ndarray:
    """A 2D PNG/BMP as a (y, x) array; colour images are refused (nnU-Net's layout: one file per channel)."""
    from PIL import Image

    if not path.is_file():
        raise DataError(f"{path}: the {what} file must exist, but it is missing.")
    try:
        with Image.open(path) as im:
            array = np.asarray(im)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: the {what} must be a readable image file, but reading failed: {exc}.") from exc
    if array.ndim != 2:
        raise DataError(f"{path}: a 2D {what} must be a single-channel (grayscale) image, one file per channel, "
                        f"but got shape {array.shape}. Save each colour channel as its own _XXXX file.")
    return array


def _read_2d(files: CaseFiles) -> tuple[np.ndarray, None]:
    first = read_image_2d(files.images[0], "image")
    image = np.empty((len(files.images), *first.shape), np.float32)
    image[0] = first
    for k, path in enumerate(files.images[1:], start=1):
        plane = read_image_2d(path, "image")
        if plane.shape != first.shape:
            raise DataError(f"{path}: every channel must have the shape of channel 0 {first.shape} "
                            f"({files.images[0].name}), but got {plane.shape}.")
        image[k] = plane
    return image, None


def _read_label(path: Path, dims: int, shape: tuple[int, ...], spacing, image_path: Path) -> np.ndarray:
    if dims == 2:
        label = read_image_2d(path, "label")
        if label.shape != tuple(shape):
            raise DataError(f"{path}: a label must match its image {image_path.name} in shape {tuple(shape)}, "
                            f"but got {label.shape}.")
        return label
    from bench.data.ct_io import check_label_matches, read_nifti

    label, lspacing = read_nifti(path)
    check_label_matches(image_path, path, shape, spacing, label.shape, lspacing)
    rounded = np.round(label)
    if not np.array_equal(rounded, label):
        raise DataError(f"{path}: a label map must hold integer values, but it holds fractions. Export the "
                        "labels as integers (nearest-neighbour resampling).")
    return rounded.astype(np.int32)


__all__ = [
    "LABEL_KEY",
    "SegDataset",
    "list_seg_dataset",
    "open_seg_dataset",
    "read_nifti_channels",
    "read_splits_final",
    "write_msd",
    "write_nnunet",
    "write_splits_final",
]
