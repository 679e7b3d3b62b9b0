"""Shared glue for implementations that use a framework's own AD.

A :class:`Framework` says how to move arrays, compile and wait, and which AD
transforms to call (JAX's and torch.func's share their signatures, so the
products are written once here); :class:`AutodiffImplementation` turns every
operation of every primal, and the gradient of every sensitivity loss, into
a prepared, compiled callable the same way for all of them. The
implicit-function rule is written once here too (``implicit_tangent`` and
``implicit_cotangents``); each framework only registers it with its own
custom-rule mechanism.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from adjointbench.names import UnknownNameError, closest

from adjointbench.impls.protocol import NESTINGS, OPERATIONS, SECOND_ORDER, Prepared, Task
from adjointbench.impls.rules import unit_directions


# How a result the framework cannot differentiate again is refused (impls/torch's
# torch.autograd.grad adapter, adjointbench/testing's transposed JVPs)
CANNOT_DIFFERENTIATE_AGAIN = "this result cannot be differentiated again"
MAX_FORWARD_OVER_FORWARD = 4096  # input entries: beyond, N JVPs of JVPs per product
SENSITIVITY_NESTING = "forward_over_reverse"  # H u of a loss J: the JVP of its gradient


class Framework:
    """One AD framework: array handling, plus the transforms ``_jvp``,
    ``_vjp``, ``_jacfwd``, ``_jacrev`` with JAX's signatures (torch.func has
    the same). Subclasses live in impls/jax and impls/torch, one module each,
    which also serve the helper API (impls/backends.py)."""

    name: str
    xp: Any  # the namespace the traceable primals are written against
    _jvp: Callable
    _vjp: Callable
    _jacfwd: Callable
    _jacrev: Callable

    def devices(self) -> tuple[str, ...]: ...
    def prepare_process(self) -> None:
        """Settings the harness's worker needs (JAX: float64); never called by the helpers."""
    def put(self, array: np.ndarray, dtype: str, device: str) -> Any: ...
    def asarray(self, x: Any, dtype: Any = None) -> Any: ...
    def compile(self, f: Callable) -> Callable: ...
    def wait(self, result: Any) -> None: ...
    def to_numpy(self, x: Any) -> np.ndarray: ...
    def vmap(self, g: Callable, in_axis: int, out_axis: int) -> Callable: ...
    def expand(self, x: Any, axis: int) -> Any: ...
    def select(self, y: Any, axis: int, index: int) -> Any: ...
    def is_zero(self, y: Any) -> bool: ...

    def rules_lost_by(self, nesting: str, f: Callable, primals: tuple) -> list[str]:
        """What ``f`` calls at ``primals`` (a custom rule, or one of the
        framework's own) that this framework differentiates wrong, without an
        error, under ``nesting``, named (none here)."""
        return []

    def jvp(self, f, primals: tuple, tangents: tuple):
        return self._jvp(f, primals, tangents)[1]

    def vjp(self, f, primals: tuple, cotangent) -> tuple:
        return self._vjp(f, *primals)[1](cotangent)

    def jacfwd(self, f, primals: tuple) -> tuple:
        return self._jacfwd(f, argnums=tuple(range(len(primals))))(*primals)

    def jacrev(self, f, primals: tuple) -> tuple:
        return self._jacrev(f, argnums=tuple(range(len(primals))))(*primals)

    def hvp(self, f, primals: tuple, cotangent, tangents: tuple, nesting: str) -> tuple:
        """The Hessian of <w, f> applied to u, one array per primal, by one of
        NESTINGS: the outer mode differentiates the inner one.

        forward_over_reverse: the JVP of the gradient (Pearlmutter);
        reverse_over_forward: the gradient of <w, J u>;
        reverse_over_reverse: the VJP of the gradient, with u as its cotangent;
        forward_over_forward: the gradient of <w, J u> by forward mode, one
        JVP of the JVP per input entry (it materialises, hence its cost).
        """
        w, u = cotangent, tuple(tangents)
        gradient = lambda *p: tuple(self.vjp(f, p, w))

        def directional(*p):  # <w, J u>, w and u lifted to the outer forward mode (xp.lift)
            lifted_w, *lifted_u = self.xp.lift((w, *u), p)
            return self.xp.sum(lifted_w * self.jvp(f, p, tuple(lifted_u)))
        if nesting == "forward_over_reverse":  # w lifted to the outer forward mode too
            lifted = lambda *p: tuple(self.vjp(f, p, self.xp.lift((w,), p)[0]))
            return tuple(self.jvp(lifted, primals, u))
        if nesting == "reverse_over_forward":
            return tuple(self.vjp(lambda *p: self.jvp(f, p, u), primals, w))
        if nesting == "reverse_over_reverse":
            return tuple(self.vjp(gradient, primals, u))
        if nesting == "forward_over_forward":
            return tuple(self.jacfwd(directional, primals))
        raise UnknownNameError(f"unknown nesting {nesting!r}.{closest(nesting, NESTINGS)}")

    def jacobian(self, mode: str) -> Callable:
        """g -> (x -> dg/dx), in ``"forward"`` or ``"reverse"`` mode."""
        return self._jacfwd if mode == "forward" else self._jacrev

    def vmap_jacobian(self, g, x):
        """The forward-mode Jacobian of g mapped over the last axis of x."""
        return self.vmap(self._jacfwd(g), -1, -1)(x)


