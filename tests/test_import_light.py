"""Registries describe without importing: listing every loss, model, metric and data format in a fresh
process loads neither torch, MONAI nor segmentation_models_pytorch (issue 12: read-only commands stay fast).

Checked by ``sys.modules`` in a new interpreter, not by timing. A second test checks that what a light entry
declares (its parameters with defaults) is what its implementation accepts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "monai", "segmentation_models_pytorch")
ROOT = Path(__file__).resolve().parents[1]

DESCRIBE_EVERYTHING = """
import json, sys
from bench.cases import CASE_STATISTICS
from bench.data.formats import FORMATS
from bench.tasks import TASKS
from bench.losses import SEG_LOSSES
from bench.metrics import METRICS, higher_is_better
from bench.models import CLASSIFIERS, SEG_MODELS
import bench.metrics_seg3d, bench.pareto, bench.registry

described = {r.kind: [e.describe() for e in r.entries()]
             for r in (SEG_LOSSES, SEG_MODELS, CLASSIFIERS, METRICS, FORMATS, CASE_STATISTICS)}
directions = {name: higher_is_better("val_" + name) for name in METRICS}
resolved = {s.name: [s.resolve_format(n) for n in [*s.formats, *s.format_aliases]]
            for s in (e.obj for e in TASKS.entries())}
print(json.dumps({"described": described, "heavy": [m for m in HEAVY if m in sys.modules]}, default=str))
"""


def test_describing_every_registry_imports_no_torch_monai_or_smp():
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + DESCRIBE_EVERYTHING],
                         check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["heavy"] == [], f"describing the registries imported {report['heavy']}"
    described = report["described"]
    assert len(described["segmentation loss"]) >= 10 and len(described["segmentation model"]) >= 8
    assert {"dice_ce", "spread_dice"} <= {e["name"] for e in described["segmentation loss"]}
    unet = next(e for e in described["segmentation model"] if e["name"] == "monai_unet")
    assert unet["parameters"]["base_channels"] == 16 and unet["tags"]["dims"] == [2, 3]
    assert next(e for e in described["metric"] if e["name"] == "lesion_hd95")["tags"] == {"higher_is_better": False}
    assert all(e["description"] for entries in described.values() for e in entries)


def test_listing_formats_loads_no_image_io_library():
    """``bench tasks`` lists each task's formats: the readers' libraries load when a folder is read."""
    code = ("import sys; from bench.data.formats import FORMATS; from bench.tasks import TASKS; "
            "TASKS.get('ct-lung').resolve_format('mhd'); "
            "[e.describe() for e in FORMATS.entries()]; "
            "print([m for m in ('pydicom', 'SimpleITK', 'nibabel', 'sklearn', 'scipy.ndimage', *HEAVY) "
            "if m in sys.modules])")
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + code], check=False, cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _losses():
    from bench.losses import SEG_LOSSES

    return SEG_LOSSES


def _models():
    from bench.models import CLASSIFIERS, SEG_MODELS

    return [pytest.param(r, n, id=f"{r.kind.replace(' ', '_')}-{n}") for r in (SEG_MODELS, CLASSIFIERS) for n in r.names()]


@pytest.mark.parametrize("name", _losses().names())
def test_loss_declares_what_its_implementation_takes(name):
    """Every declared parameter, passed explicitly at its declared default, builds the same loss."""
    import torch

    entry = _losses().entry(name)
    logits = torch.randn((2, 1, 8, 8), generator=torch.Generator().manual_seed(0))
    target = (torch.rand((2, 1, 8, 8), generator=torch.Generator().manual_seed(1)) > 0.5).float()
    implicit, explicit = _losses().create(name), _losses().create(name, **entry.parameters())
    assert torch.equal(implicit(logits, target), explicit(logits, target))


@pytest.mark.parametrize("registry,name", _models())
def test_model_declares_what_its_implementation_takes(registry, name):
    """Every declared parameter, passed explicitly at its declared default, builds the same network."""
    import torch

    entry = registry.entry(name)
    required = entry.tags.get("requires")
    if required and importlib.util.find_spec(required) is None:
        pytest.skip(f"{name} needs {required}, which is not installed")
    torch.manual_seed(0)
    implicit = registry.create(name)
    torch.manual_seed(0)
    explicit = registry.create(name, **entry.parameters())
    assert type(implicit) is type(explicit)
    a, b = implicit.state_dict(), explicit.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
