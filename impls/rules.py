"""Shared glue for implementations written as rule tables (naive, numpy).

A :class:`Rule` is the pure primal beside the JAX-style triple forward / jvp
/ vjp with residuals:

    primal(**inputs)             -> output (the baseline bench times: nothing more)
    forward(**inputs)            -> (output, residuals)
    jvp(residuals, *tangents)    -> output tangent
    vjp(residuals, cotangent)    -> tuple of input cotangents

with tangents and cotangents in the order of the differentiable inputs, so a
factorisation made by the forward pass is reused by both rules. A rule may add
second order:

    hvp(inputs, w, *u)           -> the Hessian of <w, f> at ``inputs`` applied
                                    to u, one array per differentiable input
    hessian(inputs, w)           -> that Hessian materialised, (N, N)

(``hvp`` is the tangent of the VJP written by hand; ``hessian`` alone, as the
naive table gives it, yields the product H u by materialising H first.) The full
Jacobians are built here, once for every rule table: column by column from
JVPs (forward) and row by row from VJPs (reverse), unless the rule materialises
its own ``jacobian(residuals)``.

The implicit-function rule is written once here too: a solution declares its
residual's linearisation and :func:`implicit_rule` derives both products
(lineax's one JVP and one transpose rule for all solvers is the model).

A table may also offer gradients of sensitivity problems,
``gradients = {problem: {method: gradient(**inputs) -> tuple of cotangents}}``,
their Hessian-vector products,
``hvps = {problem: {method: hvp(inputs, w, u) -> (H u,)}}`` (H of w J), and
their losses, ``losses = {problem: J(theta, **data)}``, the primal a bench
measures a gradient against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from adjointbench.impls.protocol import SECOND_ORDER, Prepared, Task


@dataclass(frozen=True)
class Rule:
    primal: Callable[..., Any]
    forward: Callable[..., tuple[Any, Any]]
    jvp: Callable[..., Any]
    vjp: Callable[..., tuple]
    jacobian: Callable[[Any], np.ndarray] | None = None
    hvp: Callable[..., tuple] | None = None
    hessian: Callable[[dict, Any], np.ndarray] | None = None

    @property
    def second_order(self) -> bool:
        return self.hvp is not None or self.hessian is not None


@dataclass(frozen=True)
class Linearisation:
    """r(x, theta) = 0 linearised at its solution x: ``solve_x(rhs)`` is
    (dr/dx)^-1 rhs and ``solve_xT(rhs)`` (dr/dx)^-T rhs (one factorisation,
    reused); ``r_theta(*dtheta)`` is dr/dtheta dtheta and ``r_theta_T(lam)``
    the tuple (dr/dtheta_i)^T lam, one per differentiable input."""

    solve_x: Callable[[Any], Any]
    solve_xT: Callable[[Any], Any]
    r_theta: Callable[..., Any]
    r_theta_T: Callable[[Any], tuple]


def implicit_rule(solve: Callable[..., Any], linearise: Callable[..., Linearisation] | None = None,
                  forward: Callable[..., tuple[Any, Linearisation]] | None = None) -> Rule:
    """The rule of x(theta) solving r(x, theta) = 0, from its residual alone.

    By the implicit function theorem dx = -(dr/dx)^-1 (dr/dtheta dtheta); its
    transpose is theta_bar = -(dr/dtheta)^T lam where (dr/dx)^T lam = x_bar.
    ``solve(**inputs) -> x`` is the pure primal; ``linearise(x, **inputs) ->
    Linearisation``, or ``forward(**inputs) -> (x, Linearisation)`` for a
    solution whose solve makes the factorisation the rules reuse.
    """
    if forward is None:
        def forward(**inputs):
            x = solve(**inputs)
            return x, linearise(x, **inputs)

    return Rule(primal=solve, forward=forward,
                jvp=lambda lin, *dtheta: -lin.solve_x(lin.r_theta(*dtheta)),
                vjp=lambda lin, x_bar: tuple(-g for g in lin.r_theta_T(lin.solve_xT(x_bar))))


def implicit_jacobian(r_x: np.ndarray, r_theta: tuple, solve: Callable) -> tuple:
    """The same rule materialised: dx/dtheta_i = -(dr/dx)^-1 dr/dtheta_i, one
    block per input (shape x.shape + theta_i.shape), with the caller's ``solve``."""
    n = r_x.shape[0]
    return tuple(-solve(r_x, b.reshape(n, -1)).reshape(b.shape) for b in r_theta)


