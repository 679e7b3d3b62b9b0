"""PyTorch, in one module: the array namespace of the traceable primals, the
framework adapter (torch.func jvp, vjp, jacfwd, jacrev, eager) that serves
the harness and the helper API, and the implementations built on it.

``torch._dynamo`` is imported with torch: torch.func's forward mode imports
it (and sympy with it, 772 modules, 1.0-1.1 s) on the first call that meets
a tensor without a tangent (``torch._compile._disable_dynamo``), and its JVP
decompositions (0.1 s) on the first forward-mode call at all, which in a
fresh worker was the first forward-mode cell's ``compile_s``: torch's
batched_dense JVP at n = 1 reported 1.02 s of compilation, against 0.002 s
when it is not the worker's first. Loaded here, it is paid while the
workers start side by side, and no cell's figures carry it."""

import functools
import itertools
from types import SimpleNamespace

import numpy as np
import torch
import torch._decomp.decompositions_for_jvp  # noqa: F401 - here, not in the first
import torch._dynamo  # noqa: F401 - timed call (see above)
import torch.func

from adjointbench.impls.autodiff import (CANNOT_DIFFERENTIATE_AGAIN, Framework,
                                         custom_rule_implementation,
                                         per_sample_loop_implementation, unrolled_implementation)

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _fori(n, body, init):
    carry = init
    for _ in range(n):
        carry = body(carry)
    return carry


def _iterates(n, body, init):
    """init and its n successors under body, stacked."""
    states = [init]
    for _ in range(n):
        states.append(body(states[-1]))
    return torch.stack(states)


def _lift(constants: tuple, like: tuple) -> tuple:
    """Each floating constant plus an exact 0-d zero computed from ``like[0]``
    (whatever ``like`` holds; the constant keeps its dtype and values): the
    zero carries every transform level ``like[0]`` has, with a dense zero
    tangent. Left alone, torch 2.13 gives a constant a ZeroTensor tangent at
    each forward level, and every operation that touches one runs a Python
    meta kernel (0.15-0.35 ms). The lift itself costs about 0.4 ms, so the
    primals lift before a loop: a forward-over-forward HVP of a hand-written
    copy of gd_trajectory's 1000 steps took 2.7 s, 0.18 s with its constants
    and the inner tangent lifted. ``mul.Scalar``
    takes 0.0 as a scalar, for the same reason (``* 0.0`` would make one
    more ZeroTensor)."""
    first = torch.nan_to_num(like[0].reshape(-1)[:1].sum(), 0.0, 0.0, 0.0)
    zero = torch.ops.aten.mul.Scalar(first, 0.0)
    return tuple(c + zero if c.is_floating_point() else c for c in constants)


XP = SimpleNamespace(exp=torch.exp, sin=torch.sin, tanh=torch.tanh, sum=torch.sum, max=torch.max,
                     abs=torch.abs, sign=torch.sign, minimum=torch.minimum, diag=torch.diag,
                     solve=torch.linalg.solve, fori=_fori, iterates=_iterates,
                     sqrt=torch.sqrt, cos=torch.cos, stack=torch.stack, concat=torch.cat,
                     axpy=lambda a, x, y: torch.add(y, x, alpha=a), lift=_lift,
                     scale=lambda a, x: torch.ops.aten.mul.Scalar(x, a),
                     const=lambda a, like: torch.as_tensor(a, dtype=like.dtype, device=like.device),
                     column_max=lambda x: torch.amax(x, dim=0, keepdim=True),
                     column_sum=lambda x: torch.sum(x, dim=0, keepdim=True))


