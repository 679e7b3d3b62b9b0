"""Scalar primitives: x + y, x * y, sin x. Defined by sympy closed forms."""

from __future__ import annotations

import math

from adjointbench.lazy import LazyModule
from adjointbench.reference.problem import Problem

sympy = LazyModule("sympy")  # closed forms build expressions only when the oracle asks


def _two_scalars(size, rng):
    x, y = rng.standard_normal(2)
    return {"x": x, "y": y}


def _one_scalar(size, rng):
    return {"x": rng.standard_normal()}


PROBLEMS = (
    Problem(name="scalar_add", family="scalar", inputs=("x", "y"),
            differentiable=("x", "y"), sizes=(1,), generate=_two_scalars,
            domain={"x": (-4.0, 4.0), "y": (-4.0, 4.0)}, closed_form=lambda x, y: x + y, description="x + y"),
    Problem(name="scalar_mul", family="scalar", inputs=("x", "y"),
            differentiable=("x", "y"), sizes=(1,), generate=_two_scalars,
            domain={"x": (-4.0, 4.0), "y": (-4.0, 4.0)}, closed_form=lambda x, y: x * y, description="x * y"),
    Problem(name="scalar_sin", family="scalar", inputs=("x",),
            differentiable=("x",), sizes=(1,), generate=_one_scalar,
            domain={"x": (-2 * math.pi, 2 * math.pi)}, closed_form=lambda x: sympy.sin(x),
            description="sin x"),
)
