"""The helper API: JVPs, VJPs and batched Jacobians of your own function,
with the AD backend chosen by name.

Backends: ``jax-forward``, ``jax-reverse``, ``torch-forward``,
``torch-reverse``. ``f`` is written in the backend's framework (jax.numpy or
torch); ``x`` may be a NumPy array or the framework's own; results are the
framework's arrays, computed in the dtype of the arrays given. No global
framework setting is changed: JAX computes in float32 unless your program
enables float64 itself, once at start-up, with
``jax.config.update("jax_enable_x64", True)`` (or ``JAX_ENABLE_X64=1``). In the other mode, a JVP is the transpose of a VJP and a
VJP the transpose of a JVP, so every product is available in every mode.

Second order, for a scalar-valued f: ``hessian_vector_product(f, backend, x, v)``
and ``hessian(f, backend, x)``, the backend naming the nesting of AD modes
(the outer differentiates the inner): ``jax-forward-over-reverse``,
``jax-reverse-over-forward``, ``jax-reverse-over-reverse``,
``jax-forward-over-forward`` and ``torch-forward-over-reverse``,
``torch-reverse-over-forward``, ``torch-reverse-over-reverse``,
``torch-forward-over-forward``. A nesting that the framework would carry
through f wrong, without an error, raises NestingError instead
(``Framework.rules_lost_by``). The first-order helpers can themselves be
differentiated (a loss holding a batched Jacobian or a JVP), in either mode.

Shapes of ``batched_jacobian`` follow Lux.jl: x is (N..., B), f(x) is (M..., B)
and J is (prod M, prod N, B). ``batch_axis=0`` gives NumPy's (B, M, N) for x
of shape (B, N...).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from adjointbench.faults import described
from adjointbench.impls.protocol import NESTINGS
from adjointbench.names import UnknownNameError, closest

BACKENDS = ("jax-forward", "jax-reverse", "torch-forward", "torch-reverse")


class SampleMixingError(ValueError):
    """f lets one sample's output depend on another sample's input."""


@dataclass(frozen=True)
class _Backend:
    framework: str
    mode: str

    @property
    def ops(self):
        """The framework's one adapter (impls/jax or impls/torch), imported on first use."""
        return importlib.import_module(f"adjointbench.impls.{self.framework}").FRAMEWORK


def _backend(name: str) -> _Backend:
    if name not in BACKENDS:
        raise UnknownNameError(f"unknown backend {name!r}.{closest(name, BACKENDS)}")
    framework, mode = name.split("-")
    return _Backend(framework, mode)


def _jvp(fw, f, x, u):
    return fw.jvp(f, (x,), (u,))


def _vjp(fw, f, x, w):
    return fw.vjp(f, (x,), w)[0]


def jacobian_vector_product(f: Callable, backend: str, x: Any, u: Any) -> Any:
    """J u, with J the Jacobian of ``f`` at ``x``.

    >>> import jax.numpy as jnp
    >>> jacobian_vector_product(jnp.sin, "jax-forward", jnp.zeros(2), jnp.ones(2))
    Array([1., 1.], dtype=float64)
    """
    b = _backend(backend)
    ops = b.ops
    x, u = ops.asarray(x), ops.asarray(u)
    if b.mode == "forward":
        return _jvp(ops, f, x, u)
    # reverse mode: w -> J^T w is linear; its own VJP applied to u is J u
    return in_reverse_mode(ops, "reverse", lambda a: _vjp(a, lambda w: _vjp(a, f, x, w),
                                                          f(x) * 0, u))


def vector_jacobian_product(f: Callable, backend: str, x: Any, u: Any) -> Any:
    """J^T u, with J the Jacobian of ``f`` at ``x``.

    >>> import torch
    >>> vector_jacobian_product(torch.sin, "torch-reverse", torch.zeros(2), torch.ones(2))
    tensor([1., 1.])
    """
    b = _backend(backend)
    ops = b.ops
    x, u = ops.asarray(x), ops.asarray(u)
    if b.mode == "reverse":
        return in_reverse_mode(ops, "reverse", lambda a: _vjp(a, f, x, u))
    # forward mode: t -> J t is linear; its VJP applied to u is J^T u
    return _vjp(ops, lambda t: _jvp(ops, f, x, t), x * 0, u)


