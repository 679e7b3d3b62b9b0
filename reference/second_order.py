"""The oracle's second derivatives: the Hessian of <w, f> (w the cell's
cotangent probe; for a scalar output, the Hessian of f) applied to the
tangent probe u, projected on the probe directions v_k, and at a problem's
smallest size the whole Hessian.

Each entry is a mixed second directional derivative of the scalar
phi(s, t) = <w, f(x + s a + t b)> at 0, by the high-precision central
difference

    D(h) = [phi(h, h) - phi(h, -h) - phi(-h, h) + phi(-h, -h)] / (4 h^2),

whose error expands in even powers of h, extrapolated (Richardson) in
mpmath until two levels agree to half the working digits; their difference,
or the rounding twice the digits show where that is larger, is the certified
error (with more digits where rounding is what stops it). The primal is the
problem's own high-precision one (its closed form or its high-precision
primal), so every problem with a first-order reference of level exact or fd
has a second-order one of level fd; a problem with float64 differences
alone has none (``WeakReference``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import mpmath
import numpy as np

from adjointbench.reference import hp
from adjointbench.reference.oracle import (DPS, ORACLE_VERSION, Estimate, WeakReference,
                                           _basis, _estimate, builds_full_matrices,
                                           difference_quotient, extrapolate,
                                           high_precision_primal, kink_gap, reference_source)
from adjointbench.reference.problem import Problem, make_inputs, make_probes

Arrays = dict


@dataclass(frozen=True)
class SecondOrder:
    """Second-order reference of one cell's input point and probes.

    ``projected[k]`` is <v_k, H u> for the k-th projection probe;
    ``hessian`` the (N, N) Hessian over the differentiable inputs,
    concatenated in declared order, at the smallest size (else None).
    """

    problem: str
    size: int
    seed: int
    point: int
    method: str
    projected: tuple[Estimate, ...]
    hessian: Estimate | None = None
    seconds: float = 0.0
    version: str = ORACLE_VERSION

    def to_json(self) -> dict:
        return {"problem": self.problem, "size": self.size, "seed": self.seed,
                "point": self.point, "method": self.method,
                "projected": [p.to_json() for p in self.projected],
                "hessian": self.hessian.to_json() if self.hessian else None,
                "seconds": self.seconds, "version": self.version}

    @classmethod
    def from_json(cls, data: dict) -> "SecondOrder":
        return cls(data["problem"], data["size"], data["seed"], data["point"], data["method"],
                   tuple(Estimate.from_json(p) for p in data["projected"]),
                   Estimate.from_json(data["hessian"]) if data["hessian"] else None,
                   data["seconds"], data["version"])


class _MixedDifferences:
    """<w, D^2 f(x)[a, b]> by extrapolated high-precision mixed differences."""

    method = "fd"

    def __init__(self, problem: Problem, inputs: Arrays, cotangent: np.ndarray):
        self.problem = problem
        self._primal = high_precision_primal(problem, inputs)
        self._args = {k: hp.to_mp(v) for k, v in inputs.items()}
        self._w = hp.to_mp(np.asarray(cotangent, dtype=np.float64))
        self._at_x = None  # phi(0, 0) at twice the digits, for _kink

    def _phi(self, a: Arrays, b: Arrays, s, t):
        args = dict(self._args)
        for name in a:
            args[name] = self._args[name] + s * a[name] + t * b[name]
        y = np.asarray(self._primal(**args), dtype=object)
        return np.sum(self._w * y)

    def _difference(self, a: Arrays, b: Arrays, h):
        phi = lambda s, t: self._phi(a, b, s, t)
        return difference_quotient([phi(h, h), -phi(h, -h), -phi(-h, h), phi(-h, -h)],
                                   4 * h * h)

    def mixed(self, a: Arrays, b: Arrays) -> tuple:
        """(value, error, kink) of <w, D^2 f[a, b]>, as mpmath numbers; the
        kink (see _kink) is part of the error."""
        norm_a = max(float(np.max(np.abs(d), initial=0.0)) for d in a.values())
        norm_b = max(float(np.max(np.abs(d), initial=0.0)) for d in b.values())
        if norm_a == 0 or norm_b == 0:
            return mpmath.mpf(0), mpmath.mpf(0), mpmath.mpf(0)
        count = sum(np.size(d) for d in a.values())

        def units():  # at the digits of the moment (extrapolate takes more)
            return ({k: hp.to_mp(v) / norm_a for k, v in a.items()},
                    {k: hp.to_mp(v) / norm_b for k, v in b.items()})

        def steps():
            unit_a, unit_b = units()
            return (lambda h: self._difference(unit_a, unit_b, h),
                    mpmath.mpf(1) / (16 * mpmath.sqrt(count)))

        value, error = extrapolate(steps, mpmath.mpf(10) ** (-(DPS // 2)),
                                   f"{self.problem.name} twice")
        kink = self._kink(*units(), value)
        scale = norm_a * norm_b
        return value * scale, max(error, kink) * scale, kink * scale

    def _kink(self, a: Arrays, b: Arrays, central):
        """The kink of the gradient at x (relu(x)^2 / 2 at 0, a Huber loss at
        its threshold), where the central mixed difference gives the mean of
        the one-sided second derivatives. Where phi is smooth, every
        quadrant's difference [phi(h, k) - phi(h, 0) - phi(0, k) + phi(0, 0)]
        / hk tends to the central value; at a kink, one that lies across it
        or beside it does not (two quadrants: one alone can straddle the
        kink so that it gives the mean too). Each is set against the central
        estimate by oracle.kink_gap at twice the digits, from |h| = |k| =
        10^-(digits/4): 1e-10, whose square keeps a high-precision primal's
        own error (1e-37 for the ODE problems) far below 1e-13."""
        step = mpmath.mpf(10) ** (-(mpmath.mp.dps // 4))
        with mpmath.workdps(2 * mpmath.mp.dps):
            if self._at_x is None:
                self._at_x = self._phi(a, b, 0, 0)

            def quadrant(sign):
                return lambda h: (self._phi(a, b, h, sign * h) - self._phi(a, b, h, 0)
                                  - self._phi(a, b, 0, sign * h) + self._at_x) / (sign * h * h)

            return max(kink_gap(quadrant(sign), central, step, order=2) for sign in (1, -1))


def _scalar_estimate(value, error, kink) -> Estimate:
    return _estimate(np.asarray(value, dtype=object), error, "fd", kink)


def compute_second_order(problem: Problem, size: int, seed: int = 0,
                         point: int = 0) -> SecondOrder:
    """The second-order reference of ``problem`` at ``size``, ``seed``, ``point``."""
    if reference_source(problem) == "fd64":
        raise WeakReference(f"{problem.name} has neither a closed form nor a high-precision "
                            "primal: the oracle has no second derivatives to certify (declare "
                            "it with closed_form= or primal=)")
    start = time.perf_counter()
    inputs = make_inputs(problem, size, seed, point)
    with mpmath.workdps(DPS):
        value = np.asarray(high_precision_primal(problem, inputs)(
            **{k: hp.to_mp(v) for k, v in inputs.items()}), dtype=object)
        probes = make_probes(problem, size, inputs, value.shape, seed, point)
        path = _MixedDifferences(problem, inputs, probes.cotangent)
        projected = tuple(_scalar_estimate(*path.mixed(probes.tangent, v))
                          for v in probes.projections)
        hessian = (_full_hessian(path, inputs, problem)
                   if builds_full_matrices(problem, size, inputs) else None)
    return SecondOrder(problem.name, size, seed, point, "fd", projected, hessian,
                       time.perf_counter() - start)


def _full_hessian(path: _MixedDifferences, inputs: Arrays, problem: Problem) -> Estimate:
    basis = list(_basis(inputs, problem.differentiable))
    n = len(basis)
    H = np.empty((n, n), dtype=object)
    errors, kinks = [], []
    for i in range(n):
        for j in range(i, n):
            H[i, j], error, kink = path.mixed(basis[i], basis[j])
            H[j, i] = H[i, j]
            errors.append(error)
            kinks.append(kink)
    return _estimate(H, max(errors), "fd", max(kinks))


__all__ = ["SecondOrder", "compute_second_order"]