# --- the implicit-function rule, once: x(theta) solves r(x, theta) = 0 ---

def _drdx(fw: Framework, residual, x, params):
    size = int(np.prod(x.shape))
    return fw.jacfwd(lambda y: residual(y, *params), (x,))[0].reshape(size, size)


def implicit_tangent(fw: Framework, residual, x, params: tuple, tangents: tuple):
    """dx = -(dr/dx)^-1 (dr/dtheta dtheta)  (the implicit function theorem)."""
    dr = fw.jvp(lambda *p: residual(x, *p), tuple(params), tuple(tangents))
    return -fw.xp.solve(_drdx(fw, residual, x, params), dr.reshape(-1)).reshape(x.shape)


def implicit_cotangents(fw: Framework, residual, x, params: tuple, x_bar) -> tuple:
    """theta_bar = -(dr/dtheta)^T lam, where (dr/dx)^T lam = x_bar  (its transpose)."""
    lam = fw.xp.solve(_drdx(fw, residual, x, params).T, x_bar.reshape(-1)).reshape(x.shape)
    return tuple(-g for g in fw.vjp(lambda *p: residual(x, *p), tuple(params), lam))


def _flatten_blocks(blocks, first_input_size: int) -> np.ndarray:
    """Blocks of shape output.shape + input_i.shape -> one (m, N) matrix."""
    output_size = np.size(blocks[0]) // first_input_size
    return np.concatenate([np.reshape(b, (output_size, -1)) for b in blocks], axis=1)


