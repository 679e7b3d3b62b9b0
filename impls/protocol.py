"""The one protocol every implementation follows, built-in or third-party.

An implementation is an object with a ``name`` and three methods::

    class MyImpl:
        name = "mine"
        def devices(self) -> tuple[str, ...]: return ("cpu",)
        def supports(self, problem: str, op: str, method: str | None = None) -> bool: ...
        def prepare(self, task: Task) -> Prepared: ...

``supports`` is asked with a ``method`` for ``gradient``, ``hvp`` and
``hessian`` only; an implementation that offers none of them may take just
(problem, op).

``prepare`` does all conversion and compilation (it is never timed) and
returns a :class:`Prepared` whose ``run()`` computes the operation on data
already on the device. ``to_numpy`` turns what ``run`` returned into the
canonical NumPy result below; ``wait`` blocks until an asynchronous result is
ready (``block_until_ready``, ``cuda.synchronize``; the default,
:func:`wait_for_arrays`, does that for JAX arrays and CUDA tensors it finds
in the result, so a plug-in's own matters only for other asynchronous
arrays). ``run()`` computes the
whole operation from the inputs: a VJP, a Jacobian or a gradient includes its
forward pass, so residuals belong in ``run()``, not in ``prepare()`` (the
bench flags such an operation timed below its primal).

Canonical results, by operation (``m`` = output size, ``N`` = total size of
the differentiable inputs, concatenated row-major in declared order):

=========  ======================================================
primal     array of the output's shape
jvp        output tangent, the output's shape
vjp        tuple of input cotangents, one per differentiable input
jacfwd     2-D array (m, N), built in forward mode
jacrev     2-D array (m, N), built in reverse mode
batched_   3-D array (M, N, B): for a batched problem (one differentiable
jacobian   input x of shape (N..., B), output (M..., B)), the Jacobian of
           each sample on its own, the batch last (Lux.jl's layout)
hvp        tuple of one array per differentiable input: the Hessian of
           <w, f> (w = ``task.cotangent``; 1 for a scalar output) applied
           to u = ``task.tangent``, by ``task.method``: a nesting of AD
           modes (forward_over_reverse, reverse_over_forward,
           reverse_over_reverse, forward_over_forward), ``rule`` (a
           hand-written second-order rule) or ``materialised`` (the
           Hessian filled entry by entry, then multiplied)
           For a sensitivity problem, the same of its scalar loss J(theta)
           (w a scalar), by ``task.method``: second_order_adjoint (forward over the
           adjoint), fd_gradient (central differences of the adjoint
           gradient along u), unrolled or implicit (forward over reverse
           through the solver, or through its implicit-function rule)
hessian    2-D array (N, N): the Hessian of <w, f>, by ``task.method``
gradient   tuple of one array per differentiable input: dJ/dtheta of a
           sensitivity problem's scalar loss J, by ``task.method`` (fd_forward,
           fd_central, forward_sensitivity, adjoint, unrolled, implicit)
=========  ======================================================

A sensitivity problem's fixed data (matrices, reference states, observation
times, targets) arrive as its non-differentiable inputs: an implementation
needs nothing from the catalogue beyond the Task.

Results must have the task's dtype (a scalar may be a built-in Python
number, an array a list of them, where that dtype holds every value exactly,
as a float32 result's ``.item()`` or ``.tolist()`` does). Returning ``supports(...) == False``
makes a cell ``unsupported``, which is an outcome, not an error.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

OPERATIONS = ("primal", "jvp", "vjp", "jacfwd", "jacrev", "batched_jacobian", "hvp", "hessian",
              "gradient")
SECOND_ORDER = ("hvp", "hessian")
NESTINGS = ("forward_over_reverse", "reverse_over_forward", "reverse_over_reverse",
            "forward_over_forward")  # second order: the outer mode differentiates the inner
SECOND_ORDER_METHODS = NESTINGS + ("rule", "materialised")
SENSITIVITY_HVP_METHODS = ("second_order_adjoint", "fd_gradient", "unrolled", "implicit")
DTYPES = ("float64", "float32")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Task:
    """What to prepare: one operation of one problem, at one dtype and device.

    ``inputs`` are float64 NumPy arrays (values exact in float32) keyed by the
    problem's input names; ``tangent`` (for jvp) holds one array per
    differentiable input, ``cotangent`` (for vjp) has the output's shape.
    """

    problem: str
    op: str
    inputs: dict[str, np.ndarray]
    differentiable: tuple[str, ...]
    dtype: str = "float64"
    device: str = "cpu"
    tangent: dict[str, np.ndarray] | None = None
    cotangent: np.ndarray | None = None
    method: str | None = None


def as_numpy(result: Any) -> Any:
    """The default ``to_numpy``: each array in ``result`` (nested tuples, lists
    and dicts) as a NumPy array of its own values, a torch tensor detached
    and brought to the CPU first, a JAX array through ``np.asarray``; Python
    numbers (they have no dtype) and None as they are. Left as it was, a
    tensor the implementation wrote into again at a later call went
    unseen: the harness's copy of the first result was that tensor."""
    if type(result) in _READY:
        return result
    if isinstance(result, (tuple, list)):
        return type(result)(as_numpy(part) for part in result)
    if isinstance(result, dict):
        return {key: as_numpy(part) for key, part in result.items()}
    if callable(getattr(result, "detach", None)) and callable(getattr(result, "cpu", None)):
        result = result.detach().cpu()  # a torch tensor, maybe requiring grad, maybe on a GPU
    try:
        array = np.asarray(result)
    except Exception:  # noqa: BLE001 - not an array: validate names what it is
        return result
    return array if array.dtype.kind in "biufc" else result


