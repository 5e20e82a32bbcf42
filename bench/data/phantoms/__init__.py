"""Deterministic built-in data sets, so a search runs with no download."""
