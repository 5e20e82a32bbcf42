"""The PHI guard: which MLflow param and tag keys may carry a patient identifier, and are therefore refused.

A run's params and tags leave the data layer (they are shown in the MLflow UI, exported, served), so no
identifier may reach them. The guard judges a key by the words it is made of (``PatientName`` ->
patient, name; ``base.task_params.phantom_patients`` -> ..., phantom, patients) and, where the words
only say that the value is *about* patients, by the value:

1. Refused whatever the value: a key that names an identifying field of the DICOM confidentiality
   profile (PS3.15 E.1) or a record: patient id / name / identifier / address / phone, birth date, accession
   number, medical record number (``mrn``), social security number, instance UIDs.
2. Refused unless the value is a number or a boolean: a key that mentions patients (``patient``,
   ``patients``, ``patient_regex``). ``phantom_patients: 24`` or ``min_patients_per_class: 2`` is a count
   and is logged; ``test_patients: "P001,P007"`` or ``patient: "JOHN^DOE"`` could be identifiers and is not.

Anything else passes: the guard is for identifiers, not for words (``name``, ``case``, ``site`` alone are
settings of bench).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

from bench.errors import BenchError

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+")
_PATIENT = {"patient", "patients"}
# a word right after "patient" that makes the key an identifying field (patient_id, PatientName, ...)
_PATIENT_FIELDS = {"id", "ids", "identifier", "identifiers", "name", "names", "address", "phone", "telephone",
                   "birth", "birthdate", "mother", "mothers"}
# words that make a key identifying wherever they stand
_IDENTIFYING_WORDS = {"mrn", "ssn", "dob", "birth", "birthdate", "accession", "uid", "uids"}
# the same fields written as one word (``patientid``, ``dateofbirth``, ``medicalrecordnumber``)
_IDENTIFYING_COMPOUNDS = ("patientid", "patientname", "patientbirth", "patientaddress", "patientphone",
                          "patienttelephone", "birthdate", "dateofbirth", "accession", "medicalrecord")


def words(key: str) -> list[str]:
    """The lower-case words of a key: split at dots, underscores, dashes and camel case (``StudyInstanceUID``
    -> study, instance, uid)."""
    return [w.lower() for w in _WORD.findall(key)]


def identifying_key(key: str) -> bool:
    """Rule 1: the key names an identifying field, whatever its value."""
    found = words(key)
    if any(w in _IDENTIFYING_WORDS for w in found):
        return True
    if any(a in _PATIENT and b in _PATIENT_FIELDS for a, b in itertools.pairwise(found)):
        return True
    compact = "".join(found)
    return any(compound in compact for compound in _IDENTIFYING_COMPOUNDS)


def _is_number(value: Any) -> bool:
    if isinstance(value, (bool, int, float)):
        return True
    if isinstance(value, str):
        try:
            float(value)
        except ValueError:
            return False
        return True
    return False


def refusal(key: str, value: Any) -> str | None:
    """Why ``key: value`` may not be logged, or None when it may."""
    if identifying_key(key):
        return f"key '{key}' names a patient identifier"
    if any(w in _PATIENT for w in words(key)) and not _is_number(value):
        return f"key '{key}' is about patients and its value is not a number (it could list identifiers)"
    return None


def check_no_phi(values: Mapping[str, Any], what: str) -> None:
    """Refuse the first param or tag that can carry a patient identifier (the rules in this module's doc)."""
    for key, value in values.items():
        why = refusal(key, value)
        if why:
            raise BenchError(f"MLflow {what} must not carry patient identifiers: {why}. Keep it inside bench.data.")
