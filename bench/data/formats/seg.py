"""The generic segmentation task's formats: nnU-Net v2 raw folders and Decathlon task folders.

Both read through ``bench.data.seg_dataset`` (listing without decoding, one case per ``load``) and write
through ``bench.data.seg_write``. The Decathlon reader for this task is registered as ``msd_seg`` (ct-lung's
``msd`` reads Task06_Lung only); the segmentation task's spec declares ``--format msd`` as its alias
(``TaskSpec.format_aliases``). ``patient_regex`` (one group over the case id) groups cases by patient for splits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.data.case import Case, CaseRef
from bench.data.formats import FORMATS
from bench.data.seg_dataset import MSD, NNUNET, looks_like, open_seg_dataset
from bench.data.seg_write import write_msd, write_nnunet
from bench.errors import DataError


class _SegFolder:
    LAYOUT = ""

    def __init__(self, patient_regex: str | None = None):
        self.patient_regex = patient_regex

    @classmethod
    def recognise(cls, root: Path) -> bool:
        return looks_like(Path(root), cls.LAYOUT)

    def scan(self, path: str | Path, classes: Sequence[str] | None = None) -> list[CaseRef]:
        """Every labelled case as a CaseRef (no volume decoded); ``classes`` is unused: no class labels."""
        ds = open_seg_dataset(path, self.patient_regex)
        if ds.layout != self.LAYOUT:
            raise DataError(f"{ds.dataset_json}: the {self.LAYOUT} format reads a {self.LAYOUT} dataset.json, but "
                            f"this one is {ds.layout}'s. Use --format {ds.layout if ds.layout == NNUNET else 'msd'}.")
        return ds.refs()

    def iter_cases(self, path: str | Path, classes: Sequence[str] | None = ()) -> Iterator[Case]:
        for ref in self.scan(path, classes):
            yield ref.load()

    def read(self, path: str | Path, classes: Sequence[str] | None = ()) -> list[Case]:
        return list(self.iter_cases(path, classes))

    @staticmethod
    def _scheme(cases: Sequence[Case]) -> tuple[list[str], dict[str, int]]:
        """Channels and labels of cases as seg_dataset and the organ phantom give them (``Case.meta``)."""
        if not cases:
            raise DataError("a data set to write must hold at least one case, but got none.")
        meta = cases[0].meta
        if "channels" not in meta or "label_values" not in meta:
            raise DataError(f"case {cases[0].id} must carry meta['channels'] and meta['label_values'] to be "
                            "written as a segmentation data set, but it has neither. Use "
                            "bench.data.seg_write with the channels and labels given.")
        return list(meta["channels"]), dict(meta["label_values"])


@FORMATS.register("nnunet")
class NnUnetRaw(_SegFolder):
    """nnU-Net v2 raw folder: dataset.json (channel_names, labels, file_ending), imagesTr/, labelsTr/."""

    LAYOUT = NNUNET
    LOOKS_LIKE = "nnunet: dataset.json with channel_names and file_ending, imagesTr/<case>_0000, labelsTr/"

    def write(self, cases: Sequence[Case], out: str | Path) -> Path:
        channels, labels = self._scheme(cases)
        ending = ".png" if cases[0].meta.get("axes") == "yx" else ".nii.gz"
        return write_nnunet(cases, out, channels, labels, ending)


@FORMATS.register("msd_seg")
class DecathlonTask(_SegFolder):
    """Medical Segmentation Decathlon task folder: dataset.json (modality, labels, training), 3D/4D NIfTI."""

    LAYOUT = MSD
    LOOKS_LIKE = "msd: dataset.json with modality and a training list, imagesTr/, labelsTr/"

    def write(self, cases: Sequence[Case], out: str | Path) -> Path:
        channels, labels = self._scheme(cases)
        return write_msd(cases, out, channels, labels)
