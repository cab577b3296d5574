"""pytest-memlens: memory limits for pytest tests, checked by memlens (see plugin.py)."""

__version__ = "0.1.0"
