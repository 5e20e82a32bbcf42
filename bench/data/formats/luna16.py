"""LUNA16 layout: MetaImage (.mhd/.raw) scans in subset0..subset9 + annotations.csv of nodules.

Layout (Setio et al. 2017, https://luna16.grand-challenge.org)::

    subset0/<seriesuid>.mhd + .raw ... subset9/   CT scans in HU; the ten subsets are the official folds
    annotations.csv        seriesuid,coordX,coordY,coordZ,diameter_mm   (world coordinates, mm)
    seg-lungs-LUNA16/<seriesuid>.mhd   optional lung masks (3 and 4 = the two lungs, 5 = trachea)

Nodule masks are spheres of the annotated diameter around the world coordinate, mapped to voxels with
SimpleITK's physical-point transform (so origin, spacing and direction are honoured). Each scan is its own
patient (LUNA16 publishes no patient ids) and its class is "nodule" if it has annotations, else "normal".
``official_split`` turns the subsets into a split file: subset9 is the held-out test part and each of the
other subsets is the validation part of one fold.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.data.cache import cache_root
from bench.data.case import Case
from bench.data.formats import FORMATS
from bench.data.formats._common import atomic_folder
from bench.errors import DataError

if TYPE_CHECKING:  # SimpleITK, scipy.ndimage and scikit-learn (splits) load when a folder is read or written
    import SimpleITK as sitk

    from bench.data.splits import Split

ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
LUNG_VALUES = (3, 4)  # seg-lungs-LUNA16 values of the two lungs; 5 (trachea) is not lung


def read_mhd(path: Path) -> sitk.Image:
    import SimpleITK as sitk

    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DataError(f"{path}: must be a readable MetaImage (.mhd + its .raw), but reading failed: "
                        f"{str(exc).strip().splitlines()[-1]}") from exc


def sphere_mask(image: sitk.Image, nodules: Sequence[tuple[float, float, float, float]]) -> np.ndarray:
    """A (z, y, x) mask of spheres (world x, y, z in mm, diameter in mm) on ``image``'s grid."""
    size = image.GetSize()  # x, y, z
    mask = np.zeros(size[::-1], np.uint8)
    spacing = np.array(image.GetSpacing())
    grid = np.meshgrid(*[np.arange(n) for n in size], indexing="ij")  # x, y, z voxel indices
    index = np.stack([g.ravel() for g in grid], 1).astype(float)
    origin = np.array(image.GetOrigin())
    direction = np.array(image.GetDirection()).reshape(3, 3)
    world = origin + (index * spacing) @ direction.T
    for x, y, z, diameter in nodules:
        inside = np.linalg.norm(world - np.array([x, y, z]), axis=1) <= diameter / 2
        if not inside.any():  # sub-voxel nodule: mark the nearest voxel
            inside[np.argmin(np.linalg.norm(world - np.array([x, y, z]), axis=1))] = True
        ix = index[inside].astype(int)
        mask[ix[:, 2], ix[:, 1], ix[:, 0]] = 1
    return mask


@FORMATS.register("luna16")
class Luna16:
    """LUNA16: subset0-9/*.mhd scans, annotations.csv nodules (world mm), optional seg-lungs-LUNA16 lung masks."""

    LOOKS_LIKE = "luna16: subset*/<seriesuid>.mhd with annotations.csv"

    @staticmethod
    def recognise(root: Path) -> bool:
        return any(root.glob("subset*/*.mhd"))

    def read(self, path: str | Path, classes: Sequence[str] = ()) -> list[Case]:
        return list(self.iter_cases(path, classes))

    def iter_cases(self, path: str | Path, classes: Sequence[str] = ()) -> Iterator[Case]:
        """The scans one at a time (one volume, its nodule spheres and lung mask in memory)."""
        root = Path(path)
        table = root / "annotations.csv"
        if not table.is_file():
            raise DataError(f"{table}: a LUNA16 folder must contain annotations.csv, but it is missing.")
        nodules: dict[str, list] = {}
        with table.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if tuple(reader.fieldnames or ()) [:5] != ANNOTATION_COLUMNS:
                raise DataError(f"{table}: columns must be {list(ANNOTATION_COLUMNS)}, but got {reader.fieldnames}.")
            for line, row in enumerate(reader, start=2):
                try:
                    values = tuple(float(row[k]) for k in ANNOTATION_COLUMNS[1:])
                except (TypeError, ValueError):
                    raise DataError(f"{table}:{line}: coordinates and diameter must be numbers, but got {row}.") from None
                nodules.setdefault(row["seriesuid"], []).append(values)
        scans = sorted(p for p in root.glob("subset*/*.mhd") if not p.name.startswith("._"))
        if not scans:
            raise DataError(f"{root}: a LUNA16 folder must hold subset*/<seriesuid>.mhd scans, but none were found.")
        for mhd in scans:
            yield _case(root, mhd, nodules)

    def write(self, cases: Sequence[Case], out: str | Path) -> Path:
        """Scans in subsets (all scans of a patient in one subset), annotations from lesion components."""
        import SimpleITK as sitk
        from scipy import ndimage

        cases = list(cases)  # read twice (patients, then scans): a generator would leave the second pass empty
        flat = next((c for c in cases if np.ndim(c.image) != 3), None)
        if flat is not None:
            raise DataError(f"{out}: every LUNA16 scan must be a 3D volume, but case {flat.id} has "
                            f"{np.ndim(flat.image)} dimensions.")
        if not cases:
            raise DataError(f"{out}: a LUNA16 folder must hold at least one scan, but none was given.")
        with atomic_folder(out) as tmp:
            (tmp / "seg-lungs-LUNA16").mkdir()
            patients = sorted({c.patient_id for c in cases})
            subset_of = {p: i % 10 for i, p in enumerate(patients)}
            rows = []
            for c in cases:
                uid = f"1.3.6.1.4.1.99999.{abs(hash_int(c.id))}"
                folder = tmp / f"subset{subset_of[c.patient_id]}"
                folder.mkdir(exist_ok=True)
                image = _to_sitk(c.image.astype(np.int16), c.spacing)
                sitk.WriteImage(image, str(folder / f"{uid}.mhd"), useCompression=False)
                if "lung" in c.masks:
                    lung = np.select([c.masks["lung"] == 1, c.masks["lung"] == 2], LUNG_VALUES, 0).astype(np.uint8)
                    sitk.WriteImage(_to_sitk(lung, c.spacing), str(tmp / "seg-lungs-LUNA16" / f"{uid}.mhd"))
                labels, n = ndimage.label(c.masks.get("lesion", np.zeros(1)) > 0, structure=np.ones((3, 3, 3)))
                for k in range(1, n + 1):
                    idx = np.argwhere(labels == k)
                    centre = idx.mean(0)[::-1]  # x, y, z voxel coordinates
                    world = image.TransformContinuousIndexToPhysicalPoint(centre.tolist())
                    volume = len(idx) * float(np.prod(c.spacing))
                    diameter = (6 * volume / np.pi) ** (1 / 3)
                    rows.append([uid, *(round(v, 3) for v in world), round(diameter, 3)])
            with (tmp / "annotations.csv").open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(ANNOTATION_COLUMNS)
                writer.writerows(rows)
        return Path(out)


