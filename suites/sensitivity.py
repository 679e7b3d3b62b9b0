"""The adjoint-sensitivity suite: every gradient method of every implementation
against the oracle, one record per (problem, implementation, method, size).

An implementation takes part by offering ``gradient_methods(problem)`` and
``prepare_gradient(problem, method, theta, device) -> Prepared`` (the gradient
of the problem's loss as a (P,) array). A method passes when its relative error
against the oracle is within its own accuracy, METHOD_RTOL; above
``reference.sensitivity.ILL_CONDITIONED`` (the solve's condition at the
solution) or when the oracle cannot certify a reference, no gradient is
trusted and the outcome is ``ill_conditioned``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from adjointbench.impls.protocol import Prepared
from adjointbench.impls.registry import load_implementation
from adjointbench.reference import Oracle, UncertifiedReference, get_problem, make_inputs, make_probes, problems
from adjointbench.reference.sensitivity import (GD_THETA, ILL_CONDITIONED, unrolled_gd_derivative,
                                   unrolled_gd_implicit_derivative)
from adjointbench.suites.results import Record
from adjointbench.suites.runner import _check_names
from adjointbench.suites.timing import time_operation, timing_fields

# What each kind of method can promise, relative to the gradient's largest entry:
# forward differences O(sqrt eps), central O(eps^(2/3)), ODE integrators at
# rtol 1e-12 or RK4 with h = 0.01, and exact linear algebra.
METHOD_RTOL = {"fd_forward": 1e-4, "fd_central": 1e-6, "forward_sensitivity": 1e-8,
               "adjoint": 1e-8, "unrolled": 1e-8, "implicit": 1e-8}
# Gradients at large P take seconds: three timed rounds, within a small budget
TIMING_ROUNDS, TIMING_BUDGET_S = 3, 0.1
# Scalable problems run up to this P unless sizes are asked for explicitly
# (the oracle at P = 10^4 takes minutes; it is cached afterwards).
DEFAULT_MAX_P = 1100
UNROLLING_RTOL = 1e-12

# The implicit method on unrolled_gd answers dx*/dtheta at the fixed point, a
# different quantity from dx_1000/dtheta: it is compared with its closed form.
CLOSED_FORM_REFERENCES = {
    ("unrolled_gd", "implicit"): lambda theta: np.array([unrolled_gd_implicit_derivative(theta[0])]),
}


def method_tolerance(method: str, P: int) -> float:
    """A finite difference's rounding error stays that of J while each entry of
    the gradient shrinks as P grows: its tolerance grows with sqrt(P)."""
    return METHOD_RTOL[method] * (np.sqrt(P) if method.startswith("fd_") else 1.0)


@dataclass(frozen=True)
class GradientCell:
    problem: str
    impl: str
    method: str
    size: int
    device: str = "cpu"
    seed: int = 0
    op: str = "gradient"  # or "unrolling": unrolled_gd's whole derivative curve

    @property
    def id(self) -> str:
        return f"{self.impl}-{self.problem}-P{self.size}-{self.method}"


SENSITIVITY_OPS = ("gradient", "unrolling")


def make_gradient_cells(impls, problem_names=None, methods=None, sizes=None,
                        seed: int = 0, ops=SENSITIVITY_OPS) -> list[GradientCell]:
    """Cells for every method each implementation offers; ``None`` means all.
    Scalable problems stop at P = DEFAULT_MAX_P unless ``sizes`` asks for more."""
    chosen = [get_problem(n) for n in problem_names] if problem_names else problems("sensitivity")
    methods = _check_names("method", methods, METHOD_RTOL)
    cells = []
    for impl_name in impls:
        impl = load_implementation(impl_name)
        offered = getattr(impl, "gradient_methods", lambda problem: ())
        if "gradient" in ops:
            cells += [GradientCell(p.name, impl_name, m, size, seed=seed)
                      for p in chosen if p.kind == "sensitivity"
                      for size in p.sizes
                      if (size in sizes if sizes is not None else size <= DEFAULT_MAX_P)
                      for m in offered(p.name) if m in methods]
        if ("unrolling" in ops and hasattr(impl, "prepare_unrolling")
                and "unrolled_gd" in {p.name for p in chosen}
                and "unrolled" in offered("unrolled_gd")):
            cells.append(GradientCell("unrolled_gd", impl_name, "unrolled", 1, op="unrolling"))
    return cells


def run_sensitivity_cell(cell: GradientCell, oracle: Oracle) -> Record:
    if cell.op == "unrolling":
        return run_unrolling_curve(cell.impl)
    return run_gradient_cell(cell, oracle)


def _timed_gradient(prepare: Callable[[], Prepared]) -> tuple[np.ndarray, dict]:
    """The gradient, and its timing fields for the record."""
    timing = time_operation(prepare, TIMING_BUDGET_S, TIMING_ROUNDS)
    gradient = np.asarray(timing.prepared.to_numpy(timing.result), dtype=np.float64)
    return gradient, timing_fields(timing)


def _error(cell: GradientCell, gradient: np.ndarray, oracle: Oracle):
    """(relative error, oracle's relative error, reference list) for the gradient."""
    problem = get_problem(cell.problem)
    closed_form = CLOSED_FORM_REFERENCES.get((cell.problem, cell.method))
    if closed_form:
        expected = closed_form(make_inputs(problem, cell.size, cell.seed)["theta"])
        error = float(np.max(np.abs(gradient - expected)) / max(np.max(np.abs(expected)), 1.0))
        return error, 0.0, expected
    reference = oracle.reference(cell.problem, cell.size, cell.seed)
    if reference.jacobian is not None:
        expected = reference.jacobian.certified("gradient").ravel()
        error = float(np.max(np.abs(gradient - expected)) / np.max(np.abs(expected)))
        return error, reference.jacobian.relative_error, expected
    # at large P: <grad, v_k> against the oracle's J v_k
    inputs = make_inputs(problem, cell.size, cell.seed)
    probes = make_probes(problem, cell.size, inputs, (), cell.seed)
    expected = np.array([float(e.certified(f"projection {k}"))
                         for k, e in enumerate(reference.projected)])
    actual = np.array([float(gradient @ v["theta"]) for v in probes.projections])
    scale = max(float(np.abs(gradient) @ np.abs(v["theta"])) for v in probes.projections)
    error = float(np.max(np.abs(actual - expected)) / scale)
    oracle_err = max(e.relative_error for e in reference.projected)
    return error, oracle_err, expected


def run_gradient_cell(cell: GradientCell, oracle: Oracle) -> Record:
    """One method's gradient, its time and its error; never raises."""
    start = time.perf_counter()
    record = Record(cell.problem, cell.impl, "gradient", "float64", cell.device, cell.size,
                    cell.seed, outcome="error", method=cell.method)
    problem = get_problem(cell.problem)
    theta = make_inputs(problem, cell.size, cell.seed)["theta"]
    condition = float(problem.condition(theta=theta))
    record = replace(record, condition=condition)
    ill = (f"the solve is ill-conditioned at the solution (condition estimate "
           f"{condition:.1e} > {ILL_CONDITIONED:.0e}): no gradient of {cell.problem} can be "
           "trusted, whatever the method") if condition > ILL_CONDITIONED else None
    try:
        impl = load_implementation(cell.impl)
        try:
            gradient, timed = _timed_gradient(lambda: impl.prepare_gradient(
                cell.problem, cell.method, theta, cell.device))
        except NotImplementedError as e:
            return replace(record, outcome="unsupported", message=str(e),
                           seconds=time.perf_counter() - start)
        except Exception as e:
            if ill:
                raise UncertifiedReference(f"{ill} (the method failed: {type(e).__name__}: {e})")
            raise
        record = replace(record, value=gradient.tolist(), **timed)
        if ill:
            raise UncertifiedReference(ill)
        error, oracle_err, expected = _error(cell, gradient, oracle)
        tol = method_tolerance(cell.method, cell.size)
        ok = bool(np.all(np.isfinite(gradient))) and error <= tol
        record = replace(record, outcome="ok" if ok else "mismatch", max_rel_err=error, tol=tol,
                         oracle_err=oracle_err, reference=np.asarray(expected).tolist(),
                         message="" if ok else f"{cell.method} gradient: rel error {error:.2e} > "
                                               f"tol {tol:.0e} (oracle error {oracle_err:.1e})")
    except (UncertifiedReference, ArithmeticError) as e:
        record = replace(record, outcome="ill_conditioned", message=str(e))
    except Exception as e:  # the implementation's failure is an outcome
        record = replace(record, outcome="error", message=f"{type(e).__name__}: {e}")
    return replace(record, seconds=time.perf_counter() - start)


def run_unrolling_curve(impl_name: str) -> Record:
    """unrolled_gd: dx_t/dtheta at every iterate t against the closed form
    -0.1 t (1 - 0.1 theta)^(t-1) 0.5; ``value`` and ``reference`` hold the curves."""
    theta = GD_THETA
    record = Record("unrolled_gd", impl_name, "unrolling", "float64", "cpu", 1, 0,
                    outcome="error", method="unrolled")
    try:
        curve, timed = _timed_gradient(lambda: load_implementation(impl_name).prepare_unrolling(theta))
        expected = unrolled_gd_derivative(theta[0], np.arange(len(curve)))
        nonzero = expected != 0
        error = float(np.max(np.abs(curve[nonzero] - expected[nonzero]) / np.abs(expected[nonzero])))
        exact_zero = bool(np.all(curve[~nonzero] == 0))
        ok = error <= UNROLLING_RTOL and exact_zero
        return replace(record, outcome="ok" if ok else "mismatch", value=curve.tolist(),
                       reference=expected.tolist(), max_rel_err=error, tol=UNROLLING_RTOL,
                       **timed,
                       message="" if ok else f"unrolled derivative off the closed form by {error:.1e}")
    except Exception as e:
        return replace(record, message=f"{type(e).__name__}: {e}")
