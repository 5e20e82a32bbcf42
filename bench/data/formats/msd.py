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

Labels: dataset.json's ``labels`` say which values are lesions (names such as cancer, nodule, lesion,
tumour, mass) and, as a bench extension, the lung ("lung", "left lung"); a label set with anything else
(``{"0": "background", "1": "kidney", "2": "tumour"}``) is not lung-lesion data and is refused with one
error naming the labels, as is a label map holding values dataset.json does not name. Volumes are read one
at a time (``iter_cases``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from bench.data.case import Case
from bench.data.ct_io import check_label_matches, read_nifti, write_nifti
from bench.data.formats import FORMATS
from bench.data.formats._common import atomic_folder
from bench.errors import DataError, describe_error


def find_dataset_json(root: Path) -> Path:
    for candidate in (root / "dataset.json", *sorted(root.glob("Task*_*/dataset.json"))):
        if candidate.is_file():
            return candidate
    raise DataError(f"{root}: an MSD folder must contain dataset.json (e.g. Task06_Lung/dataset.json), but none "
                    "was found. Point --data at the task folder.")


# Label names dataset.json may give, matched as lower-case words: lesions (Task06_Lung calls them "cancer")
# and, as a bench extension, the lungs. Anything else (kidney, liver, ...) is not lung-lesion data.
LESION_WORDS = {"cancer", "nodule", "nodules", "lesion", "lesions", "tumour", "tumours", "tumor", "tumors", "mass",
                "masses", "neoplasm", "carcinoma", "malignancy"}
LUNG_WORDS = {"lung", "lungs", "left", "right", "pulmonary"}  # "left lung", "lungs"; with no lesion word: lung


def label_roles(table: Path, labels) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(lesion values, lung values) from dataset.json's ``labels`` ({"0": "background", "1": "cancer"}).

    Raises:
        DataError: the labels are missing, malformed, name no lesion, or name a structure ct-lung cannot
            interpret (e.g. kidney); the message names every label.
    """
    example = '{"0": "background", "1": "cancer"}'
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{table}: dataset.json must name its label values in 'labels' (e.g. {example}), but got "
                        f"{labels!r}. Add them so bench knows which voxels are lesions.")
    lesion, lung, unknown = [], [], []
    for key, name in labels.items():
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise DataError(f"{table}: the keys of 'labels' must be label values (0, 1, ...), but got {key!r}.") from None
        words = set(str(name).lower().replace("_", " ").replace("-", " ").split())
        if value == 0:  # background in every Decathlon task, whatever it is called
            continue
        if words & LESION_WORDS and words <= LESION_WORDS | LUNG_WORDS | {"primary", "malignant", "in", "of"}:
            lesion.append(value)
        elif words & {"lung", "lungs"} and words <= LUNG_WORDS:
            lung.append(value)
        else:
            unknown.append(f"{key}: {name!r}")
    if unknown or not lesion:
        shown = ", ".join(f'"{k}": "{v}"' for k, v in labels.items())
        why = (f"{'; '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} neither a lung lesion nor the lung"
               if unknown else "none is a lesion")
        raise DataError(
            f"{table}: ct-lung reads lung lesions, so dataset.json's labels must be background, lesions (cancer, "
            f"nodule, lesion, tumour, mass) and optionally the lung, but got {{{shown}}} ({why}). No bench task reads "
            "such data yet; if it is lung-lesion data, name the labels as Task06_Lung does (" + example + ")."
        )
    return tuple(lesion), tuple(lung)


@FORMATS.register("msd")
class Msd:
    """Medical Segmentation Decathlon Task06_Lung layout (dataset.json + imagesTr/labelsTr NIfTI)."""

    LOOKS_LIKE = "msd: dataset.json with imagesTr/, labelsTr/"

    @staticmethod
    def recognise(root: Path) -> bool:
        from bench.data.seg_dataset import MSD, looks_like  # the Decathlon's dataset.json, not nnU-Net's

        return looks_like(Path(root), MSD)

    def read(self, path: str | Path, classes: Sequence[str] = ()) -> list[Case]:
        return list(self.iter_cases(path, classes))

    def iter_cases(self, path: str | Path, classes: Sequence[str] = ()) -> Iterator[Case]:
        """The cases one at a time (one volume and its label maps in memory): dataset.json is checked first."""
        table = find_dataset_json(Path(path))
        root = table.parent
        try:
            meta = json.loads(table.read_text())
            entries = meta["training"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{table}: dataset.json must be JSON with a 'training' list, but {describe_error(exc)}.") from exc
        roles = label_roles(table, meta.get("labels"))
        for entry in entries:
            image_path = root / str(entry["image"])
            if image_path.name.startswith("._"):
                continue
            yield _case(table, root, entry, image_path, roles, classes)

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


def _case(table: Path, root: Path, entry: dict, image_path: Path, roles, classes: Sequence[str]) -> Case:
    lesion_values, lung_values = roles
    label_path = root / str(entry.get("label", ""))
    if not label_path.is_file():
        raise DataError(f"{label_path}: every training image must have its label file, but it is missing "
                        f"(image {image_path.name}). Restore labelsTr/ from the archive.")
    image, spacing = read_nifti(image_path)
    label_map, lspacing = read_nifti(label_path)
    check_label_matches(image_path, label_path, image.shape, spacing, label_map.shape, lspacing)
    present = set(np.unique(label_map).astype(int).tolist()) - {0}
    stray = sorted(present - set(lesion_values) - set(lung_values))
    if stray:
        raise DataError(f"{label_path}: label values must be among dataset.json's labels "
                        f"{sorted({0, *lesion_values, *lung_values})}, but got {stray}. Fix the labels in {table.name}.")
    masks = {"lesion": np.isin(label_map, lesion_values).astype(np.uint8)}
    lung_path = root / "lungsTr" / image_path.name
    if lung_path.is_file():
        lung, lung_spacing = read_nifti(lung_path)
        check_label_matches(image_path, lung_path, image.shape, spacing, lung.shape, lung_spacing)
        masks["lung"] = lung.astype(np.uint8)
    elif lung_values:
        masks["lung"] = np.isin(label_map, lung_values).astype(np.uint8)
    del label_map
    stem = image_path.name.removesuffix(".gz").removesuffix(".nii")
    label = entry.get("bench_class") or ("nodule" if masks["lesion"].any() else "normal")
    if classes and label not in classes:
        raise DataError(f"{table}: class must be one of {list(classes)}, but got '{label}' for {stem}.")
    return Case(
        id=str(entry.get("bench_case_id") or stem),
        patient_id=str(entry.get("bench_patient_id") or stem),
        site=str(entry.get("bench_site", "")),
        image=np.round(image).astype(np.int16),
        spacing=spacing,
        masks=masks,
        labels={"class": label},
        meta={"modality": "CT", "units": "HU", "axes": "zyx", "slices": int(image.shape[0]), "problems": []},
    )
