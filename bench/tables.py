"""Tables as text: a terminal table that fits a width, Markdown, CSV and JSON, with numbers people can read.

The terminal table is what ``bench leaderboard`` and the end of ``bench search`` print: at most 120
characters wide by default, numbers to 4 significant digits, headers shortened (common words abbreviated;
when the table is too wide, long names wrapped after ``_`` onto up to three lines) and, only when that is
not enough, long text cells cut with ``…``; columns that still do not fit are left out and a footnote says
how many and how to see them (``--wide``, or csv/md/json, which hold every column).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.config import atomic_write_text
from bench.errors import BenchError

FORMATS = ("table", "wide", "csv", "md", "json")
TERMINAL_WIDTH = 120
NO_VALUE = "-"  # a missing number (NaN) in text tables; "" would look like a layout error
# Words that make headers long and have an abbreviation any reader of the metric names knows.
ABBREVIATIONS = {
    "attention": "attn",
    "shifted": "shift",
    "accuracy": "acc",
    "balanced": "bal",
    "outside": "out",
    "sensitivity": "sens",
    "specificity": "spec",
    "encoder": "enc",
}
MIN_TEXT_WIDTH = 8  # narrowest a text column is cut to: COMPLETE, resnet18 stay whole
HEADER_LINES = 3  # a long header wraps after "_" onto at most this many lines


def number(value) -> str:
    """4 significant digits (3 in powers-of-ten form below 0.001 or from a million); whole numbers below a
    million as integers; NaN/None as ``-``.

    Example:
        >>> [number(v) for v in (0.95578, 17958821.0, 9.0, 0.00026937, 43.2324, float("nan"))]
        ['0.9558', '1.8e7', '9', '2.69e-4', '43.23', '-']
    """
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return NO_VALUE
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    v = float(value)
    if v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    if v != 0 and (abs(v) < 1e-3 or abs(v) >= 1e6):
        mantissa, exponent = f"{v:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"  # 2.69e-4, 1.8e7: narrower than e-04
    return f"{v:.4g}"


def short_name(name: str) -> str:
    """``test_shifted_attention_in_heart`` -> ``test_shift_attn_in_heart``."""
    return "_".join(ABBREVIATIONS.get(word, word) for word in str(name).split("_"))


def render(table: pd.DataFrame, fmt: str, width: int = TERMINAL_WIDTH) -> str:
    """``table`` as text: ``table`` (fits ``width``), ``wide`` (every column), ``csv``, ``md`` or ``json``.

    The text tables leave out ``run_id`` (csv, md and json keep it); the index is the first column when it is
    named (``rank``, a group) and left out when it is a plain row counter.
    """
    if fmt not in FORMATS:
        raise BenchError(f"format must be one of {list(FORMATS)}, but got '{fmt}'.")
    if fmt == "csv":
        return table.to_csv()
    if fmt == "json":
        return json.dumps(json.loads(table.reset_index().to_json(orient="records")), indent=1)
    if fmt == "md":
        return markdown(table)
    return text_table(table.drop(columns=["run_id"], errors="ignore"), width if fmt == "table" else None)


def write(table: pd.DataFrame, fmt: str, out: str | Path) -> Path:
    return atomic_write_text(out, render(table, fmt))


def _with_index(table: pd.DataFrame) -> pd.DataFrame:
    if table.index.name is None and isinstance(table.index, pd.RangeIndex):
        return table.reset_index(drop=True)
    return table.reset_index()


def markdown(table: pd.DataFrame) -> str:
    frame = _with_index(table)
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) for c in frame.columns]
    cells = [
        [number(v) if is_num else ("" if pd.isna(v) else str(v)) for v, is_num in zip(row, numeric)]
        for row in frame.itertuples(index=False)
    ]
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---:" if is_num else "---" for is_num in numeric) + "|"
    return "\n".join([header, rule] + ["| " + " | ".join(r) + " |" for r in cells]) + "\n"


class _Column:
    def __init__(self, name: str, values: pd.Series, shorten: bool):
        self.numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        self.cells = [number(v) if self.numeric else ("" if pd.isna(v) else str(v)) for v in values]
        self.name = short_name(name) if shorten else str(name)
        self.header = [self.name]
        self.cell_width = max((len(c) for c in self.cells), default=1)
        self.width = max(self.cell_width, len(self.name))

    def wrap_gain(self) -> int:
        """Columns saved by wrapping the header onto one more line (0 when that does not help)."""
        if len(self.header) >= HEADER_LINES:
            return 0
        return self.width - max(self.cell_width, _longest(_split_header(self.name, len(self.header) + 1)))

    def wrap(self) -> None:
        self.header = _split_header(self.name, len(self.header) + 1)
        self.width = max(self.cell_width, _longest(self.header))

    def shrink(self) -> None:
        self.width -= 1
        self.header = [_cut(h, self.width) for h in self.header]

    def line(self, text: str) -> str:
        text = _cut(text, self.width)
        return text.rjust(self.width) if self.numeric else text.ljust(self.width)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _longest(lines: list[str]) -> int:
    return max(map(len, lines))


def _split_header(name: str, lines: int) -> list[str]:
    """``name`` on at most ``lines`` lines, split after ``_``, with the longest line as short as can be
    (``test_shift_auroc``: ``test_shift_``/``auroc`` on 2 lines, ``test_``/``shift_``/``auroc`` on 3)."""
    parts = re.findall(r"[^_]+_*|_+", name)
    splits = [
        ["".join(parts[a:b]) for a, b in itertools.pairwise((0, *cuts, len(parts)))]
        for k in range(min(lines, len(parts)))
        for cuts in itertools.combinations(range(1, len(parts)), k)
    ]
    return min(splits, key=lambda split: (_longest(split), len(split)))


def _fit(columns: list[_Column], width: int, gap: int) -> bool:
    """Wrap the header that saves most, then cut the widest text column, until the line fits ``width``."""
    while sum(c.width for c in columns) + gap * (len(columns) - 1) > width:
        wrap = max(columns, key=lambda c: c.wrap_gain())
        text = [c for c in columns[1:] if not c.numeric and c.width > MIN_TEXT_WIDTH]
        if wrap.wrap_gain() > 0:
            wrap.wrap()
        elif text:
            max(text, key=lambda c: c.width).shrink()
        else:
            return False
    return True


def text_table(table: pd.DataFrame, width: int | None = TERMINAL_WIDTH) -> str:
    """Aligned plain text; with ``width``, shortened until every line fits it (see the module docstring)."""
    frame = _with_index(table)

    def columns_of(n: int) -> list[_Column]:
        return [_Column(str(c), frame[c], shorten=width is not None) for c in frame.columns[:n]]

    n, gap = len(frame.columns), 2
    columns = columns_of(n)
    if width is not None and sum(c.width for c in columns) + gap * (n - 1) > width:
        gap = 1
        # fewer columns only when wrapping and cutting cannot make all of them fit; the kept ones start afresh
        while not _fit(columns, width, gap) and n > 1:
            n -= 1
            columns = columns_of(n)
    dropped = len(frame.columns) - n
    rows = max(len(c.header) for c in columns)
    lines = []
    for k in range(rows):  # a one-line header sits on the last header line, over its values
        lines.append((" " * gap).join(c.line(([""] * (rows - len(c.header)) + c.header)[k]) for c in columns))
    for i in range(len(frame)):
        lines.append((" " * gap).join(c.line(c.cells[i]) for c in columns))
    lines = [line.rstrip() for line in lines]
    if dropped:
        note = f"({dropped} more column{'s' if dropped > 1 else ''}: --wide or --format csv|md|json)"
        lines.append(note if width is None or len(note) <= width else f"(+{dropped} columns: --wide)")
    return "\n".join(lines)
