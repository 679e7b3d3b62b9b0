"""Modules imported on first use, so that a run that does not need sympy (or
a framework) does not pay for importing it."""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """``sympy = LazyModule("sympy")``: ``sympy.sin`` imports sympy then.

    >>> math = LazyModule("math")
    >>> math.sqrt(4.0)
    2.0
    """

    def __init__(self, name: str):
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attribute: str):
        return getattr(self._module(), attribute)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"
