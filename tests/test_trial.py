"""One tracked-trial lifecycle: every backend logs the same keys, fails NaN trials with a reason, and refuses
the options it does not support before any trial runs."""

import re

import pytest
from mlflow.tracking import MlflowClient

from bench.errors import ConfigError
from bench.search.backends import BACKENDS, check_supported
from bench.search.driver import SearchSettings, base_config, prepare_search
from bench.tracking import Tracker
from bench.trial import tracked_trial

# Tags only one backend has by nature: which process / Ray trial ran it.
BACKEND_ONLY_TAGS = {"worker", "workers", "ray_trial_id", "cuda_visible_devices"}


def _trials(workdir):
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("bench/xray-heart")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("bench.kind") == "trial"]
    return client, runs


def _diverging_space(workdir):
    """A space whose learning rates overflow the weights: training fails in epoch one (inf/NaN)."""
    space = workdir / "diverge.yaml"
    space.write_text("params:\n  seg_arch: {type: categorical, choices: [fpn]}\n"
                     "  lr: {type: categorical, choices: [1.0e+38]}\n  cls_lr: {type: categorical, choices: [1.0e+38]}\n")
    return str(space)


@pytest.mark.parametrize("options, message", [
    ({"backend": "ray", "objectives": ("val_auroc", "n_weights")}, "--objectives needs a backend"),
    ({"backend": "ray", "study": "s", "resume": True}, "--resume works with the optuna backend"),
    ({"backend": "ray", "workers": 2}, "--workers runs processes on one Optuna study"),
    ({"backend": "ray", "sampler": "nsga2"}, "--sampler must be one of"),
    ({"backend": "optuna", "pruner": "nope"}, "pruner must be one of"),
    ({"backend": "optuna", "sampler": "cmaes", "objectives": ("val_auroc", "n_weights")}, "cmaes"),
    ({"backend": "dask"}, "backend must be one of"),
])
def test_unsupported_combinations_are_refused_before_any_trial(workdir, options, message):
    settings = SearchSettings(task="xray-heart", preset="smoke", **options)
    with pytest.raises(ConfigError, match=message):
        check_supported(settings)
    with pytest.raises(ConfigError, match=message):
        prepare_search(settings)
    assert not (workdir / "mlflow.db").exists() and not (workdir / ".bench").exists()


def test_backends_declare_their_capabilities():
    assert BACKENDS.entry("optuna").tags["multi_objective"] and not BACKENDS.entry("ray").tags["multi_objective"]
    assert BACKENDS.entry("optuna").tags["resume"] and not BACKENDS.entry("ray").tags["resume"]


def test_an_objective_the_trial_did_not_score_fails_its_run_with_the_reason(workdir):
    settings = SearchSettings(task="xray-heart", preset="smoke")
    search = prepare_search(settings)
    tracker = Tracker("xray-heart")
    outcome = tracked_trial(tracker, search.base, name="t000", parent_run_id=None, tags={"study": "x"},
                            objectives=["val_auroc", "val_not_a_metric"])
    assert outcome.state == "FAIL" and "val_not_a_metric is not a metric this trial logged" in outcome.reason
    run = tracker.client.get_run(outcome.run_id)
    assert run.info.status == "FAILED" and run.data.tags["bench.state"] == "FAIL"
    assert run.data.tags["bench.reason"] == outcome.reason and "val_auroc" in run.data.metrics
    assert base_config(settings).task == "xray-heart"


@pytest.mark.parametrize("backend", ["optuna", "ray"])
def test_a_diverging_trial_ends_failed_with_its_reason_on_every_backend(workdir, backend):
    from bench.search.backends import run_search

    summary = run_search(SearchSettings(task="xray-heart", preset="smoke", trials=1, backend=backend,
                                        space=_diverging_space(workdir), study=f"nan-{backend}"))
    assert summary.n_complete == 0
    _, (run,) = _trials(workdir)
    assert run.info.status == "FAILED" and run.data.tags["bench.state"] == "FAIL"
    assert re.search(r"FloatingPointError|overflow|nan|inf", run.data.tags["bench.reason"])


def test_both_backends_log_the_same_metrics_tags_and_artifacts(workdir):
    from bench.search.backends import run_search

    for backend in ("optuna", "ray"):
        run_search(SearchSettings(task="xray-heart", preset="smoke", trials=3, backend=backend, scheduler="none",
                                  pruner="none", study=f"same-{backend}"))
    client, runs = _trials(workdir)
    layout = {}
    for r in runs:
        if r.data.tags["bench.state"] != "COMPLETE":
            continue
        artifacts = frozenset(a.path for a in client.list_artifacts(r.info.run_id))
        tags = frozenset(k for k in r.data.tags if not k.startswith("mlflow.")) - BACKEND_ONLY_TAGS
        layout.setdefault(r.data.tags["backend"], set()).add((frozenset(r.data.metrics), tags, artifacts))
    assert set(layout) == {"optuna", "ray"}
    assert layout["optuna"] == layout["ray"] and len(layout["optuna"]) == 1
    metrics, _, artifacts = next(iter(layout["optuna"]))
    assert {"n_weights", "trial_seconds", "epochs_trained", "val_auroc"} <= metrics
    assert {"config.yaml", "learning_curve.png", "history.json"} <= artifacts
