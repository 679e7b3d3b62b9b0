"""The declaration of a problem, and the seeded data every suite shares.

A problem is data: a name, a family, named inputs (some differentiable), the
sizes it runs at, a seeded generator, a high-precision primal and, where one
exists, a sympy closed form. Nothing here knows about implementations.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

Arrays = dict[str, np.ndarray]

# Scaling sweeps for throughput: each spans at least two decades
VECTOR_BENCH_SIZES = (100, 1_000, 10_000, 100_000)
MATRIX_BENCH_SIZES = (8, 32, 128, 512, 1024)
BATCH_BENCH_SIZES = (1, 4, 16, 64, 256, 1024)


# Input entries up to which a declared problem's oracle builds full Jacobians
# and Hessians at its smallest size: columns at 40 digits, pairs of columns for
# the Hessian (a declaration whose smallest size had 200,000 entries took 9 GB
# and more than 10 minutes before its first cell; 800 entries, 4.6 s)
FULL_MATRICES_MAX = 64


@dataclass(frozen=True)
class Problem:
    """One catalogue entry.

    Attributes:
        name: unique name, e.g. ``"linear_solve"``.
        family: the family file it lives in (``"linalg"``, ``"implicit"``...).
        inputs: input names in calling order.
        differentiable: the inputs derivatives are taken with respect to.
        sizes: the sizes it runs at; ``(1,)`` for problems of fixed shape.
        generate: ``generate(size, rng) -> {name: float64 array}``.
        primal_mp: the primal on numpy object arrays of ``mpmath.mpf``
            (keyword arguments by input name); ``None`` when ``closed_form``
            defines it.
        primal_mp_check: for primals that discretise (the ODE), the same primal
            at a finer resolution; the oracle adds their difference to its
            error estimate.
        closed_form: a sympy definition; for scalar problems a function of one
            sympy symbol per input, for elementwise ones a function of one
            symbol applied to every entry.
        elementwise: whether ``closed_form`` is applied entry by entry.
        condition: a condition estimate of the primal at given inputs.
        accuracy_floor: the relative accuracy that the problem asks of
            implementations that must approximate (ODE integrators), added to
            the rounding tolerance. Zero for problems computed exactly.
        description: one line for ``adjointbench list``.
        kind: ``"primitive"`` (operations jvp, vjp, ...) or ``"sensitivity"``
            (a scalar loss J(theta) whose operation is ``gradient``, by each
            method; its inputs are used exactly as given, without float32
            rounding, and its fixed data are its non-differentiable inputs).
        batch_input: for batched problems, the input whose last axis is the
            batch (Lux convention: x (N, B) -> y (M, B)); ``None`` otherwise.
        bench_sizes: the sizes throughput is measured at (a scaling sweep,
            no oracle needed); ``()`` means ``sizes``.
        record_values: keep the compared values and the reference in each
            record (small outputs drawn as curves in the report).
        dtypes: the dtypes it is defined in; cells of another dtype are
            recorded ``unsupported`` with the reason.
        domain: ``{input: (low, high)}``, where the inputs may range. Input
            point 0 is the seeded one; points 1, 2, ... draw a new generator
            stream and spread these inputs over their domain (a golden-ratio
            sequence, jittered by the seed), so that every region a rule can
            get wrong (both signs of sin and cos, of scalars) is visited.
        max_points: the most input points worth checking; None for no limit.
        primal_float64: the primal in float64 (keyword arguments by input
            name), for problems that declare neither a closed form nor a
            high-precision primal: the oracle extrapolates its differences in
            float64 and certifies them to the level they reach.
        neighbourhood: for inputs without a ``domain``, how far points 1, 2,
            ... stray from point 0, relatively: each entry is scaled by
            exp(neighbourhood * u), u uniform in [-1, 1] (a zero entry becomes
            neighbourhood * u), so signs, and positivity, are kept. Problems
            with explicit inputs use it; 0 keeps every point at point 0.
        varied: the inputs that points 1, 2, ... move (by ``domain`` or
            ``neighbourhood``); None moves every input. Sensitivity problems
            move theta alone: their other inputs are the worked example's
            fixed data (matrices, reference solutions, observation times).
        max_full_jacobian: the oracle builds the full Jacobian and Hessian
            at the smallest size only when the differentiable inputs have at
            most this many entries (None: always; declared problems:
            FULL_MATRICES_MAX); above it VJPs, Jacobians and Hessians are
            checked along the tangent and the projections.
        second_order: whether the correctness sweep has second-order cells
            (hvp, hessian, symmetry) for the problem: False where the oracle's
            mixed differences of a high-precision integration would take minutes.
    """

    name: str
    family: str
    inputs: tuple[str, ...]
    differentiable: tuple[str, ...]
    sizes: tuple[int, ...]
    generate: Callable[[int, np.random.Generator], Arrays]
    primal_mp: Callable[..., Any] | None = None
    primal_mp_check: Callable[..., Any] | None = None
    closed_form: Callable[..., Any] | None = None
    elementwise: bool = False
    condition: Callable[..., float] = field(default=lambda **_: 1.0)
    accuracy_floor: float = 0.0
    description: str = ""
    kind: str = "primitive"
    batch_input: str | None = None
    bench_sizes: tuple[int, ...] = ()
    record_values: bool = False
    dtypes: tuple[str, ...] = ("float64", "float32")
    domain: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_points: int | None = None
    primal_float64: Callable[..., Any] | None = None
    neighbourhood: float = 0.0
    varied: tuple[str, ...] | None = None
    max_full_jacobian: int | None = None
    second_order: bool = True

    @property
    def smallest_size(self) -> int:
        return min(self.sizes)

    @property
    def timed_sizes(self) -> tuple[int, ...]:
        return self.bench_sizes or self.sizes


def _rng(problem: Problem, size: int, seed: int, stream: int,
         point: int = 0) -> np.random.Generator:
    key = [seed, zlib.crc32(problem.name.encode()), size, stream, point]
    return np.random.default_rng(key)


GOLDEN = (np.sqrt(5.0) - 1) / 2
SCALAR_JITTER = 0.1  # of the domain's width, for one-element inputs


def _spread(problem: Problem, raw: Arrays, size: int, seed: int, point: int) -> Arrays:
    """Point ``point`` of the domain: a golden-ratio step per point, so that
    a few points already land far apart; many-element inputs are uniform."""
    rng = _rng(problem, size, seed, stream=2, point=point)
    spread = dict(raw)
    for name, (low, high) in problem.domain.items():
        if problem.varied is not None and name not in problem.varied:
            continue
        shape = np.shape(raw[name])
        jitter = rng.uniform(size=shape) * (1.0 if np.prod(shape, dtype=int) > 1 else SCALAR_JITTER)
        spread[name] = low + (high - low) * ((point * GOLDEN + jitter) % 1.0)
    return spread


def _neighbour(problem: Problem, raw: Arrays, size: int, seed: int, point: int) -> Arrays:
    """Point ``point`` near point 0, for inputs without a domain (see ``neighbourhood``)."""
    rng = _rng(problem, size, seed, stream=3, point=point)
    moved = dict(raw)
    for name in problem.inputs if problem.varied is None else problem.varied:
        if name in problem.domain or not problem.neighbourhood:
            continue
        x = np.asarray(raw[name], dtype=np.float64)
        u = rng.uniform(-1.0, 1.0, size=x.shape)
        moved[name] = np.where(x == 0, problem.neighbourhood * u,
                               x * np.exp(problem.neighbourhood * u))
    return moved


def float32_exact(array: np.ndarray) -> np.ndarray:
    """Round to float32 and back, so float32 and float64 cells see one input."""
    return np.asarray(array, dtype=np.float64).astype(np.float32).astype(np.float64)


# Input points 0 and 1 are float32-exact, inputs and probes alike, so that a
# problem's float32 and float64 cells share them and their references. From
# point 2 on a float64 cell evaluates the same point in full float64
# precision instead (its own reference, under the negative point -k): with
# float32-exact data only, a rule that keeps an input, a tangent or a
# cotangent in float32 (a memory-saving residual) and computes in float64
# loses nothing and passes, where for any other float64 data it is 1e-8 off.
SHARED_POINTS = 2


def _shares_float32(problem: Problem) -> bool:
    return problem.kind != "sensitivity" and "float32" in problem.dtypes


def seeded_point(problem: Problem, point: int, dtype: str) -> int:
    """The seeded point a ``dtype`` cell of ``problem`` evaluates as its
    ``point``-th input point: ``point``, or ``-point`` where it is a float64
    cell's own (see SHARED_POINTS)."""
    if dtype == "float64" and point >= SHARED_POINTS and _shares_float32(problem):
        return -point
    return point


