"""Medical Segmentation Decathlon layout (Task06_Lung): dataset.json + imagesTr/ + labelsTr/ NIfTI.

Layout (Simpson et al. 2019, http://medicaldecathlon.com)::

    dataset.json        {"name", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "cancer"},
                         "training": [{"image": "./imagesTr/lung_001.nii.gz", "label": "./labelsTr/..."}], ...}
    imagesTr/*.nii.gz   CT volumes in HU
    labelsTr/*.nii.gz   lesion label maps (1 = cancer)
    lungsTr/*.nii.gz    optional, bench extension: lung masks (1 right, 2 left); absent in the real data set

The real archive carries macOS ``._*`` resource files next to every volume: they are skipped. Extra keys
``bench_case_id``, ``bench_patient_id``, ``bench_class``, ``bench_site`` in a training entry (written by the
phantom export) are used when present; otherwise each volume is its own patient and its class is
"nodule" when its label has any lesion voxel, else "normal".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.data.case import Case
from bench.data.ct_io import check_label_matches, read_nifti, write_nifti
from bench.data.formats import FORMATS
from bench.data.formats._common import atomic_folder
from bench.errors import DataError


def find_dataset_json(root: Path) -> Path:
    for candidate in (root / "dataset.json", *sorted(root.glob("Task*_*/dataset.json"))):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root}: an MSD folder must contain dataset.json (e.g. Task06_Lung/dataset.json), but none "
                    "was found. Point --data at the task folder.")


@FORMATS.register("msd", tasks=("ct-lung",))
class Msd:
    """Medical Segmentation Decathlon Task06_Lung layout (dataset.json + imagesTr/labelsTr NIfTI)."""

    def read(self, path: str | Path, classes: Sequence[str] = ()) -> list[Case]:
        table = find_dataset_json(Path(path))
        root = table.parent
        try:
            entries = json.loads(table.read_text())["training"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{table}: dataset.json must be JSON with a 'training' list, but {exc!r}.") from exc
        cases = []
        for entry in entries:
            image_path = root / str(entry["image"])
            if image_path.name.startswith("._"):
                continue
            label_path = root / str(entry.get("label", ""))
            if not label_path.is_file():
                raise DataError(f"{label_path}: every training image must have its label file, but it is missing "
                                f"(image {image_path.name}). Restore labelsTr/ from the archive.")
            image, spacing = read_nifti(image_path)
            lesion, lspacing = read_nifti(label_path)
            check_label_matches(image_path, label_path, image.shape, spacing, lesion.shape, lspacing)
            masks = {"lesion": (lesion > 0).astype(np.uint8)}
            lung_path = root / "lungsTr" / image_path.name
            if lung_path.is_file():
                lung, lung_spacing = read_nifti(lung_path)
                check_label_matches(image_path, lung_path, image.shape, spacing, lung.shape, lung_spacing)
                masks["lung"] = lung.astype(np.uint8)
            stem = image_path.name.removesuffix(".gz").removesuffix(".nii")
            label = entry.get("bench_class") or ("nodule" if masks["lesion"].any() else "normal")
            if classes and label not in classes:
                raise DataError(f"{table}: class must be one of {list(classes)}, but got '{label}' for {stem}.")
            cases.append(Case(
                id=str(entry.get("bench_case_id") or stem),
                patient_id=str(entry.get("bench_patient_id") or stem),
                site=str(entry.get("bench_site", "")),
                image=np.round(image).astype(np.int16),
                spacing=spacing,
                masks=masks,
                labels={"class": label},
                meta={"modality": "CT", "units": "HU", "axes": "zyx", "slices": int(image.shape[0]), "problems": []},
            ))
        return cases

    def write(self, cases: Sequence[Case], out: str | Path) -> Path:
        with atomic_folder(out) as tmp:
            for sub in ("imagesTr", "labelsTr", "lungsTr", "imagesTs"):
                (tmp / sub).mkdir()
            training = []
            for i, case in enumerate(cases, start=1):
                name = f"lung_{i:03d}.nii.gz"
                if "lesion" not in case.masks:
                    raise DataError(f"{out}: every case exported as MSD needs a 'lesion' mask (labelsTr), but case "
                                    f"{case.id} has only {sorted(case.masks)}.")
                write_nifti(tmp / "imagesTr" / name, case.image.astype(np.int16), case.spacing)
                write_nifti(tmp / "labelsTr" / name, (case.masks["lesion"] > 0).astype(np.uint8), case.spacing)
                if "lung" in case.masks:
                    write_nifti(tmp / "lungsTr" / name, case.masks["lung"].astype(np.uint8), case.spacing)
                training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}",
                                 "bench_case_id": case.id, "bench_patient_id": case.patient_id,
                                 "bench_class": case.labels.get("class", ""), "bench_site": case.site})
            meta = {
                "name": "Lung", "description": "bench CT phantom in the Task06_Lung layout (not real patients)",
                "reference": "bench phantom", "licence": "CC-BY-SA 4.0", "release": "1.0",
                "tensorImageSize": "3D", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "cancer"},
                "numTraining": len(training), "numTest": 0, "training": training, "test": [],
            }
            (tmp / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
        return Path(out)
