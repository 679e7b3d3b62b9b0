"""Batched problems: a per-sample function applied to every column of x.

Shapes follow the Lux.jl convention: the batched input is x (N, B), the
output (M, B), and the batched Jacobian J (M, N, B), J[:, :, s] being the
Jacobian of sample s alone. ``size`` is the batch size B; the other inputs
(weights) are shared by every sample and are not differentiated. At the
smallest size the oracle's full Jacobian is block diagonal, and its blocks
are the batched reference.
"""

from __future__ import annotations

import numpy as np

from adjointbench.lazy import LazyModule
from adjointbench.reference import hp
from adjointbench.reference.ode import T_FINAL, flow_mp
from adjointbench.reference.problem import BATCH_BENCH_SIZES, Problem
from adjointbench.reference.reductions import softmax_condition

sympy = LazyModule("sympy")  # closed forms build expressions only when the oracle asks

BATCH_SIZES = (3, 16, 64)
DENSE_IN, DENSE_OUT = 4, 3
SOFTMAX_FEATURES = 5
SIN_FEATURES = 4
ODE_STATE = 2


def _dense_inputs(batch, rng):
    return {"W": rng.standard_normal((DENSE_OUT, DENSE_IN)) / np.sqrt(DENSE_IN),
            "b": 0.5 * rng.standard_normal(DENSE_OUT),
            "x": rng.standard_normal((DENSE_IN, batch))}


def _dense_mp(W, b, x):
    return hp.tanh(W @ x + b[:, None])


def _softmax_inputs(batch, rng):
    return {"x": 2.0 * rng.standard_normal((SOFTMAX_FEATURES, batch))}


def _softmax_mp(x):
    e = hp.exp(x - np.max(x, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def _sin_inputs(batch, rng):
    return {"x": rng.standard_normal((SIN_FEATURES, batch))}


def _ode_inputs(batch, rng):
    return {"u0": rng.standard_normal((ODE_STATE, batch)),
            "W": 0.5 * rng.standard_normal((ODE_STATE, ODE_STATE)) / np.sqrt(ODE_STATE),
            "b": 0.5 * rng.standard_normal(ODE_STATE)}


def _ode_mp(u0, W, b, steps: int = 8):
    return flow_mp(u0, W, b[:, None], steps=steps)


def batched_blocks(jacobian: np.ndarray, output_shape: tuple[int, ...],
                   input_shape: tuple[int, ...]) -> tuple[np.ndarray, float]:
    """The (M, N, B) diagonal blocks of a full (M*B, N*B) Jacobian of a batched
    function, and the largest entry outside them (zero when no sample mixes)."""
    M, B = int(np.prod(output_shape[:-1])), output_shape[-1]
    N = int(np.prod(input_shape[:-1]))
    full = np.reshape(jacobian, (M, B, N, B))
    same_sample = np.eye(B, dtype=bool)[None, :, None, :]
    blocks = np.stack([full[:, s, :, s] for s in range(B)], axis=-1)
    outside = float(np.max(np.abs(np.where(same_sample, 0.0, full)), initial=0.0))
    return blocks, outside


PROBLEMS = (
    Problem(name="batched_dense", family="batched", inputs=("W", "b", "x"),
            differentiable=("x",), sizes=BATCH_SIZES, bench_sizes=BATCH_BENCH_SIZES,
            generate=_dense_inputs,
            primal_mp=_dense_mp, batch_input="x",
            condition=lambda W, b, x: float(1 + np.linalg.norm(W, 2)),
            description=f"tanh(W x + b) per sample, x ({DENSE_IN}, B)"),
    Problem(name="batched_softmax", family="batched", inputs=("x",), differentiable=("x",),
            sizes=BATCH_SIZES, bench_sizes=BATCH_BENCH_SIZES,
            generate=_softmax_inputs, primal_mp=_softmax_mp, condition=softmax_condition,
            batch_input="x", description=f"softmax of each column, x ({SOFTMAX_FEATURES}, B)"),
    Problem(name="batched_sin", family="batched", inputs=("x",), differentiable=("x",),
            sizes=BATCH_SIZES, bench_sizes=BATCH_BENCH_SIZES,
            generate=_sin_inputs, closed_form=lambda x: sympy.sin(x),
            domain={"x": (-2 * np.pi, 2 * np.pi)},
            elementwise=True, batch_input="x",
            description=f"sin applied to each sample, x ({SIN_FEATURES}, B)"),
    Problem(name="batched_neural_ode", second_order=False,  # the oracle would difference an integration
            family="batched", inputs=("u0", "W", "b"),
            differentiable=("u0",), sizes=(2, 4, 8), bench_sizes=BATCH_BENCH_SIZES,
            generate=_ode_inputs,
            primal_mp=_ode_mp, primal_mp_check=lambda u0, W, b: _ode_mp(u0, W, b, steps=16),
            batch_input="u0",
            condition=lambda u0, W, b: float(np.exp(np.linalg.norm(W, 2) * T_FINAL)),
            accuracy_floor=1e-11,
            description=f"the neural ODE's u(1) per sample, u0 ({ODE_STATE}, B)"),
)
