"""A data report (`bench datasets inspect`) as lines a person reads: no Python dicts, lists or ``None``.

Nested values indent; a mapping of plain values is one line (``classes: ASD 12, normal 30``); a list of
plain values is comma-separated; ``problems`` are one line each, under a count.

Example:
    >>> report_lines({"cases": 3, "format": None, "masks": {"heart": 3}, "problems": []})
    ['cases: 3', 'format: none', 'masks: heart 3', 'problems: none']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

INDENT = "  "


def report_lines(report: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for key, value in report.items():
        if key != "problems":
            lines += _lines(key, value, "")
    return lines + problem_lines(report.get("problems"))  # last: what a person reads first at a prompt


def problem_lines(problems) -> list[str]:
    """``problems: none``, or their count and each one on its own line."""
    texts = [problem_text(p) for p in problems or ()]
    if not texts:
        return ["problems: none"]
    return [f"problems: {len(texts)}", *(f"{INDENT}- {t}" for t in texts)]


def problem_text(problem) -> str:
    """A problem as one line: a text as it is, a ``{"case": id, "problem": text}`` as ``case id: text``."""
    if isinstance(problem, Mapping):
        if "problem" in problem:
            where = f"case {problem['case']}: " if "case" in problem else ""
            return where + " ".join(str(problem["problem"]).split())
        return _inline(problem)
    return " ".join(str(problem).split())


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _scalar(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _inline(value: Any) -> str:
    """A plain value, a list of plain values (numbers joined by x: a size or spacing) or a flat mapping."""
    if _plain(value):
        return _scalar(value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_inline(v)}" for k, v in value.items()) or "none"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value) and value:
        return " x ".join(_scalar(v) for v in value)
    return ", ".join(_inline(v) for v in value) or "none"


def _flat(value: Any) -> bool:
    if _plain(value):
        return True
    if isinstance(value, Mapping):
        return all(_plain(v) or (isinstance(v, (list, tuple)) and all(map(_plain, v))) for v in value.values())
    return all(_plain(v) or (isinstance(v, (list, tuple)) and all(map(_plain, v))) for v in value)


def _lines(key: str, value: Any, indent: str) -> list[str]:
    if _flat(value):
        return [f"{indent}{key}: {_inline(value)}"]
    if isinstance(value, Mapping):
        out = [f"{indent}{key}:"]
        for k, v in value.items():
            out += _lines(str(k), v, indent + INDENT)
        return out
    out = [f"{indent}{key}:"]
    for item in value:
        out.append(f"{indent}{INDENT}- {_inline(item)}" if _flat(item) else f"{indent}{INDENT}-")
        if not _flat(item):
            out += [line for k, v in item.items() for line in _lines(str(k), v, indent + INDENT * 2)]
    return out