def _check_no_mixing(ops, f: Callable, x, batch_axis: int) -> None:
    """Perturb every sample but the last: the last output must not move."""
    batch = x.shape[batch_axis]
    if batch < 2:
        return
    tangent = np.ones(x.shape)
    index = [slice(None)] * x.ndim
    index[batch_axis] = batch - 1
    tangent[tuple(index)] = 0
    dy = _jvp(ops, f, x, ops.asarray(tangent, dtype=x.dtype))
    if not ops.is_zero(ops.select(dy, batch_axis, batch - 1)):
        raise SampleMixingError(
            f"f mixes samples along batch axis {batch_axis}: the output of sample {batch - 1} "
            "changes when only the other samples change, so there is no per-sample Jacobian "
            "and a batched Jacobian would be wrong. Compute the full Jacobian instead, or "
            "move batch statistics (batch normalisation) out of f.")


def batched_jacobian(f: Callable, backend: str, x: Any, batch_axis: int = -1) -> Any:
    """The Jacobian of every sample of a batch, by vmap over one sample's Jacobian.

    ``f`` maps a batch to a batch (batch on ``batch_axis`` of both) and must not
    mix samples; if it does, :class:`SampleMixingError` is raised.
    With ``batch_axis=-1`` (Lux) x is (N..., B) and the result (prod M, prod N, B);
    with ``batch_axis=0`` x is (B, N...) and the result (B, prod M, prod N).

    >>> import jax.numpy as jnp
    >>> batched_jacobian(jnp.tanh, "jax-forward", jnp.zeros((3, 5))).shape
    (3, 3, 5)
    """
    if batch_axis not in (0, -1):
        raise ValueError(f"batch_axis must be 0 (B, N...) or -1 (N..., B), got {batch_axis}")
    b = _backend(backend)
    ops = b.ops
    x = ops.asarray(x)
    _check_no_mixing(ops, f, x, batch_axis)

    def sample_f(sample):
        return ops.select(f(ops.expand(sample, batch_axis)), batch_axis, 0)

    def sample_jacobian(sample):
        J = ops.jacobian(b.mode)(sample_f)(sample)
        return J.reshape(-1, int(np.prod(sample.shape, dtype=int)))

    return ops.vmap(sample_jacobian, batch_axis, 0 if batch_axis == 0 else 2)(x)


SECOND_ORDER_BACKENDS = tuple(f"{framework}-{nesting.replace('_', '-')}"
                              for framework in ("jax", "torch") for nesting in NESTINGS)


def _second_order_backend(name: str) -> tuple[Any, str]:
    """(the framework's adapter, the nesting) of a backend like ``jax-forward-over-reverse``."""
    if name not in SECOND_ORDER_BACKENDS:
        raise UnknownNameError(f"unknown second-order backend {name!r}."
                               f"{closest(name, SECOND_ORDER_BACKENDS)}")
    framework, nesting = name.split("-", 1)
    return _Backend(framework, "").ops, nesting.replace("-", "_")


def hessian_vector_product(f: Callable, backend: str, x: Any, v: Any) -> Any:
    """H v, with H the Hessian of the scalar-valued ``f`` at ``x``, by the
    nesting the backend names (``jax-forward-over-reverse``, ...,
    ``torch-forward-over-forward``: the outer mode differentiates the inner).

    >>> import jax.numpy as jnp
    >>> hessian_vector_product(lambda x: jnp.sum(x ** 3), "jax-forward-over-reverse",
    ...                        jnp.ones(2), jnp.ones(2))
    Array([6., 6.], dtype=float64)
    """
    ops, nesting = _second_order_backend(backend)
    x, v = ops.asarray(x), ops.asarray(v)
    _require_scalar(f(x), backend)
    _refuse_lost_rules(ops, nesting, f, (x,), backend)
    try:
        return in_reverse_mode(ops, nesting, lambda a: a.hvp(
            f, (x,), ops.asarray(1.0, dtype=x.dtype), (v,), nesting)[0])
    except Exception as e:  # noqa: BLE001 - the framework's refusal, named
        raise NestingError(f"{backend} cannot differentiate this f: {described(e)}. "
                           "A custom rule with no forward mode (jax.custom_vjp, a "
                           "torch.autograd.Function without jvp) allows reverse-over-reverse "
                           "only; choose that backend, or give the rule a forward mode.") from e


