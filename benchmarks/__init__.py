"""Measurement scripts (`python benchmarks/NAME.py`), each on its own: a package only so that
import-linter can hold them to their contracts (pyproject.toml)."""
