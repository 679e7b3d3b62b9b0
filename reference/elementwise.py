"""Elementwise (broadcast) primitives: f applied entry by entry to x in R^n."""

from __future__ import annotations

import sympy

from adjointbench.reference.problem import VECTOR_BENCH_SIZES, Problem

SIZES = (4, 64, 1024)


def _vector(size, rng):
    return {"x": 1.5 * rng.standard_normal(size)}


def _broadcast(fname: str, f) -> Problem:
    return Problem(name=f"broadcast_{fname}", family="elementwise", inputs=("x",),
                   differentiable=("x",), sizes=SIZES, bench_sizes=VECTOR_BENCH_SIZES, generate=_vector,
                   closed_form=f, elementwise=True,
                   description=f"{fname}(x) elementwise, x in R^n")


PROBLEMS = (
    _broadcast("sin", sympy.sin),
    _broadcast("tanh", sympy.tanh),
)