def unit_directions(shapes: Mapping[str, tuple], dtype):
    """Yield one-hot tangents, one per entry, inputs in order, row-major."""
    for position, shape in enumerate(shapes.values()):
        for index in np.ndindex(shape):
            tangent = [np.zeros(s, dtype=dtype) for s in shapes.values()]
            tangent[position][index] = 1
            yield tangent


def jacobian_by_jvps(rule: Rule, res, shapes: Mapping[str, tuple], dtype) -> np.ndarray:
    columns = [np.ravel(rule.jvp(res, *t)) for t in unit_directions(shapes, dtype)]
    return np.stack(columns, axis=1)


def jacobian_by_vjps(rule: Rule, res, output_shape: tuple, dtype) -> np.ndarray:
    rows = []
    for index in np.ndindex(output_shape):
        w = np.zeros(output_shape, dtype=dtype)
        w[index] = 1
        rows.append(np.concatenate([np.ravel(c) for c in rule.vjp(res, w)]))
    return np.stack(rows, axis=0)


class RuleImplementation:
    """An implementation backed by a table ``{problem name: Rule}`` on NumPy arrays.

    ``max_input_elements`` declines (NotImplementedError, an ``unsupported``
    outcome) inputs larger than the rules are meant for. Second-order cells
    (``hvp``, ``hessian``) are offered for rules that have them, under the one
    method ``second_order_method`` names (the table's own way, not a nesting of
    AD modes): ``"rule"`` for hand-written second-order rules, ``"materialised"``
    for a Hessian filled entry by entry.
    """

    name = "rules"
    rules: Mapping[str, Rule] = {}
    gradients: Mapping[str, Mapping[str, Callable[..., tuple]]] = {}
    hvps: Mapping[str, Mapping[str, Callable[..., tuple]]] = {}
    losses: Mapping[str, Callable[..., float]] = {}
    max_input_elements: int | None = None
    max_second_order_elements: int | None = None
    second_order_method: str = "rule"

    def devices(self) -> tuple[str, ...]:
        return ("cpu",)

    def supports(self, problem: str, op: str, method: str | None = None) -> bool:
        if op == "gradient":
            return method in self.gradients.get(problem, {})
        if op == "primal" and problem in self.losses:
            return True
        if op in SECOND_ORDER and problem in self.hvps:
            return op == "hvp" and method in self.hvps[problem]
        if op in SECOND_ORDER:
            return (problem in self.rules and self.rules[problem].second_order
                    and method == self.second_order_method)
        return problem in self.rules and op in _OPERATIONS

    def prepare(self, task: Task) -> Prepared:
        inputs = {k: np.asarray(v, dtype=task.dtype) for k, v in task.inputs.items()}
        if task.op == "gradient":
            gradient = self.gradients[task.problem][task.method]
            return Prepared(run=lambda: gradient(**inputs))
        if task.op == "primal" and task.problem in self.losses:
            loss = self.losses[task.problem]
            return Prepared(run=lambda: np.asarray(loss(**inputs)))
        if task.op == "hvp" and task.problem in self.hvps:
            hvp = self.hvps[task.problem][task.method]
            w = np.asarray(task.cotangent, dtype=task.dtype)
            (u,) = (np.asarray(task.tangent[n], dtype=task.dtype) for n in task.differentiable)
            return Prepared(run=lambda: hvp(inputs, w, u))
        rule = self.rules[task.problem]
        elements = sum(np.size(v) for v in task.inputs.values())
        if self.max_input_elements is not None and elements > self.max_input_elements:
            raise NotImplementedError(
                f"{self.name} declines inputs of {elements} elements (its limit is "
                f"{self.max_input_elements}): it materialises every Jacobian with loops")
        if (task.op in SECOND_ORDER and self.max_second_order_elements is not None
                and elements > self.max_second_order_elements):
            raise NotImplementedError(
                f"{self.name} declines second order on inputs of {elements} elements (its "
                f"limit is {self.max_second_order_elements}): it materialises the Hessian "
                "with loops")
        shapes = {n: inputs[n].shape for n in task.differentiable}
        return Prepared(run=_OPERATIONS[task.op](rule, inputs, shapes, task, np.dtype(task.dtype)))


def _primal(rule, args, shapes, task, dtype):
    return lambda: rule.primal(**args)


def _jvp(rule, args, shapes, task, dtype):
    tangent = [np.asarray(task.tangent[n], dtype=dtype) for n in task.differentiable]
    return lambda: rule.jvp(rule.forward(**args)[1], *tangent)


