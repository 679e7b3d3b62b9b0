"""Reductions to a loss, and the softmax."""

from __future__ import annotations

import mpmath
import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.problem import VECTOR_BENCH_SIZES, Problem

SIZES = (4, 64, 1024)


def _l2_inputs(size, rng):
    return {"y": rng.standard_normal(size), "y_ref": rng.standard_normal(size)}


def _l2_loss_mp(y, y_ref):
    r = y - y_ref
    return np.array(mpmath.mpf("0.5") * np.dot(r, r), dtype=object)


def _l2_condition(y, y_ref) -> float:
    """Relative condition of sum (y - y_ref)^2 in the entries."""
    r = y - y_ref
    return float(np.sum((np.abs(y) + np.abs(y_ref)) * np.abs(r)) / max(np.dot(r, r), 1e-300))


def _softmax_inputs(size, rng):
    return {"x": 2.0 * rng.standard_normal(size)}


def _softmax_mp(x):
    e = hp.exp(x - max(x))
    return e / np.sum(e)


PROBLEMS = (
    Problem(name="l2_loss", family="reductions", inputs=("y", "y_ref"),
            differentiable=("y",), sizes=SIZES, bench_sizes=VECTOR_BENCH_SIZES, generate=_l2_inputs,
            primal_mp=_l2_loss_mp, condition=_l2_condition,
            description="0.5 ||y - y_ref||^2"),
    Problem(name="softmax", family="reductions", inputs=("x",), differentiable=("x",),
            domain={"x": (-5.0, 5.0)},
            sizes=SIZES, bench_sizes=VECTOR_BENCH_SIZES,
            generate=_softmax_inputs, primal_mp=_softmax_mp,
            description="exp(x) / sum(exp(x)), computed stably"),
)