class AutodiffImplementation:
    """Every operation of ``primals`` (``{name: f(xp, **inputs)}``) and the
    gradient of ``losses`` (``{problem: {method: J(xp, **inputs)}}``) through
    ``framework``'s AD."""

    def __init__(self, name: str, framework: Framework, primals: Mapping[str, Callable],
                 reverse_only: frozenset[str] = frozenset(),
                 losses: Mapping[str, Mapping[str, Callable]] | None = None):
        self.name, self.framework, self.primals = name, framework, primals
        self.reverse_only = reverse_only  # problems whose custom rule has no forward mode
        self.losses = losses or {}
        self._cache: dict[tuple, Callable] = {}  # (problem, op, method, names) -> compiled

    def devices(self) -> tuple[str, ...]:
        return self.framework.devices()

    def supports(self, problem: str, op: str, method: str | None = None) -> bool:
        if op == "gradient":
            return method in self.losses.get(problem, {})
        if op == "primal" and problem in self.losses:  # J, as the gradient's method computes it
            return method in self.losses[problem]
        if op in SECOND_ORDER and problem in self.losses:  # H u of J, through the solver
            return op == "hvp" and method in self.losses[problem]
        if op in SECOND_ORDER:  # a custom rule without forward mode nests reverse only
            return (problem in self.primals and method in NESTINGS
                    and (problem not in self.reverse_only or method == "reverse_over_reverse"))
        forward = op in ("jvp", "jacfwd")
        return (problem in self.primals and op in OPERATIONS
                and not (forward and problem in self.reverse_only))

    def prepare(self, task: Task) -> Prepared:
        fw = self.framework
        fw.prepare_process()
        put = lambda a: fw.put(a, task.dtype, task.device)
        static = {k: put(v) for k, v in task.inputs.items() if k not in task.differentiable}
        primals = tuple(put(task.inputs[n]) for n in task.differentiable)
        run = self._compiled(task.problem, task.op, task.method, task.differentiable)
        if task.op == "primal":
            return Prepared(lambda: run(static, primals), fw.to_numpy, fw.wait)
        if task.op == "jvp":
            tangents = tuple(put(task.tangent[n]) for n in task.differentiable)
            return Prepared(lambda: run(static, primals, tangents), fw.to_numpy, fw.wait)
        if task.op in ("vjp", "gradient"):
            w = put(task.cotangent if task.op == "vjp" else np.array(1.0))
            return Prepared(lambda: run(static, primals, w),
                            lambda r: tuple(fw.to_numpy(x) for x in r), fw.wait)
        if task.op == "batched_jacobian":
            return self.prepare_batched_jacobian(run, static, primals[0])
        if task.op in SECOND_ORDER:
            return self._prepare_second_order(task, run, static, primals, put)
        first_size = np.size(task.inputs[task.differentiable[0]])
        return Prepared(lambda: run(static, primals),
                        lambda r: _flatten_blocks([fw.to_numpy(x) for x in r], first_size),
                        fw.wait)

    def _compiled(self, problem: str, op: str, method: str | None,
                  names: tuple[str, ...]) -> Callable:
        """The compiled operation ``run(static, primals, ...)``, built once per
        problem and operation: later cells of any size reuse it (JAX retraces
        only for new shapes and dtypes). A gradient is the VJP of the loss, a
        loss's HVP the JVP of that (its method names the loss). A Hessian is
        one HVP per unit direction: the hvp cells' own compiled operation."""
        op = "hvp" if op == "hessian" else op
        key = (problem, op, method, names)
        if key not in self._cache:
            of_loss = op == "gradient" or problem in self.losses
            primal = self.losses[problem][method] if of_loss else self.primals[problem]
            xp = self.framework.xp

            def f(static, *diff):
                return primal(xp, **dict(zip(names, diff)), **static)
            operation = self.operation("vjp" if op == "gradient" else op, f,
                                       SENSITIVITY_NESTING if of_loss else method)
            self._cache[key] = self.framework.compile(operation)
        return self._cache[key]

    def _prepare_second_order(self, task: Task, run: Callable, static: dict, primals: tuple,
                              put: Callable) -> Prepared:
        """hvp: H u per input; hessian: (N, N), one compiled HVP per unit direction."""
        fw = self.framework
        entries = sum(int(np.size(task.inputs[n])) for n in task.differentiable)
        if task.method == "forward_over_forward" and entries > MAX_FORWARD_OVER_FORWARD:
            raise NotImplementedError(
                f"forward-over-forward takes one JVP of a JVP per input entry: {entries} "
                f"entries here, run up to {MAX_FORWARD_OVER_FORWARD}")
        w = put(task.cotangent)
        to_tuple = lambda r: tuple(fw.to_numpy(x) for x in r)
        if task.op == "hvp":
            u = tuple(put(task.tangent[n]) for n in task.differentiable)
            return Prepared(lambda: run(static, primals, u, w), to_tuple, fw.wait)
        shapes = {n: np.shape(task.inputs[n]) for n in task.differentiable}
        units = [tuple(put(t) for t in unit) for unit in unit_directions(shapes, np.float64)]
        return Prepared(lambda: [run(static, primals, u, w) for u in units],
                        lambda columns: np.stack([np.concatenate(
                            [np.ravel(fw.to_numpy(x)) for x in c]) for c in columns], axis=1),
                        fw.wait)

    def operation(self, op: str, f: Callable, method: str | None = None) -> Callable:
        """``op`` of ``f(static, *differentiable)`` through the framework's AD
        (``method``: a second-order operation's nesting)."""
        fw = self.framework
        bind = lambda s: (lambda *d: f(s, *d))
        if op == "primal":
            return lambda s, p: f(s, *p)
        if op == "jvp":
            return lambda s, p, t: fw.jvp(bind(s), p, t)
        if op == "vjp":
            return lambda s, p, w: tuple(fw.vjp(bind(s), p, w))
        if op == "batched_jacobian":
            return lambda s, x: fw.vmap_jacobian(_one_sample(bind(s)), x)
        if op in SECOND_ORDER:
            return lambda s, p, u, w: fw.hvp(bind(s), p, w, u, method)
        transform = fw.jacfwd if op == "jacfwd" else fw.jacrev
        return lambda s, p: tuple(transform(bind(s), p))

    def prepare_batched_jacobian(self, run: Callable, static: dict, x) -> Prepared:
        """vmap of the per-sample forward-mode Jacobian over the batch (last) axis."""
        fw = self.framework
        features, batch = int(np.prod(np.shape(x)[:-1])), np.shape(x)[-1]
        return Prepared(lambda: run(static, x),
                        lambda r: np.reshape(fw.to_numpy(r), (-1, features, batch)), fw.wait)


def _one_sample(f: Callable) -> Callable:
    """f on one column x_s (features only) of a batch, via a batch of one."""
    return lambda xs: f(xs[..., None])[..., 0]


