"""scripts/check_task_names.py: shared code never compares, keys or defaults on a task's name (issue 24)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _check():
    spec = importlib.util.spec_from_file_location("check_task_names", ROOT / "scripts" / "check_task_names.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


NAMES = {"xray-heart", "ct-lung"}

VIOLATING = '''
METRICS = {"xray-heart": ("val_auroc",)}                       # 2 dict key
def inspect(args, task="ct-lung"):                             # 3 parameter default
    if args.task != "xray-heart":                              # 4 comparison
        pass
    if args.task in ("ct-lung", "other"):                      # 6 `in` test
        pass
    metric = METRICS["xray-heart"]                             # 8 subscript
    parser.add_argument("--task", default="ct-lung")           # 9 default= keyword
    name = getattr(args, "task", None) or "xray-heart"         # 10 default after or
    options = table.get(args.task, "ct-lung")                  # 11 .get() default
    match args.task:
        case "xray-heart":                                     # 13 match case
            pass
class Settings:
    task: str = "ct-lung"                                      # 16 dataclass field default
'''

CLEAN = '''
"""Docstrings may name xray-heart and ct-lung."""
def run(args):
    """Example: ``bench search --task xray-heart``."""
    parser.add_argument("--task", help="one of xray-heart, ct-lung")
    print(f"task xray-heart is {args.task == args.other}")
    TASKS.get(args.task).compare_metrics.get(args.dimension)
    return search(task="ct-lung", trials=2)  # a call naming the workload's task
'''


def test_every_kind_of_task_name_use_is_flagged_once():
    findings = _check().check_source(VIOLATING, NAMES, "snippet.py")
    assert [f.line for f in findings] == [2, 3, 4, 6, 8, 9, 10, 11, 13, 16]
    assert {f.name for f in findings} == NAMES
    assert str(findings[0]).startswith("snippet.py:2:")
    assert "dict key" in str(findings[0]) and "TaskSpec" in str(findings[0])


def test_docstrings_help_texts_messages_and_call_arguments_pass():
    assert _check().check_source(CLEAN, NAMES) == []


def test_names_come_from_the_task_specs():
    assert _check().task_names(ROOT) >= NAMES


def test_the_tree_passes_and_a_violation_fails_the_command(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_task_names.py")], cwd=ROOT,
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    spec_dir = tmp_path / "bench" / "tasks" / "demo"
    spec_dir.mkdir(parents=True)
    (spec_dir / "spec.py").write_text('TASK = "demo-task"\n')
    (tmp_path / "bench" / "tasks" / "demo" / "data.py").write_text('OK = task == "demo-task"  # task code may\n')
    (tmp_path / "bench" / "plan.py").write_text('TABLE = {"demo-task": 1}\n')
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_task_names.py"), str(tmp_path)],
                          check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    (line,) = done.stdout.splitlines()  # task code (bench/tasks/) may name its task
    assert line.startswith("bench/plan.py:1:") and "'demo-task' used as a dict key" in line
