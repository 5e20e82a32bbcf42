"""`bench tasks`: each task's objective, metrics, formats, budget presets with their trial counts, and the
reference configuration `bench compare` uses per preset."""

from __future__ import annotations

import re
from typing import Any


def add_parser(sub) -> None:
    s = sub.add_parser(
        "tasks",
        help="list tasks: objective, metrics, formats, presets (trial counts), reference configurations",
        description="Every registered task: objective, metrics, data formats, budget presets "
        "(trials each, what they cost), the reference configuration per preset (what `bench compare` "
        "fixes when given no --config/--from-run/--study/--tune) and the default split file.",
    )
    s.add_argument(
        "--reference",
        action="store_true",
        help="every field of each reference configuration, its description and file",
    )
    s.add_argument(
        "--json", action="store_true", help="print the tasks as JSON, reference configurations included"
    )
    s.set_defaults(func=run)


def preset_lines(spec) -> list[str]:
    """One line per preset: name, trial count, description (without a repeated "N trials, ")."""
    width = max(len(name) for name in spec.presets)
    lines = []
    for name, preset in spec.presets.items():
        about = re.sub(rf",?\s*\b{preset.trials} trials\b,?", "", preset.description).strip(
            " ,"
        )  # said already
        default = " [default]" if name == spec.default_preset else ""
        lines.append(
            f"    {name:<{width}}  {preset.trials:>3} trials{default}" + (f": {about}" if about else "")
        )
    return lines


def _number(value: Any) -> str:
    """Learning rates as people write them: 0.003 -> 3e-3, 0.0005 -> 5e-4; other values as they are."""
    if isinstance(value, float) and 0 < abs(value) < 0.01:
        mantissa, exponent = f"{value:.0e}".split("e")
        return f"{mantissa}e{int(exponent)}"
    return str(value)


def reference_summary(values: dict[str, Any]) -> str:
    """A reference configuration in one line: network, loss, guidance, classifier, optimiser and lr first,
    then any other field as key value (e.g. ``fpn/resnet18, dice, guidance none, resnet10, adam lr 3e-3``)."""
    rest = dict(values)
    rest.update(rest.pop("task_params", None) or {})  # the task's own parameters read like the shared fields
    parts = []
    arch, encoder = rest.pop("seg_arch", None), rest.pop("seg_encoder", None)
    if arch:
        parts.append(f"{arch}/{encoder}" if encoder else str(arch))
    if "seg_loss" in rest:
        parts.append(str(rest.pop("seg_loss")))
    if "guidance" in rest:
        parts.append(f"guidance {rest.pop('guidance')}")
    if "classifier" in rest:
        parts.append(str(rest.pop("classifier")))
    optimiser, lr = rest.pop("optimiser", None), rest.pop("lr", None)
    if optimiser or lr is not None:
        parts.append(" ".join(p for p in (optimiser, f"lr {_number(lr)}" if lr is not None else None) if p))
    parts += [f"{key} {_number(value)}" for key, value in rest.items()]
    return ", ".join(parts)


def references(spec) -> dict[str, dict[str, Any]]:
    """Preset -> {file, description, config, arm_params} for the presets that have a reference file."""
    from bench.compare.plan import load_reference, reference_path

    out = {}
    for preset in spec.presets:
        path = reference_path(spec.name, preset)
        if not path.exists():
            continue
        base = load_reference(spec.name, preset)  # checked: a broken file is one clear ConfigError
        out[preset] = {"file": f"search_spaces/reference/{path.name}", "description": base.description,
                       "config": base.values, "arm_params": base.arm_params}
    return out


def reference_lines(spec, detail: bool = False) -> list[str]:
    refs = references(spec)
    if not refs:
        return ["  reference configurations: none (bench compare needs --config, --from-run or --tune)"]
    width = max(len(name) for name in refs)
    lines = ["  reference configurations (bench compare; search_spaces/reference/<task>-<preset>.yaml):"]
    for preset, ref in refs.items():
        if not detail:
            lines.append(f"    {preset:<{width}}  {reference_summary(ref['config'])}")
            continue
        about = f" ({ref['description']})" if ref["description"] else ""
        lines.append(f"    {preset}: {ref['file']}{about}")
        config = dict(ref["config"])
        own = config.pop("task_params", None) or {}
        lines += [f"      {key}: {_number(value)}" for key, value in config.items()]
        lines += [f"      task_params.{key}: {_number(value)}" for key, value in own.items()]
        for dimension, arms in ref["arm_params"].items():
            lines += [f"      arm_params {dimension} {arm}: {params}" for arm, params in arms.items()]
    return lines


def run(args) -> int:
    # a task's formats are registered ones (tests/test_formats_contract.py): no need to import the readers
    # (and numpy) to list them
    from bench.tasks import TASKS

    if getattr(args, "json", False):
        import json

        tasks = []
        for entry in TASKS.entries():
            spec = entry.obj
            tasks.append({
                "name": spec.name, "description": spec.description, "objective": spec.objective,
                "metrics": list(spec.metrics),
                "formats": ["phantom", *spec.formats],
                "default_preset": spec.default_preset,
                "presets": {name: {"trials": p.trials, "description": p.description}
                            for name, p in spec.presets.items()},
                "reference": references(spec),
                "task_params": dict(spec.params),
                "default_split": f"datasets/splits/{spec.name}-phantom.json",
            })
        print(json.dumps(tasks, indent=1, default=str))
        return 0
    for entry in TASKS.entries():
        spec = entry.obj
        print(f"{spec.name}: {spec.description}")
        print(f"  objective: {spec.objective}   metrics: {', '.join(spec.metrics)}")
        print(f"  formats: phantom (built in), {', '.join(spec.formats)}")
        if spec.params:
            own = ", ".join(f"{key} {_number(value) if value != '' else repr(value)}" for key, value in spec.params.items())
            print(f"  task parameters (task_params.<name>; defaults): {own}")
        print("  presets (--preset):")
        print("\n".join(preset_lines(spec)))
        print("\n".join(reference_lines(spec, detail=getattr(args, "reference", False))))
        print(f"  default split: datasets/splits/{spec.name}-phantom.json")
    return 0
