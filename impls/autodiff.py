"""Shared glue for implementations that use a framework's own AD.

A :class:`Framework` says how to move arrays, compile, wait, and which AD
transforms to call; :class:`AutodiffImplementation` turns every operation of
every primal into a prepared, compiled callable the same way for all of them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from adjointbench.impls.protocol import OPERATIONS, Prepared, Task


class Framework:
    """What an AD framework must provide; see impls/jax and impls/torch."""

    name: str
    xp: Any  # the namespace the traceable primals are written against

    def devices(self) -> tuple[str, ...]: ...
    def put(self, array: np.ndarray, dtype: str, device: str) -> Any: ...
    def compile(self, f: Callable) -> Callable: ...
    def wait(self, result: Any) -> None: ...
    def to_numpy(self, x: Any) -> np.ndarray: ...
    def jvp(self, f, primals: tuple, tangents: tuple): ...
    def vjp(self, f, primals: tuple, cotangent): ...
    def jacfwd(self, f, primals: tuple) -> tuple: ...
    def jacrev(self, f, primals: tuple) -> tuple: ...
    def vmap_jacobian(self, g, x):
        """The forward-mode Jacobian of g mapped over the last axis of x."""


def _flatten_blocks(blocks, first_input_size: int) -> np.ndarray:
    """Blocks of shape output.shape + input_i.shape -> one (m, N) matrix."""
    output_size = np.size(blocks[0]) // first_input_size
    return np.concatenate([np.reshape(b, (output_size, -1)) for b in blocks], axis=1)


class AutodiffImplementation:
    """Every operation of ``primals`` (``{name: f(xp, **inputs)}``) through
    ``framework``'s AD."""

    def __init__(self, name: str, framework: Framework, primals: Mapping[str, Callable],
                 reverse_only: frozenset[str] = frozenset(),
                 losses: Mapping[str, Mapping[str, Callable]] | None = None):
        self.name, self.framework, self.primals = name, framework, primals
        self.reverse_only = reverse_only  # problems whose custom rule has no forward mode
        self.losses = losses or {}  # sensitivity problem -> {method: J(xp, theta)}
        self._cache: dict[tuple, Callable] = {}  # (problem, op, names) -> compiled operation

    def gradient_methods(self, problem: str) -> tuple[str, ...]:
        return tuple(self.losses.get(problem, ()))

    def prepare_unrolling(self, theta: np.ndarray, device: str = "cpu") -> Prepared:
        """dx_t/dtheta of unrolled_gd for every iterate t, by forward mode."""
        from adjointbench.impls.traceable.sensitivity import gd_trajectory

        fw = self.framework
        theta = fw.put(theta, "float64", device)
        run = fw.compile(lambda th: fw.jacfwd(lambda t: gd_trajectory(fw.xp, t), (th,))[0])
        return Prepared(lambda: run(theta), lambda r: fw.to_numpy(r).ravel(), fw.wait)

    def prepare_gradient(self, problem: str, method: str, theta: np.ndarray,
                         device: str = "cpu") -> Prepared:
        fw, loss = self.framework, self.losses[problem][method]
        theta, one = fw.put(theta, "float64", device), fw.put(np.array(1.0), "float64", device)
        run = fw.compile(lambda th, w: fw.vjp(lambda t: loss(fw.xp, t), (th,), w)[0])
        return Prepared(lambda: run(theta, one), fw.to_numpy, fw.wait)

    def devices(self) -> tuple[str, ...]:
        return self.framework.devices()

    def supports(self, problem: str, op: str) -> bool:
        forward = op in ("jvp", "jacfwd")
        return (problem in self.primals and op in OPERATIONS
                and not (forward and problem in self.reverse_only))

    def prepare(self, task: Task) -> Prepared:
        fw = self.framework
        put = lambda a: fw.put(a, task.dtype, task.device)
        static = {k: put(v) for k, v in task.inputs.items() if k not in task.differentiable}
        primals = tuple(put(task.inputs[n]) for n in task.differentiable)
        run = self._compiled(task.problem, task.op, task.differentiable)
        if task.op == "primal":
            return Prepared(lambda: run(static, primals), fw.to_numpy, fw.wait)
        if task.op == "jvp":
            tangents = tuple(put(task.tangent[n]) for n in task.differentiable)
            return Prepared(lambda: run(static, primals, tangents), fw.to_numpy, fw.wait)
        if task.op == "vjp":
            w = put(task.cotangent)
            return Prepared(lambda: run(static, primals, w),
                            lambda r: tuple(fw.to_numpy(x) for x in r), fw.wait)
        if task.op == "batched_jacobian":
            return self.prepare_batched_jacobian(run, static, primals[0])
        first_size = np.size(task.inputs[task.differentiable[0]])
        return Prepared(lambda: run(static, primals),
                        lambda r: _flatten_blocks([fw.to_numpy(x) for x in r], first_size),
                        fw.wait)

    def _compiled(self, problem: str, op: str, names: tuple[str, ...]) -> Callable:
        """The compiled operation ``run(static, primals, ...)``, built once per
        problem and operation: later cells of any size reuse it (JAX retraces
        only for new shapes and dtypes)."""
        key = (problem, op, names)
        if key not in self._cache:
            primal = self.primals[problem]
            xp = self.framework.xp

            def f(static, *diff):
                return primal(xp, **dict(zip(names, diff)), **static)
            self._cache[key] = self.framework.compile(self.operation(op, f))
        return self._cache[key]

    def operation(self, op: str, f: Callable) -> Callable:
        """``op`` of ``f(static, *differentiable)`` through the framework's AD."""
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

    def supports(self, problem: str, op: str) -> bool:
        return problem in self.primals and op in self.LOOP_OPS

    def operation(self, op: str, f: Callable) -> Callable:
        if op != "batched_jacobian":
            return super().operation(op, f)
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


