"""`bench tasks`: each task's objective, metrics, formats and budget presets with their trial counts."""

from __future__ import annotations

import re


def add_parser(sub) -> None:
    s = sub.add_parser(
        "tasks",
        help="list tasks with their objective, metrics, formats and presets (trial counts)",
        description="Every registered task: objective, metrics, data formats, budget presets "
        "(trials each, what they cost) and the default split file.",
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


def run(args) -> int:
    from bench.data.formats import FORMATS
    from bench.tasks import TASKS

    for entry in TASKS.entries():
        spec = entry.obj
        print(f"{spec.name}: {spec.description}")
        print(f"  objective: {spec.objective}   metrics: {', '.join(spec.metrics)}")
        print(f"  formats: phantom (built in), {', '.join(f for f in spec.formats if f in FORMATS)}")
        print("  presets (--preset):")
        print("\n".join(preset_lines(spec)))
        print(f"  default split: datasets/splits/{spec.name}-phantom.json")
    return 0