_READY = frozenset({np.ndarray, np.float64, np.float32, float, int, type(None)})  # computed


def wait_for_arrays(result: Any) -> None:
    """The default ``wait``: block until every array in ``result`` (nested
    tuples, lists and dicts) is computed, for the asynchronous arrays whose
    type says how: JAX's (``block_until_ready``) and torch's CUDA tensors
    (``torch.cuda.synchronize``); NumPy's are ready already. An
    implementation that does not say how to wait is then timed to its
    results, not to its dispatch: a JAX plug-in without ``wait`` had its
    matmul jvp timed at half its time, its ratios to the primal 0.99-1.36
    where they are 2.04-2.12."""
    if type(result) in _READY:  # the common case first: a few tens of ns per timed call
        return
    for array in _maybe_pending(result):
        if callable(block := getattr(array, "block_until_ready", None)):
            block()
        elif getattr(array, "is_cuda", False) is True:
            sys.modules["torch"].cuda.synchronize(array.device)


def _maybe_pending(result: Any):
    """The arrays of ``result`` (nested tuples, lists and dicts) whose type
    is not one that is always computed."""
    if isinstance(result, (tuple, list, dict)):
        for part in result.values() if isinstance(result, dict) else result:
            if type(part) not in _READY:
                yield from _maybe_pending(part)
    elif type(result) not in _READY:
        yield result


def _still_computed(array: Any) -> bool:
    try:
        if callable(ready := getattr(array, "is_ready", None)):
            return ready() is False
        if getattr(array, "is_cuda", False) is True:
            return not sys.modules["torch"].cuda.current_stream(array.device).query()
    except Exception:  # noqa: BLE001 - not an array that can say: taken as ready
        pass
    return False


def unready(result: Any) -> bool:
    """Whether an array in ``result`` is still being computed: a JAX array
    that is not ``is_ready()``, a CUDA tensor whose stream has work queued.
    Right after an implementation's ``wait``, that means the wait missed it."""
    return any(map(_still_computed, _maybe_pending(result)))


def waiting_for_all(wait: Callable[[Any], None]) -> Callable[[Any], None]:
    """``wait``, then :func:`wait_for_arrays`: for an implementation whose own
    wait returned before its result was computed (:func:`unready`)."""
    def wait_then_block(result: Any) -> None:
        wait(result)
        wait_for_arrays(result)
    return wait_then_block


@dataclass(frozen=True)
class Prepared:
    """A ready-to-time operation: ``run()`` only computes."""

    run: Callable[[], Any]
    to_numpy: Callable[[Any], Any] = field(default=as_numpy)
    wait: Callable[[Any], None] = field(default=wait_for_arrays)


PREPARED_PARTS = ("run", "to_numpy", "wait")


def prepare(impl: "Implementation", task: Task) -> Prepared:
    """``impl.prepare(task)``, checked to offer Prepared's three callables;
    raises TypeError naming what is missing and the fix."""
    prepared = impl.prepare(task)
    missing = [part for part in PREPARED_PARTS if not callable(getattr(prepared, part, None))]
    if missing:
        raise TypeError(
            f"{getattr(impl, 'name', type(impl).__name__)}.prepare returned a "
            f"{type(prepared).__name__}, which has no callable {' or '.join(missing)}: return "
            "adjointbench.impls.protocol.Prepared(run=...), where run() computes the result "
            "(to_numpy and wait have defaults)")
    return prepared


@runtime_checkable
class Implementation(Protocol):
    name: str

    def devices(self) -> tuple[str, ...]: ...

    def supports(self, problem: str, op: str, method: str | None = None) -> bool: ...

    def prepare(self, task: Task) -> Prepared: ...


def devices(impl: Implementation) -> tuple[str, ...]:
    """``impl.devices()`` as a tuple of device names, checked; raises TypeError
    naming the fix (a bare ``"cpu"`` would read as the devices c, p and u)."""
    found = impl.devices()
    if (isinstance(found, str) or not isinstance(found, (tuple, list, set, frozenset))
            or not all(isinstance(d, str) for d in found)):
        raise TypeError(f"{getattr(impl, 'name', type(impl).__name__)}.devices() returned "
                        f"{found!r}: return a tuple of device names, such as ('cpu',) or "
                        "('cpu', 'cuda')")
    return tuple(found)


def supports(impl: Implementation, problem: str, op: str, method: str | None = None) -> bool:
    """Ask ``impl`` whether it supports an operation (with the method for a
    gradient); an implementation whose ``supports`` takes no method offers no
    gradient."""
    if method is None:
        return bool(impl.supports(problem, op))
    try:
        inspect.signature(impl.supports).bind(problem, op, method)
    except TypeError:
        return False
    return bool(impl.supports(problem, op, method))