def _exact(problem: Problem, point: int, array) -> np.ndarray:
    """Data of ``point``: float32-exact where the point is shared by both dtypes."""
    if point < 0 or not _shares_float32(problem):
        return np.asarray(array, dtype=np.float64)
    return float32_exact(array)


def make_inputs(problem: Problem, size: int, seed: int = 0, point: int = 0) -> Arrays:
    """The seeded inputs of ``problem`` at ``size`` and input point ``point``
    (a :func:`seeded_point`): float64, float32-exact so that float32 and
    float64 cells see one input, except at a float64 cell's own points
    (negative: the same point unrounded) and for sensitivity problems and
    problems defined in float64 only (exactly as declared)."""
    where = abs(point)
    raw = problem.generate(size, _rng(problem, size, seed, stream=0, point=where))
    if where:
        raw = _neighbour(problem, _spread(problem, raw, size, seed, where), size, seed, where)
    return {name: _exact(problem, point, raw[name]) for name in problem.inputs}


@dataclass(frozen=True)
class Probes:
    """Seeded directions shared by the oracle and the suites.

    ``tangent`` and ``tangent2`` hold one array per differentiable input,
    ``cotangent`` has the output's shape and ``projections`` are directions in
    input space for checking large VJPs through <vjp(w), v> = <w, J v>.
    """

    tangent: Arrays
    tangent2: Arrays
    cotangent: np.ndarray
    projections: tuple[Arrays, ...]


