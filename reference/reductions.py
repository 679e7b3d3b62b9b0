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


def softmax_condition(x) -> float:
    """How much softmax's Jacobian diag(s) - s s^T loses to cancellation: the
    largest magnitude of its terms, diag(s) + s s^T, over its largest entry
    (the summation condition of reference/linalg.py). Where an entry s_i is
    near 1, the diagonal entry s_i (1 - s_i) is the difference of two terms
    near 1, so every rule's derivative carries s_i's rounding relative to a
    small result: s = (0.0013, 0.0030, 0.9948, 0.0008) gives 383. For a
    batch (one softmax per column) the worst column's."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    e = np.exp(x - np.max(x, axis=0))
    return max(_jacobian_condition(column / np.sum(column)) for column in e.T)


def _jacobian_condition(s: np.ndarray) -> float:
    """The largest entry of diag(s) + s s^T over the largest magnitude of
    diag(s) - s s^T, without either matrix: with 0 <= s_i <= 1 the largest
    off-diagonal entry of both is the product of the two largest s_i, and
    the diagonals are s_i +- s_i^2, rounded as the matrices' own entries (the
    same number; the matrices took 75 GiB each at n = 100,000)."""
    largest = np.sort(s)[-2:]
    off_diagonal = largest[0] * largest[1] if s.size > 1 else 0.0
    terms = max(float(np.max(s + s * s)), off_diagonal)
    jacobian = max(float(np.max(np.abs(s - s * s))), off_diagonal)
    return float(terms / max(jacobian, np.finfo(float).tiny))


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
            generate=_softmax_inputs, primal_mp=_softmax_mp, condition=softmax_condition,
            description="exp(x) / sum(exp(x)), computed stably"),
)