class PerSampleLoopImplementation(AutodiffImplementation):
    """Batched Jacobians by a Python loop that calls one compiled per-sample
    Jacobian for each sample: the baseline vmap is measured against. Offers
    the batched problems' primal and batched_jacobian only."""

    LOOP_OPS = ("primal", "batched_jacobian")
    MAX_BATCH = 256

    def supports(self, problem: str, op: str, method: str | None = None) -> bool:
        return problem in self.primals and op in self.LOOP_OPS

    def operation(self, op: str, f: Callable, method: str | None = None) -> Callable:
        if op != "batched_jacobian":
            return super().operation(op, f, method)
        fw = self.framework
        return lambda s, xs: fw.jacfwd(_one_sample(lambda x: f(s, x)), (xs,))[0]

    def prepare_batched_jacobian(self, run: Callable, static: dict, x) -> Prepared:
        fw = self.framework
        if np.shape(x)[-1] > self.MAX_BATCH:
            raise NotImplementedError(f"{self.name}, the per-sample loop baseline, runs up to "
                                      f"B = {self.MAX_BATCH}; vmap is the way past it")
        features = int(np.prod(np.shape(x)[:-1]))
        samples = [x[..., s] for s in range(np.shape(x)[-1])]  # sliced outside the timed region

        def to_numpy(blocks):
            return np.stack([np.reshape(fw.to_numpy(J), (-1, features)) for J in blocks], axis=-1)
        return Prepared(lambda: [run(static, s) for s in samples], to_numpy, fw.wait)


def per_sample_loop_implementation(name: str, framework: Framework) -> AutodiffImplementation:
    """The framework's AD on the batched problems, one sample at a time."""
    from adjointbench.impls.traceable.batched import PRIMALS

    return PerSampleLoopImplementation(name, framework, PRIMALS)


def custom_rule_primals(wrap: Callable, rules: Mapping) -> dict:
    """Primals whose derivatives come from a hand-written rule instead of AD.

    ``rules`` maps a problem to ``(f(xp, **inputs), rule(xp, *leading, **inputs))``;
    ``wrap(f, rule)`` is the framework's own wrapper (jax.custom_jvp,
    jax.custom_vjp, torch.autograd.Function), called with both taking their
    inputs positionally: ``f(*inputs)`` and ``rule(*leading, *inputs)``.
    """
    def primal(f, rule):
        def wrapped_primal(xp, **inputs):
            names, count = tuple(inputs), len(inputs)
            named = lambda values: dict(zip(names, values))
            wrapped = wrap(lambda *v: f(xp, **named(v)),
                           lambda *a: rule(xp, *a[:len(a) - count], **named(a[len(a) - count:])))
            return wrapped(*inputs.values())
        return wrapped_primal

    return {name: primal(*pair) for name, pair in rules.items()}


def unrolled_implementation(name: str, framework: Framework) -> AutodiffImplementation:
    """The framework's AD straight through every primal and every solver."""
    from adjointbench.impls.traceable import LOSSES, PRIMALS

    losses = {problem: {"unrolled": loss} for problem, loss in LOSSES.items()}
    return AutodiffImplementation(name, framework, PRIMALS, losses=losses)


def _rule_loss(wrap, solve, rule, objective):
    """J(theta) = objective(x(theta), theta), with x's derivative from ``rule``;
    the problem's fixed data are closed over (constants for the rule)."""
    def loss(xp, theta, **data):
        solution = wrap(lambda th: solve(xp, th, **data), lambda *a: rule(xp, *a, **data))
        return objective(xp, solution(theta), theta, **data)
    return loss


def custom_rule_implementation(name: str, framework: Framework, implicit_solution: Callable,
                               adjoint_solution: Callable) -> AutodiffImplementation:
    """The framework's AD with hand-written rules for the solvers: implicit-
    function rules for the root finders, the continuous adjoint for the ODE."""
    from adjointbench.impls.traceable import ADJOINT, ADJOINTS, IMPLICIT, RESIDUALS

    primals = {**custom_rule_primals(implicit_solution, RESIDUALS),
               **custom_rule_primals(adjoint_solution, ADJOINTS)}
    losses = {**{p: {"implicit": _rule_loss(implicit_solution, *parts)}
                 for p, parts in IMPLICIT.items()},
              **{p: {"adjoint": _rule_loss(adjoint_solution, *parts)}
                 for p, parts in ADJOINT.items()}}
    return AutodiffImplementation(name, framework, primals, reverse_only=frozenset(ADJOINTS),
                                  losses=losses)
