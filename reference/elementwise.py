"""Elementwise (broadcast) primitives: f applied entry by entry to x in R^n."""

from __future__ import annotations

import numpy as np

from adjointbench.lazy import LazyModule
from adjointbench.reference.problem import VECTOR_BENCH_SIZES, Problem

sympy = LazyModule("sympy")  # closed forms build expressions only when the oracle asks

SIZES = (4, 64, 1024)


def _vector(size, rng):
    return {"x": 1.5 * rng.standard_normal(size)}


def _broadcast(fname: str, f, domain: tuple[float, float]) -> Problem:
    return Problem(name=f"broadcast_{fname}", family="elementwise", inputs=("x",),
                   differentiable=("x",), sizes=SIZES, bench_sizes=VECTOR_BENCH_SIZES, generate=_vector,
                   closed_form=f, elementwise=True, domain={"x": domain},
                   description=f"{fname}(x) elementwise, x in R^n")


PROBLEMS = (
    # both signs of sin and cos
    _broadcast("sin", lambda x: sympy.sin(x), (-2 * np.pi, 2 * np.pi)),
    # both signs, into saturation; further out every AD framework's 1 - tanh^2
    # cancels below float32's accuracy, a property of the rule, not a bug
    _broadcast("tanh", lambda x: sympy.tanh(x), (-2.0, 2.0)),
)