N_PROJECTIONS = 2


def make_probes(problem: Problem, size: int, inputs: Arrays, output_shape: tuple[int, ...],
                seed: int = 0, point: int = 0) -> Probes:
    """Seeded probes for ``inputs = make_inputs(problem, size, seed, point)``:
    float32-exact, except at a float64 cell's own points (negative)."""
    rng = _rng(problem, size, seed, stream=1, point=abs(point))
    exact = float32_exact if point >= 0 else (lambda a: np.asarray(a, dtype=np.float64))

    def direction() -> Arrays:
        return {name: exact(rng.standard_normal(inputs[name].shape))
                for name in problem.differentiable}

    tangent, tangent2 = direction(), direction()
    cotangent = exact(rng.standard_normal(output_shape))
    projections = tuple(direction() for _ in range(N_PROJECTIONS))
    return Probes(tangent, tangent2, cotangent, projections)


def flatten(arrays: Arrays, names: tuple[str, ...]) -> np.ndarray:
    """Concatenate the named arrays, row-major, in the given order."""
    return np.concatenate([np.ravel(arrays[name]) for name in names])


def unflatten(vector: np.ndarray, like: Arrays, names: tuple[str, ...]) -> Arrays:
    out, start = {}, 0
    for name in names:
        shape = np.shape(like[name])
        stop = start + int(np.prod(shape, dtype=int))
        out[name] = np.reshape(vector[start:stop], shape)
        start = stop
    return out