def _vjp(rule, args, shapes, task, dtype):
    cotangent = np.asarray(task.cotangent, dtype=dtype)
    return lambda: tuple(rule.vjp(rule.forward(**args)[1], cotangent))


def _jacfwd(rule, args, shapes, task, dtype):
    def run():
        res = rule.forward(**args)[1]
        if rule.jacobian is not None:
            return rule.jacobian(res)
        return jacobian_by_jvps(rule, res, shapes, dtype)
    return run


def _jacrev(rule, args, shapes, task, dtype):
    def run():
        y, res = rule.forward(**args)
        if rule.jacobian is not None:
            return rule.jacobian(res)
        return jacobian_by_vjps(rule, res, np.shape(y), dtype)
    return run


def materialised_rule(primal: Callable[..., Any], jacobian: Callable[..., tuple],
                      hessian: Callable[..., np.ndarray] | None = None) -> Rule:
    """A rule that first materialises the Jacobian, then multiplies.

    ``jacobian(**inputs)`` returns one block per differentiable input, of
    shape ``output.shape + input.shape``; the JVP is sum_i J_i u_i and the
    VJP is (w^T J_i)_i. ``hessian(w, **inputs)``, if given, materialises the
    (N, N) Hessian of <w, f> over the differentiable inputs.
    """
    def forward(**inputs):
        y = np.asarray(primal(**inputs))
        return y, (y.size, tuple(np.asarray(b) for b in jacobian(**inputs)))

    def jvp(res, *tangents):
        return sum(np.tensordot(b, t, axes=np.ndim(t)) for b, t in zip(res[1], tangents))

    def vjp(res, w):
        return tuple(np.tensordot(w, b, axes=np.ndim(w)) for b in res[1])

    def full(res):
        size, blocks = res
        return np.concatenate([b.reshape(size, -1) for b in blocks], axis=1)

    second = None if hessian is None else lambda inputs, w: hessian(w, **inputs)
    return Rule(primal=primal, forward=forward, jvp=jvp, vjp=vjp, jacobian=full, hessian=second)


def _batched_jacobian(rule, args, shapes, task, dtype):
    # Samples do not interact, so one tangent seeding feature j in every
    # sample at once yields column j of every sample's Jacobian.
    (shape,) = shapes.values()
    def run():
        res = rule.forward(**args)[1]
        columns = []
        for feature in np.ndindex(shape[:-1]):
            tangent = np.zeros(shape, dtype=dtype)
            tangent[feature] = 1
            dy = rule.jvp(res, tangent)
            columns.append(np.reshape(dy, (-1, shape[-1])))
        return np.stack(columns, axis=1)
    return run


def _concatenated(arrays) -> np.ndarray:
    return np.concatenate([np.ravel(a) for a in arrays])


def _split(flat: np.ndarray, shapes: Mapping[str, tuple]) -> tuple:
    """A flat vector back into one array per differentiable input."""
    sizes = [int(np.prod(s)) for s in shapes.values()]
    parts = np.split(flat, np.cumsum(sizes)[:-1])
    return tuple(p.reshape(s) for p, s in zip(parts, shapes.values()))


def hessian_by_hvps(rule: Rule, inputs: dict, w, shapes: Mapping[str, tuple], dtype) -> np.ndarray:
    columns = [_concatenated(rule.hvp(inputs, w, *u)) for u in unit_directions(shapes, dtype)]
    return np.stack(columns, axis=1)


def _hvp(rule, args, shapes, task, dtype):
    w = np.asarray(task.cotangent, dtype=dtype)
    u = [np.asarray(task.tangent[n], dtype=dtype) for n in task.differentiable]
    if rule.hvp is not None:
        return lambda: tuple(rule.hvp(args, w, *u))
    return lambda: _split(rule.hessian(args, w) @ _concatenated(u), shapes)


def _hessian(rule, args, shapes, task, dtype):
    w = np.asarray(task.cotangent, dtype=dtype)
    if rule.hessian is not None:
        return lambda: rule.hessian(args, w)
    return lambda: hessian_by_hvps(rule, args, w, shapes, dtype)


_OPERATIONS = {"primal": _primal, "jvp": _jvp, "vjp": _vjp, "jacfwd": _jacfwd, "jacrev": _jacrev,
               "batched_jacobian": _batched_jacobian, "hvp": _hvp, "hessian": _hessian}
