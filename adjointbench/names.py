"""Unknown names, and the closest valid ones: shared by the catalogue, the
registry and the command line."""

from __future__ import annotations

import difflib
import os
from pathlib import Path


class UnknownNameError(LookupError):
    """An unknown problem, implementation, operation or dtype name."""


def closest(name: str, valid) -> str:
    """`` Did you mean 'a'? Valid names: a, b.`` for an error message."""
    valid = list(valid)
    near = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    return f"{hint} Valid names: {', '.join(valid)}."


def file_path_hint(module_name: str) -> str:
    """Where ``module_name`` (of a 'module:object' name) is a file path, how to
    name it instead; else ''."""
    if not (module_name.endswith(".py") or "/" in module_name or os.sep in module_name):
        return ""
    path = Path(module_name)
    return (f" {module_name!r} is a file path, not a module: put its folder on PYTHONPATH "
            f"and give the module's name (PYTHONPATH={path.parent.resolve()} with "
            f"'{path.stem}:OBJECT')")
