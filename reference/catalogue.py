"""The catalogue: every problem, declared once, found by name."""

from __future__ import annotations

import difflib

from adjointbench.reference import (batched, elementwise, implicit, linalg, ode, reductions, scalar,
                       sensitivity, sensitivity_ode)
from adjointbench.reference.problem import Problem

_FAMILIES = (scalar, elementwise, linalg, reductions, implicit, ode, batched, sensitivity,
             sensitivity_ode)

PROBLEMS: dict[str, Problem] = {p.name: p for family in _FAMILIES for p in family.PROBLEMS}


class UnknownNameError(LookupError):
    """An unknown problem, implementation, operation or dtype name."""


def closest(name: str, valid) -> str:
    valid = list(valid)
    near = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    return f"{hint} Valid names: {', '.join(valid)}."


def get_problem(name: str) -> Problem:
    try:
        return PROBLEMS[name]
    except KeyError:
        raise UnknownNameError(f"unknown problem {name!r}.{closest(name, PROBLEMS)}") from None


def problems(kind: str = "primitive") -> list[Problem]:
    """The catalogue's problems of one kind: ``"primitive"`` or ``"sensitivity"``."""
    return [p for p in PROBLEMS.values() if p.kind == kind]
