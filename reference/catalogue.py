"""The catalogue: every problem, declared once, found by name.

Each module of this package that defines ``PROBLEMS`` is a family; adding a
family file is all it takes to add its problems.
"""

from __future__ import annotations

import importlib
import pkgutil

from adjointbench import reference
from adjointbench.names import UnknownNameError, closest  # noqa: F401 (re-exported)
from adjointbench.reference.problem import Problem


def _families() -> list:
    modules = [importlib.import_module(f"{reference.__name__}.{m.name}")
               for m in pkgutil.iter_modules(reference.__path__)]
    return [m for m in modules if hasattr(m, "PROBLEMS")]


PROBLEMS: dict[str, Problem] = {p.name: p for family in _families() for p in family.PROBLEMS}


def get_problem(name: str) -> Problem:
    try:
        return PROBLEMS[name]
    except KeyError:
        raise UnknownNameError(f"unknown problem {name!r}.{closest(name, PROBLEMS)}") from None


def problems(kind: str | None = "primitive") -> list[Problem]:
    """The problems of one kind (``"primitive"``, ``"sensitivity"``), or all for None."""
    return [p for p in PROBLEMS.values() if kind is None or p.kind == kind]