def _case(root: Path, mhd: Path, nodules: dict[str, list]) -> Case:
    import SimpleITK as sitk

    uid = mhd.stem
    image = read_mhd(mhd)
    hu = sitk.GetArrayFromImage(image)
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    masks = {"lesion": sphere_mask(image, nodules.get(uid, []))}
    lung_path = root / "seg-lungs-LUNA16" / f"{uid}.mhd"
    if lung_path.is_file():
        lung_img = read_mhd(lung_path)
        lung = sitk.GetArrayFromImage(lung_img)
        if lung.shape != hu.shape or not np.allclose(lung_img.GetSpacing(), image.GetSpacing(), atol=1e-3):
            raise DataError(f"{lung_path}: a lung mask must match its scan {mhd.name} in shape {hu.shape} "
                            f"and spacing {image.GetSpacing()}, but got {lung.shape} and "
                            f"{lung_img.GetSpacing()}.")
        masks["lung"] = np.select([lung == LUNG_VALUES[0], lung == LUNG_VALUES[1]], [1, 2], 0).astype(np.uint8)
    subset = mhd.parent.name
    return Case(
        id=uid, patient_id=uid, site="", image=hu.astype(np.int16), spacing=spacing, masks=masks,
        labels={"class": "nodule" if uid in nodules else "normal"},
        meta={"modality": "CT", "units": "HU", "axes": "zyx", "slices": int(hu.shape[0]), "problems": [],
              "subset": int(subset.removeprefix("subset")) if subset.removeprefix("subset").isdigit() else -1},
    )


def hash_int(text: str) -> int:
    import hashlib

    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16)


def _to_sitk(array: np.ndarray, spacing) -> sitk.Image:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing([float(s) for s in spacing[::-1]])
    shape = np.array(array.shape[::-1])
    image.SetOrigin([float(-(n - 1) / 2 * s) for n, s in zip(shape, spacing[::-1])])
    return image


def official_split(task: str, source: str, cases: Sequence[Case]) -> Split:
    """subset9 (or the last present subset) is the test part; every other present subset is one fold's val."""
    from bench.data.splits import Split, check_split  # splits imports scikit-learn; reading needs none

    by_subset: dict[int, list[str]] = {}
    for c in cases:
        by_subset.setdefault(int(c.meta.get("subset", -1)), []).append(c.id)
    present = sorted(by_subset)
    if len(present) < 3:
        raise DataError(f"{source}: the LUNA16 official split needs at least 3 non-empty subsets, but got {present}.")
    test = present[-1]
    folds = []
    for k in present[:-1]:
        train = sorted(i for s in present[:-1] if s != k for i in by_subset[s])
        folds.append({"train": tuple(train), "val": tuple(sorted(by_subset[k]))})
    split = Split(task, source, 0, "luna16-subset", tuple(sorted(by_subset[test])), tuple(folds))
    check_split(split, {c.id: c.patient_id for c in cases})
    return split


def keep_official_split(task: str, source: str, cases: Sequence[Case]) -> None:
    """Store the official split where ``resolve_split`` looks, unless a split for this source exists."""
    from bench.data.splits import save_split, standard_split_path

    kept = cache_root().parent / "splits" / f"{task}-{source}.json"
    if not standard_split_path(task, source).is_file() and not kept.is_file():
        save_split(official_split(task, source, cases), kept)
