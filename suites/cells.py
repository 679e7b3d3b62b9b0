"""The one cell type and the one planner, for check and bench alike.

A cell is (problem, implementation, operation, method, size, dtype, device,
seed) in a suite (``check`` or ``bench``). Primitives get the operations
(primal, jvp, vjp, full and batched Jacobians, the identities); sensitivity
problems get ``gradient``, once per gradient method. Whether an implementation
supports a cell is decided when the cell runs, and recorded as an outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from adjointbench.impls.protocol import (DEVICES, DTYPES, OPERATIONS, SECOND_ORDER,
                                         SECOND_ORDER_METHODS, SENSITIVITY_HVP_METHODS)
from adjointbench.reference import Problem, get_problem, problems
from adjointbench.reference.catalogue import UnknownNameError, built_in, closest
from adjointbench.suites.timing import DEFAULT_BUDGET_S
from adjointbench.suites.tolerance import METHODS

IDENTITIES = ("transpose", "linearity", "symmetry")
PRIMITIVE_OPS = tuple(op for op in OPERATIONS if op != "gradient") + IDENTITIES
SENSITIVITY_OPS = ("gradient", "hvp", "symmetry")  # H u of J, where the problem has second order
ALL_OPS = tuple(dict.fromkeys(PRIMITIVE_OPS + SENSITIVITY_OPS))  # hvp and symmetry are in both
FULL_JACOBIAN_OPS = ("jacfwd", "jacrev", "hessian")
SECOND_ORDER_OPS = SECOND_ORDER + ("symmetry",)  # one cell per nesting (the cell's method)
DEFAULT_BENCH_OPS = ("primal", "jvp", "vjp", "batched_jacobian")
SUITES = ("check", "bench")
# Scalable sensitivity problems run up to this P unless sizes are asked for
# (the oracle at P = 10^4 takes minutes once; it is cached afterwards).
DEFAULT_MAX_P = 1100
QUICK_MAX_P = 100  # check --quick: two points of each scalable sensitivity problem
DEFAULT_POINTS = 3  # input points per check cell: the seeded one and two spread over the domain


@dataclass(frozen=True)
class Cell:
    problem: str
    impl: str
    op: str
    size: int
    dtype: str = "float64"
    device: str = "cpu"
    seed: int = 0
    method: str | None = None  # the gradient method of a ``gradient`` cell
    suite: str = "check"
    budget_s: float = DEFAULT_BUDGET_S  # seconds of timed samples (bench, gradient)
    points: int = DEFAULT_POINTS  # input points a check cell evaluates (bench: the first)

    @property
    def id(self) -> str:
        """``numpy-linear_solve-n16-float32`` (with the device off the CPU, and the method)."""
        device = "" if self.device == "cpu" else f"-{self.device}"
        method = f"-{self.method}" if self.method else ""
        return f"{self.impl}-{self.problem}-n{self.size}-{self.dtype}{device}{method}"


def check_names(kind: str, asked: Iterable[str] | None, valid: Iterable[str]) -> list[str]:
    """``asked`` (all of ``valid`` for None), each checked; raises
    UnknownNameError naming the closest valid names."""
    valid = list(valid)
    if asked is None:
        return valid
    asked = list(dict.fromkeys(asked))  # a name asked twice plans its cells once
    for name in asked:
        if name not in valid:
            raise UnknownNameError(f"unknown {kind} {name!r}.{closest(name, valid)}")
    return asked


def _sizes(problem: Problem, op: str, suite: str, quick: bool, asked) -> list[int]:
    """The sizes one operation of one problem runs at in a suite."""
    if suite == "bench" and op not in FULL_JACOBIAN_OPS:
        own = list(problem.timed_sizes)
        default = sorted({own[0], own[-1]}) if quick else own
    elif op in FULL_JACOBIAN_OPS:  # timed at the correctness sizes, checked at the smallest
        own = default = list(problem.sizes) if suite == "bench" else [problem.smallest_size]
    elif problem.kind == "sensitivity":
        own = list(problem.sizes)
        default = [s for s in own if s <= (QUICK_MAX_P if quick else DEFAULT_MAX_P)]
    else:  # quick: the smallest size, and one larger to catch rules fitted to one size
        own = list(problem.sizes)
        default = own[:2] if quick else own
    return default if asked is None else [s for s in asked if s in own]


def _offered_sizes(chosen: list[Problem], suite: str) -> list[int]:
    own = lambda p: (*p.timed_sizes, *p.sizes) if suite == "bench" else p.sizes
    return sorted({s for p in chosen for s in own(p)})


def _ops_of(problem: Problem, ops: list[str]) -> list[str]:
    valid = SENSITIVITY_OPS if problem.kind == "sensitivity" else PRIMITIVE_OPS
    return [op for op in ops if op in valid and (op != "batched_jacobian" or problem.batch_input)
            and (op not in SECOND_ORDER_OPS or problem.second_order)]


def _methods_of(problem: Problem, op: str, methods: list[str],
                methodless: bool = True) -> list[str | None]:
    """A gradient cell per gradient method, a second-order cell per nesting
    (or, for a sensitivity problem, per HVP method); one cell of an
    operation that takes no method, unless not ``methodless``."""
    if op == "gradient":
        return [m for m in methods if m in METHODS]
    if op in SECOND_ORDER_OPS:
        valid = SENSITIVITY_HVP_METHODS if problem.kind == "sensitivity" else SECOND_ORDER_METHODS
        return [m for m in methods if m in valid]
    return [None] if methodless else []


def _members(name: str) -> list[Problem]:
    """The problem of that name, or the problems of the family of that name.
    Plug-in problems are loaded only for a name no built-in has (loading
    them all would import whatever each plug-in imports)."""
    built = built_in()
    if name in built or ":" in name:
        return [get_problem(name)]
    for pool in (lambda: list(built.values()), lambda: problems(None)):
        every = pool()
        if name not in {p.name for p in every}:
            family = [p for p in every if p.family == name]
            if family:
                return family
    return [get_problem(name)]


def _chosen(names: Iterable[str]) -> list:
    """Problems by name, a family name standing for all of its problems."""
    chosen = []
    for name in names:
        chosen += [p for p in _members(name) if p not in chosen]
    return chosen


def plan_cells(impls: Iterable[str], problem_names: Iterable[str] | None = None,
               ops: Iterable[str] | None = None, dtypes: Iterable[str] | None = None,
               sizes: Iterable[int] | None = None, devices: Iterable[str] | None = None,
               seed: int = 0, methods: Iterable[str] | None = None, quick: bool = False,
               suite: str = "check", budget_s: float = DEFAULT_BUDGET_S,
               points: int = DEFAULT_POINTS) -> list[Cell]:
    """Every cell of a sweep; ``None`` means the suite's default for that dimension.
    ``methods`` without ``ops`` selects only cells of those methods (gradient
    and second-order cells); with ``ops``, the named operations that take no
    method run too.

    check: every problem, operation and dtype on the CPU, at each problem's
    sizes (full Jacobians at the smallest; scalable sensitivity problems up
    to DEFAULT_MAX_P). ``quick`` keeps float64, each primitive's two smallest
    sizes (so that a rule right at one size only is caught), and sensitivity
    problems up to QUICK_MAX_P.
    bench: the primitives' DEFAULT_BENCH_OPS in float64 over each problem's
    scaling sizes (``quick``: the smallest and largest).

    Raises :class:`UnknownNameError`, naming the closest valid names, for an
    unknown problem, operation, method, dtype, device or a size no selected
    problem has.

    >>> [c.id for c in plan_cells(["numpy"], ["matvec"], ["vjp"], ["float64"], quick=True)]
    ['numpy-matvec-n2-float64', 'numpy-matvec-n8-float64']
    """
    suite = check_names("suite", [suite], SUITES)[0]
    bench = suite == "bench"
    methodless = not methods or bool(ops)  # --method adjoint alone: the adjoint's cells only
    chosen = (_chosen(problem_names) if problem_names
              else problems("primitive") if bench else problems(None))
    ops = check_names("operation", ops, ALL_OPS) if ops else (
        list(DEFAULT_BENCH_OPS) if bench
        else [op for op in ALL_OPS if not (quick and op in SECOND_ORDER_OPS)])
    methods = check_names("method", methods, dict.fromkeys(
        METHODS + SECOND_ORDER_METHODS + SENSITIVITY_HVP_METHODS))
    dtypes = check_names("dtype", dtypes, DTYPES) if dtypes else (
        ["float64"] if bench or quick else list(DTYPES))
    devices = check_names("device", devices, DEVICES) if devices else ["cpu"]
    if sizes is not None:
        sizes = list(sizes)
        offered = _offered_sizes(chosen, suite)
        for s in sizes:
            if s not in offered:
                raise UnknownNameError(f"no selected problem has size {s}. Valid sizes: "
                                       f"{', '.join(map(str, offered))}.")
    if points < 1:
        raise UnknownNameError(f"--points must be at least 1, got {points}")
    cells = (Cell(p.name, impl, op, size, dtype, device, seed, method, suite, budget_s,
                  min(points, p.max_points or points))
             for p in chosen for op in _ops_of(p, ops)
             for size in _sizes(p, op, suite, quick, sizes)
             for impl in impls
             for method in _methods_of(p, op, methods, methodless)
             for dtype in dtypes for device in devices)
    return list(dict.fromkeys(cells))  # a name given twice (--impl numpy,numpy) runs once