class TorchFramework(Framework):
    name = "torch"
    xp = XP
    _jvp, _vjp, _jacfwd, _jacrev = (staticmethod(torch.func.jvp), staticmethod(torch.func.vjp),
                                    staticmethod(torch.func.jacfwd),
                                    staticmethod(torch.func.jacrev))

    def devices(self):
        return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)

    def prepare_process(self):
        pass

    def put(self, array, dtype, device):
        return torch.as_tensor(np.asarray(array), dtype=DTYPES[dtype], device=device)

    def asarray(self, x, dtype=None):
        if isinstance(x, torch.Tensor):
            return x if dtype is None else x.to(dtype)
        return torch.as_tensor(np.asarray(x), dtype=dtype)

    def compile(self, f):
        return f  # eager: nothing to compile, nothing timed by accident

    def wait(self, result):
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def to_numpy(self, x):
        return x.detach().cpu().numpy()

    def vmap(self, g, in_axis, out_axis):
        return torch.func.vmap(g, in_dims=in_axis, out_dims=out_axis)

    def expand(self, x, axis):
        return torch.unsqueeze(x, axis)

    def select(self, y, axis, index):
        return torch.select(y, axis, index)

    def is_zero(self, y):
        return bool(torch.all(y == 0))

    def rules_lost_by(self, nesting, f, primals):
        """What ``f`` calls that this torch differentiates wrong under
        ``nesting``, without an error (``_LOST_RULES``), named."""
        lost = [(finds, name) for nestings, finds, name, still_lost in _LOST_RULES
                if nesting in nestings and still_lost()]
        nodes = _graph_nodes(f, primals) if lost else []
        return [f"{name} {found}" for finds, name in lost for found in finds(nodes)]


def _graph_nodes(f, primals) -> list:
    """Every node of f's autograd graph at ``primals`` (none where f cannot
    run on inputs that require grad: its own failure is the checks' to tell)."""
    try:
        with torch.enable_grad():
            y = f(*(p.detach().requires_grad_(p.is_floating_point()) for p in primals))
    except Exception:  # noqa: BLE001
        return []
    todo, seen, nodes = [getattr(y, "grad_fn", None)], set(), []
    while todo:
        node = todo.pop()
        if node is not None and id(node) not in seen:
            seen.add(id(node))
            nodes.append(node)
            todo.extend(next_node for next_node, _ in node.next_functions)
    return nodes


def _functions_in(nodes) -> list[str]:
    return sorted({type(n).__name__.removesuffix("Backward") for n in nodes
                   if isinstance(n, torch.autograd.function.BackwardCFunction)})


# The code of every @once_differentiable backward: the decorator's wrapper
_ONCE_DIFFERENTIABLE = torch.autograd.function.once_differentiable(lambda ctx: None).__code__


def _once_differentiable_in(nodes) -> list[str]:
    """The autograd.Functions among ``nodes`` whose backward is marked
    @once_differentiable: torch differentiates their VJP as 0, without an
    error (the mark's error node leads to no input asked for)."""
    return sorted({f"{type(n).__name__.removesuffix('Backward')} (its backward "
                   "@once_differentiable)" for n in nodes
                   if isinstance(n, torch.autograd.function.BackwardCFunction)
                   and getattr(n._forward_cls.backward, "__code__", None) is _ONCE_DIFFERENTIABLE})


def _solves_in_their_matrix(nodes) -> list[str]:
    """``(its matrix depends on x)`` where a linalg.solve's matrix is in the graph."""
    solves = [n for n in nodes if type(n).__name__.startswith("LinalgSolve")]
    return ["(its matrix depends on x)"] if any(n.next_functions[0][0] for n in solves) else []


@functools.cache
def _loses_function_jvps() -> bool:
    """Whether this torch's JVP of a JVP through a Function's own jvp drops
    the outer tangent: asked of x^3 at 2 (12 is right; torch 2.13 gives 0)."""
    x, t = torch.tensor([2.0], dtype=torch.float64), torch.ones(1, dtype=torch.float64)
    inner = lambda y: torch.func.jvp(Cube.apply, (y,), (t,))[1]  # noqa: E731
    return torch.func.jvp(inner, (x,), (t,))[1].item() != 12.0


@functools.cache
def _loses_solves_in_their_matrix() -> bool:
    """Whether this torch's forward rule of linalg.solve is not differentiable
    in the matrix: d/da of the JVP of solve(a I, 1) in a (at a = 2, da = 1: the
    JVP is -da / a^2, its derivative 2 / a^3 = 0.25; torch 2.13 gives 0.125)."""
    one = torch.ones(1, 1, dtype=torch.float64)
    jvp_in_a = lambda a: torch.func.jvp(torch.linalg.solve, (a * one, one[0]),  # noqa: E731
                                        (one, 0 * one[0]))[1].sum()
    return abs(torch.func.grad(jvp_in_a)(torch.tensor(2.0, dtype=torch.float64)).item()
               - 0.25) > 1e-12