def hessian(f: Callable, backend: str, x: Any) -> Any:
    """The Hessian of the scalar-valued ``f`` at ``x``, shape x.shape + x.shape,
    one Hessian-vector product per entry of x by the backend's nesting.

    >>> import torch
    >>> hessian(lambda x: (x ** 2).sum(), "torch-reverse-over-reverse", torch.ones(2))
    tensor([[2., 0.],
            [0., 2.]])
    """
    ops, _ = _second_order_backend(backend)
    x = ops.asarray(x)
    n = int(np.prod(x.shape, dtype=int))
    columns = [hessian_vector_product(f, backend, x, ops.asarray(
        np.eye(n)[k].reshape(x.shape), dtype=x.dtype)) for k in range(n)]
    return ops.xp.stack([c.reshape(-1) for c in columns], 1).reshape(tuple(x.shape) * 2)


def in_reverse_mode(ops, mode: str, run: Callable[[Any], Any]) -> Any:
    """``run(ops)``; where torch.func refuses to run f (:func:`transforms_refused`),
    ``run`` again through torch.autograd.grad, as ``loss.backward()`` and
    gradcheck run it (impls/torch's AUTOGRAD)."""
    try:
        return run(ops)
    except RuntimeError as error:
        if not transforms_refused(ops, mode, error):
            raise
        from adjointbench.impls.torch import AUTOGRAD

        return run(AUTOGRAD)


def autograd_can_run(ops, mode: str) -> bool:
    """Whether torch.autograd.grad can take torch.func's place: torch's
    reverse ``mode``s (``reverse``, ``reverse_over_reverse``)."""
    return ops.name == "torch" and mode in ("reverse", "reverse_over_reverse")


def transforms_refused(ops, mode: str, error: BaseException) -> bool:
    """Whether ``error`` is torch.func refusing f, because it calls a
    torch.autograd.Function written without ``setup_context`` (the classic
    ``forward(ctx, ...)``, as most are), where torch.autograd.grad can run
    it instead (:func:`autograd_can_run`)."""
    if not autograd_can_run(ops, mode):
        return False
    from adjointbench.impls.torch import refuses_transforms

    return refuses_transforms(error)


class NestingError(TypeError):
    """This nesting of AD modes cannot differentiate this function."""


def _refuse_lost_rules(ops, nesting: str, f: Callable, primals: tuple, backend: str) -> None:
    """NestingError where the framework would differentiate one of f's rules
    (its own or a custom one) wrong under this nesting without saying so:
    torch's forward-over-forward through a torch.autograd.Function gives zeros."""
    lost = ops.rules_lost_by(nesting, f, primals)
    if lost:
        right = [b for b in SECOND_ORDER_BACKENDS if b.startswith(f"{ops.name}-")
                 and not ops.rules_lost_by(_second_order_backend(b)[1], f, primals)]
        raise NestingError(f"{backend} cannot differentiate this f: it calls "
                           f"{', '.join(lost)}, which this {ops.name} differentiates wrong "
                           f"under {nesting.replace('_', '-')}, without an error. "
                           f"Choose {', '.join(right)}.")


def _require_scalar(y: Any, backend: str) -> None:
    if int(np.prod(getattr(y, "shape", ()), dtype=int)) != 1:
        raise ValueError(f"{backend}: f must return a scalar for a Hessian, got shape "
                         f"{tuple(y.shape)}; for a vector output use the Hessian of <w, f(x)>")
