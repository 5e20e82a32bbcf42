"""Fail when shared code (bench/ outside bench/tasks/) compares, keys or defaults on a task's name.

What a task knows lives in its spec (``bench/tasks/<task>/spec.py``, ``TaskSpec``); shared code looks it up
there and never asks which task it runs (issue 24). This check reads the registered names from the specs'
``TASK = "..."`` constants and walks every other module's syntax tree (``ast``, nothing is imported) for a
string constant equal to one of them used as

- an operand of a comparison (``task == "ct-lung"``, ``task in ("ct-lung", ...)``, ``"ct-lung" != task``),
- a dict key (``{"ct-lung": ...}``) or a subscript (``table["ct-lung"]``),
- a default: of a function parameter, of a ``default=`` keyword (argparse, dataclass ``field``), of a
  class attribute (dataclass field), of ``.get(key, "ct-lung")``, or after ``or`` (``task or "ct-lung"``),
- a ``match`` case pattern.

Docstrings, help texts, messages, examples and plain call arguments may name tasks: they are not flagged.

Usage: python scripts/check_task_names.py [ROOT]   (ROOT: the repository, default the one holding this
script); prints one line per finding, ``path:line:col: ...``, and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    col: int
    name: str
    usage: str

    def __str__(self) -> str:
        return (f"{self.path}:{self.line}:{self.col}: task name '{self.name}' used as {self.usage} in shared "
                f"code; declare what it decides in the task's spec (bench/tasks/<task>/spec.py, TaskSpec)")


def task_names(root: Path = REPO) -> set[str]:
    """The ``TASK = "<name>"`` constants of ``bench/tasks/*/spec.py`` (read, not imported)."""
    names = set()
    for spec in sorted((root / "bench" / "tasks").glob("*/spec.py")):
        for node in ast.parse(spec.read_text(), str(spec)).body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "TASK" for t in node.targets)
                    and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
                names.add(node.value.value)
    return names


def _strings(node: ast.AST | None) -> Iterator[ast.Constant]:
    """The string constants ``node`` is, or holds as a tuple/list/set element."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node
    elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        for element in node.elts:
            yield from _strings(element)


def _patterns(pattern: ast.pattern) -> Iterator[ast.AST]:
    for node in ast.walk(pattern):
        if isinstance(node, ast.MatchValue):
            yield node.value
        elif isinstance(node, ast.MatchMapping):
            yield from node.keys


def _uses(tree: ast.AST) -> Iterator[tuple[ast.AST | None, str]]:
    """(expression, how it is used) for every place a task name must not appear."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                yield operand, "a comparison operand"
        elif isinstance(node, ast.Dict):
            for key in node.keys:
                yield key, "a dict key"
        elif isinstance(node, ast.Subscript):
            yield node.slice, "a subscript"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for default in (*node.args.defaults, *node.args.kw_defaults):
                yield default, "a parameter default"
        elif isinstance(node, ast.ClassDef):
            for statement in node.body:
                if isinstance(statement, (ast.AnnAssign, ast.Assign)):
                    yield statement.value, "a class attribute's default"
        elif isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "default":
                    yield keyword.value, "a default= value"
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("get", "setdefault", "pop"):
                for argument in node.args[1:2]:
                    yield argument, f"the default of .{node.func.attr}()"
        elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
            yield node.values[-1], "the default after 'or'"
        elif isinstance(node, ast.match_case):
            for value in _patterns(node.pattern):
                yield value, "a match case"


def check_source(source: str, names: Iterable[str], path: str = "<source>") -> list[Finding]:
    """The findings in one module's source text."""
    names = set(names)
    found = {}
    for expression, usage in _uses(ast.parse(source, path)):
        for constant in _strings(expression):
            if constant.value in names:
                key = (constant.lineno, constant.col_offset)
                found.setdefault(key, Finding(path, constant.lineno, constant.col_offset + 1, constant.value, usage))
    return [found[k] for k in sorted(found)]


def shared_modules(root: Path = REPO) -> list[Path]:
    """Every module of bench/ outside bench/tasks/."""
    tasks = root / "bench" / "tasks"
    return sorted(p for p in (root / "bench").rglob("*.py") if tasks not in p.parents)


def check_tree(root: Path = REPO) -> list[Finding]:
    names = task_names(root)
    if not names:
        raise SystemExit(f"{root / 'bench' / 'tasks'}: the task specs must declare TASK = \"<name>\", but none do.")
    return [f for p in shared_modules(root)
            for f in check_source(p.read_text(), names, str(p.relative_to(root)))]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else REPO
    findings = check_tree(root)
    for finding in findings:
        print(finding)
    if findings:
        print(f"{len(findings)} task-name uses in shared code (tasks: {', '.join(sorted(task_names(root)))})",
              file=sys.stderr)
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