def custom_rule_primals(xp, wrap: Callable, rules: Mapping) -> dict:
    """Primals whose derivatives come from a hand-written rule instead of AD.

    ``rules`` maps a problem to ``(f(xp, **inputs), rule(xp, *leading, **inputs))``;
    ``wrap(f, rule)`` is the framework's own wrapper (jax.custom_jvp,
    jax.custom_vjp, torch.autograd.Function), called with both taking their
    inputs positionally: ``f(*inputs)`` and ``rule(*leading, *inputs)``.
    """
    def primal(f, rule):
        def wrapped_primal(_xp, **inputs):
            names, count = tuple(inputs), len(inputs)
            named = lambda values: dict(zip(names, values))
            wrapped = wrap(lambda *v: f(xp, **named(v)),
                           lambda *a: rule(xp, *a[:len(a) - count], **named(a[len(a) - count:])))
            return wrapped(*inputs.values())
        return wrapped_primal

    return {name: primal(*pair) for name, pair in rules.items()}


def unrolled_implementation(name: str, framework: Framework) -> AutodiffImplementation:
    """The framework's AD straight through every primal and every solver."""
    from adjointbench.impls.traceable import PRIMALS
    from adjointbench.impls.traceable.sensitivity import LOSSES

    losses = {problem: {"unrolled": loss} for problem, loss in LOSSES.items()}
    return AutodiffImplementation(name, framework, PRIMALS, losses=losses)


def _rule_loss(wrap, solve, rule, objective):
    def loss(xp, theta):
        solution = wrap(lambda th: solve(xp, th), lambda *a: rule(xp, *a))
        return objective(xp, solution(theta), theta)
    return loss


def custom_rule_implementation(name: str, framework: Framework, implicit_solution: Callable,
                               adjoint_solution: Callable) -> AutodiffImplementation:
    """The framework's AD with hand-written rules for the solvers: implicit-
    function rules for the root finders, the continuous adjoint for the ODE."""
    from adjointbench.impls.traceable.implicit import RESIDUALS
    from adjointbench.impls.traceable.ode import ADJOINTS
    from adjointbench.impls.traceable.sensitivity import ADJOINT, IMPLICIT

    primals = {**custom_rule_primals(framework.xp, implicit_solution, RESIDUALS),
               **custom_rule_primals(framework.xp, adjoint_solution, ADJOINTS)}
    losses = {**{p: {"implicit": _rule_loss(implicit_solution, *parts)}
                 for p, parts in IMPLICIT.items()},
              **{p: {"adjoint": _rule_loss(adjoint_solution, *parts)}
                 for p, parts in ADJOINT.items()}}
    return AutodiffImplementation(name, framework, primals, reverse_only=frozenset(ADJOINTS),
                                  losses=losses)
