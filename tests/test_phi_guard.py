"""The PHI guard (issue 37): refuses keys that can carry an identifier, lets counts and settings through, and
passes every parameter a registered task logs at every preset (ct-lung's `phantom_patients` tripped it)."""

from __future__ import annotations

import pytest

from bench.errors import BenchError
from bench.phi import check_no_phi, refusal, words


@pytest.mark.parametrize("key", [
    "PatientID", "patient_id", "patientid", "PatientName", "patient_name", "OtherPatientIDs", "patients_ids",
    "PatientBirthDate", "birth_date", "date_of_birth", "dob", "AccessionNumber", "accession", "mrn",
    "medical_record_number", "ssn", "StudyInstanceUID", "SeriesInstanceUID", "sop_instance_uid",
    "patient_identifier", "PatientAddress", "data.patient_id", "base.task_params.patient_name",
])
@pytest.mark.parametrize("value", ["P0001", 17, ""])
def test_identifying_keys_are_refused_whatever_their_value(key, value):
    assert refusal(key, value) is not None
    with pytest.raises(BenchError, match="patient identifier"):
        check_no_phi({key: value}, "params")


@pytest.mark.parametrize("key,value", [
    ("patient", "JOHN^DOE"), ("test_patients", "P001,P007"), ("task_params.patients", ["P001"]),
    ("patient_regex", r"^(\w+)_"),
])
def test_keys_about_patients_are_refused_unless_their_value_is_a_number(key, value):
    assert "is about patients" in refusal(key, value)


@pytest.mark.parametrize("key,value", [
    ("task_params.phantom_patients", 24), ("base.task_params.phantom_patients", "24"),
    ("min_patients_per_class", 2), ("n_patients", 1.0), ("per_patient", True),
    ("name", "trial-3"), ("mlflow.runName", "x"), ("guidance", "soft_mask"), ("site", "A"),
    ("task_params.grouping_regex", r"^(\w+)_"), ("case_count", 12), ("bench.kind", "trial"),
    ("split_hash", "5564e907"), ("mlflow.parentRunId", "abc"),
])
def test_counts_and_settings_pass(key, value):
    assert refusal(key, value) is None
    check_no_phi({key: value}, "params")


def test_words_split_dots_underscores_and_camel_case():
    assert words("StudyInstanceUID") == ["study", "instance", "uid"]
    assert words("base.task_params.phantom_patients") == ["base", "task", "params", "phantom", "patients"]


def test_every_parameter_a_task_logs_passes_the_guard():
    """What a search logs: the trial's flat config and the parent's `base.` copy, at every preset of every
    registered task, as built by the task itself."""
    from bench.tasks import TASKS

    for name in TASKS.names():
        spec = TASKS.get(name)
        for preset in spec.presets:
            config = spec.config(spec.preset(preset).config)
            flat = config.flat()
            check_no_phi(flat, "params")
            check_no_phi({f"base.{k}": v for k, v in flat.items()}, "params")