class Cube(torch.autograd.Function):
    """x^3 with its own jvp and backward: the probe of ``_loses_function_jvps``
    (and the tests' Function)."""
    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return x ** 3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_forward(*inputs)
        ctx.save_for_backward(*inputs)

    @staticmethod
    def jvp(ctx, t):
        x, = ctx.saved_tensors
        return 3 * x ** 2 * t

    @staticmethod
    def backward(ctx, g):
        x, = ctx.saved_tensors
        return 3 * x ** 2 * g


def _autograd_vjp(f, *primals):
    """torch.func.vjp's signature through torch.autograd.grad: the graph kept
    (``create_graph``), so that the pullback can itself be differentiated,
    as the transposed JVP and reverse-over-reverse do. A primal already in
    an outer graph is kept as it is, so that the outer pass reaches it."""
    with torch.enable_grad():
        xs = tuple(p if p.requires_grad else p.detach().requires_grad_(True) for p in primals)
        y = f(*xs)

    def pullback(cotangent):
        outputs = y if isinstance(y, (tuple, list)) else (y,)
        weights = cotangent if isinstance(cotangent, (tuple, list)) else (cotangent,)
        pairs = [(o, w) for o, w in zip(outputs, weights) if o.requires_grad]
        _refuse_undifferentiable([o for o, _ in pairs])
        with torch.enable_grad():
            grads = torch.autograd.grad([o for o, _ in pairs], xs, [w for _, w in pairs],
                                        create_graph=True, allow_unused=True) if pairs else ()
        return tuple(torch.zeros_like(x) if g is None else g
                     for x, g in itertools.zip_longest(xs, grads))
    return y, pullback


# Nodes torch puts on a result it cannot differentiate, which raise when run:
# but torch.autograd.grad skips them where they lead to no input asked for, and
# allow_unused then gave zeros: a @once_differentiable backward's transposed
# JVP came out 0, a wrong rule's verdict for a right one
UNDIFFERENTIABLE = ("torch::autograd::Error", "torch::autograd::NotImplemented")


def _refuse_undifferentiable(outputs) -> None:
    for output in outputs:
        if output.grad_fn is not None and output.grad_fn.name() in UNDIFFERENTIABLE:
            raise RuntimeError(f"{CANNOT_DIFFERENTIATE_AGAIN}: a backward marked "
                               "@once_differentiable (or one torch cannot differentiate) made "
                               "it, so no JVP by transposing its VJP, nor second derivatives")


class TorchAutogradFramework(TorchFramework):
    """The reverse mode through torch.autograd.grad, as ``loss.backward()``
    and torch.autograd.gradcheck run it: a torch.autograd.Function written
    the classic way (``forward(ctx, ...)``, no ``setup_context``), the most
    common kind, cannot run under torch.func at all ("must override the
    setup_context staticmethod"). Forward mode stays torch.func's."""

    _vjp = staticmethod(_autograd_vjp)


def refuses_transforms(error: BaseException) -> bool:
    """Whether ``error`` is torch.func refusing an autograd.Function without
    ``setup_context``."""
    return isinstance(error, RuntimeError) and "override the setup_context" in str(error)


# (nestings, what of f's graph they lose, its name, whether this torch still loses it)
_LOST_RULES = (
    (("forward_over_forward",), _functions_in, "torch.autograd.Function",
     _loses_function_jvps),
    (("reverse_over_forward", "forward_over_forward"), _solves_in_their_matrix,
     "torch.linalg.solve", _loses_solves_in_their_matrix),
    (("forward_over_reverse", "reverse_over_reverse"), _once_differentiable_in,
     "torch.autograd.Function", lambda: True),
)


FRAMEWORK = TorchFramework()
AUTOGRAD = TorchAutogradFramework()  # the reverse mode of classic autograd.Functions
implementation = unrolled_implementation("torch", FRAMEWORK)
loop_implementation = per_sample_loop_implementation("torch_loop", FRAMEWORK)

# Hand-written rules (implicit function, adjoint) instead of the solvers' iterations
from adjointbench.impls.torch.implicit import adjoint_solution, implicit_solution  # noqa: E402

implicit_implementation = custom_rule_implementation("torch_implicit", FRAMEWORK,
                                                     implicit_solution, adjoint_solution)
