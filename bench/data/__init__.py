"""Data layer: readers and phantoms produce Case records; nothing downstream sees files or patient names."""

from bench.data.case import Case

__all__ = ["Case"]
