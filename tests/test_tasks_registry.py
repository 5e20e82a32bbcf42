"""The task registry describes both tasks without importing torch, MONAI or smp; task code loads lazily."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench.tasks import TASKS, lazy

HEAVY = ("torch", "monai", "segmentation_models_pytorch")
ROOT = Path(__file__).resolve().parents[1]


def run_fresh(code: str) -> str:
    """Run ``code`` in a new interpreter with this checkout first on the path; return its stdout."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False, capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_reading_every_task_spec_imports_no_torch_monai_or_smp():
    out = run_fresh(f"""
        import dataclasses, json, sys
        from bench.tasks import TASKS
        seen = []
        for entry in TASKS.entries():
            spec = entry.obj
            fields = {{f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}}
            assert entry.description and spec.classes and spec.objective and spec.metrics and spec.headline
            for name, preset in spec.presets.items():
                assert preset.trials > 0 and preset.description and spec.space_path(name).is_file()
                json.dumps(preset.config)
            assert spec.preset(None) is spec.presets[spec.default_preset]
            assert callable(spec.run) and callable(spec.prepare)
            seen.append((spec.name, sorted(fields)))
        print(json.dumps({{"tasks": seen, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    import json

    report = json.loads(out)
    assert [name for name, *_ in report["tasks"]] == ["ct-lung", "segmentation", "xray-heart"]
    assert report["heavy"] == []


def test_task_packages_import_light_and_name_their_heavy_parts():
    out = run_fresh(f"""
        import sys
        import bench.tasks.ct_lung, bench.tasks.xray_heart
        from bench.tasks.ct_lung import SMOKE_PARAMS, task_param
        from bench.tasks.xray_heart import PHANTOM_SPEC
        print([m for m in {HEAVY!r} if m in sys.modules])
    """)
    assert out.strip() == "[]"


def test_package_names_resolve_to_the_modules_that_define_them():
    from bench.tasks import ct_lung, xray_heart
    from bench.tasks.seg_engine import training
    from bench.tasks.xray_heart import data

    assert xray_heart.prepare is data.prepare and xray_heart._preprocess is data.preprocess
    assert ct_lung.train_net is training.train_net
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = xray_heart.nothing_here


def test_lazy_calls_its_target_and_pickles_by_name():
    join = lazy("os.path:join")
    assert join("a", "b") == "a/b"
    copy = pickle.loads(pickle.dumps(join))
    assert copy.target == "os.path:join" and copy("c", "d") == "c/d" and repr(copy) == "lazy('os.path:join')"
    with pytest.raises(ValueError, match="module:attribute"):
        lazy("os.path.join")


def test_spec_callables_point_at_existing_functions():
    for spec in (entry.obj for entry in TASKS.entries()):
        for fn in (spec.run, spec.prepare, spec.make_phantom, spec.inspect, spec.evaluate, spec.build_models):
            if isinstance(fn, lazy):
                assert callable(fn.resolve()), fn


def test_shared_code_reads_what_a_spec_declares_and_falls_back_when_it_declares_nothing():
    """compare metrics, guidance registry and data options come from the spec (issue 24), not a task name."""
    import argparse
    from dataclasses import replace

    from bench.cli._common import check_data_options
    from bench.compare.plan import _registry_of, metric_plan
    from bench.errors import BenchError
    from bench.guidance import GUIDANCE, LESION_GUIDANCE
    from bench.tasks import Preset, TaskSpec

    bare = TaskSpec(name="bare", description="d", classes=("a",), objective="val_score", metrics=("score",),
                    formats=(), presets={"cpu": Preset({}, 1, "x.yaml")}, run=lazy("os.path:join"),
                    prepare=lazy("os.path:join"))
    assert metric_plan(bare, "seg_loss").all == ("val_score",)  # the objective alone
    assert _registry_of(bare, "guidance") is None  # no guidance: not a dimension
    assert _registry_of(bare, "seg_loss").kind == "segmentation loss"  # shared registries stay
    declared = replace(bare, compare_metrics={"seg_loss": ("val_a", "val_b"), "*": ("val_c",)},
                       guidance=LESION_GUIDANCE)
    assert metric_plan(declared, "seg_loss").all == ("val_a", "val_b")
    assert metric_plan(declared, "seg_arch").primary == "val_c"
    assert _registry_of(declared, "guidance") is LESION_GUIDANCE
    assert _registry_of(TASKS.get("xray-heart"), "guidance") is GUIDANCE
    with pytest.raises(BenchError, match="--uncertain, --sample must be data options of task ct-lung, but its data takes none"):
        check_data_options(argparse.Namespace(task="ct-lung", sample=4, uncertain="ones", classes=None))
    check_data_options(argparse.Namespace(task="xray-heart", sample=4, uncertain="ones", classes="a,b"))
