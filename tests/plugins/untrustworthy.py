"""Subtly wrong and badly behaved rules, as rule authors' real bugs look: each
is the numpy implementation with one rule replaced. The suite must give each
the right verdict (tests/suites/test_trust.py)."""

import math
import os
import sys

import numpy as np
import scipy.linalg

from adjointbench.impls.numpy import NumpyImplementation
from adjointbench.impls.protocol import Prepared
from adjointbench.impls.rules import Linearisation, Rule, implicit_rule

_right = NumpyImplementation.rules


def _replace(name: str, **parts) -> dict:
    rule = _right[name]
    fields = {"primal": rule.primal, "forward": rule.forward, "jvp": rule.jvp, "vjp": rule.vjp}
    return {**_right, name: Rule(**{**fields, **parts})}


class _Variant(NumpyImplementation):
    def __init__(self, name, rules, gradients=None):
        self.name, self.rules = name, rules
        self.gradients = gradients if gradients is not None else NumpyImplementation.gradients


# cos x as sqrt(1 - sin^2 x): right only where cos x > 0
cos_sign = _Variant("cos_sign", _replace(
    "scalar_sin", forward=lambda x: (np.sin(x), np.sqrt(1 - np.sin(x) ** 2))))


# Data kept in float32 (a memory-saving residual or probe), the arithmetic in
# the cell's dtype: exact wherever inputs and probes are float32-exact
def _through_float32(a):
    return np.asarray(a).astype(np.float32).astype(np.asarray(a).dtype)


float32_residual = _Variant("float32_residual", _replace(
    "broadcast_sin", forward=lambda x: (np.sin(x), np.cos(_through_float32(x)))))
float32_tangent = _Variant("float32_tangent", _replace(
    "matvec", jvp=lambda res, dA, dx: _through_float32(dA) @ res[1] + res[0] @ dx))
float32_cotangent = _Variant("float32_cotangent", _replace(
    "softmax", vjp=lambda s, w: _right["softmax"].vjp(s, _through_float32(w))))


# an LU cached by shape: right for the first matrix of each shape only
_LU_BY_SHAPE: dict = {}


def _cached_solve_forward(A, b):
    lu = _LU_BY_SHAPE.setdefault(A.shape, scipy.linalg.lu_factor(A))
    x = scipy.linalg.lu_solve(lu, b)
    return x, Linearisation(lambda r: scipy.linalg.lu_solve(lu, r),
                            lambda r: scipy.linalg.lu_solve(lu, r, trans=1),
                            lambda dA, db: dA @ x - db, lambda lam: (np.outer(lam, x), -lam))


cache_by_shape = _Variant("cache_by_shape", {**_right, "linear_solve": implicit_rule(
    _right["linear_solve"].primal, forward=_cached_solve_forward)})


def _zeroing_vjp(res, w):
    w[...] = 0  # wrong, and hidden if the harness reused its probe
    return _right["softmax"].vjp(res, w)


def _zeroing_jvp(res, dx):
    dx[...] = 0
    return _right["softmax"].jvp(res, dx)


def _scaling_vjp(res, w):
    result = _right["softmax"].vjp(res, w)
    w *= 2  # the right value, then the caller's buffer is scribbled on
    return result


_OUTPUT_BY_SHAPE: dict = {}


def _jvp_into_one_buffer(res, dx):
    """The right tangent, written into the one array of its shape that every call returns."""
    dy = _right["softmax"].jvp(res, dx)
    out = _OUTPUT_BY_SHAPE.setdefault(np.shape(dy), np.empty_like(dy))
    out[...] = dy
    return out


_POOLS_BY_SHAPE: dict = {}
POOL_SIZE = 8


def _jvp_into_a_pool(res, dx):
    """The right tangent, written into the next of POOL_SIZE arrays of its
    shape, handed out in turn (a memory pool): each is overwritten by the
    call POOL_SIZE calls later, long after the caller got it."""
    dy = _right["softmax"].jvp(res, dx)
    pool = _POOLS_BY_SHAPE.setdefault(np.shape(dy), [np.empty_like(dy) for _ in range(POOL_SIZE)])
    pool.append(out := pool.pop(0))
    out[...] = dy
    return out


class _StagedCopies(NumpyImplementation):
    """Right, and not a static output: run() returns new arrays, and only
    to_numpy copies them into one host buffer per shape that it reuses (as a
    device-to-host copy into pinned memory would). Must stay ok."""

    name = "staged_copies"
    staging: dict = {}

    def prepare(self, task):
        prepared = super().prepare(task)

        def to_numpy(result):
            host = self.staging.setdefault(np.shape(result), np.empty_like(result))
            host[...] = prepared.to_numpy(result)
            return host
        return Prepared(prepared.run, to_numpy, prepared.wait)


staged_copies = _StagedCopies()


zero_cotangent = _Variant("zero_cotangent", _replace("softmax", vjp=_zeroing_vjp))
zero_tangent = _Variant("zero_tangent", _replace("softmax", jvp=_zeroing_jvp))
scale_cotangent = _Variant("scale_cotangent", _replace("softmax", vjp=_scaling_vjp))
static_output = _Variant("static_output", _replace("softmax", jvp=_jvp_into_one_buffer))
pooled_output = _Variant("pooled_output", _replace("softmax", jvp=_jvp_into_a_pool))


def _replace_gradient(problem: str, method: str, wrong) -> dict:
    right = NumpyImplementation.gradients[problem][method]
    table = NumpyImplementation.gradients
    return {**table, problem: {**table[problem], method: wrong(right)}}


def _off_the_worked_example(right):
    # a term that vanishes at linear_system's worked theta = (1, 1, 1)
    return lambda theta, **data: (right(theta, **data)[0] + 0.01 * (theta - 1.0),)


_GRADIENT_BY_SIZE: dict = {}


def _cached_by_size(right):
    # the first gradient of each size, whatever theta: stale at any other point
    return lambda theta, **data: _GRADIENT_BY_SIZE.setdefault(len(theta), right(theta, **data))


fitted_to_worked_example = _Variant(
    "fitted_to_worked_example", _right,
    _replace_gradient("linear_system", "adjoint", _off_the_worked_example))
gradient_cached_by_size = _Variant(
    "gradient_cached_by_size", _right,
    _replace_gradient("linear_system", "adjoint", _cached_by_size))


class _FirstCallOnly:
    """Right on its first call, doubled afterwards."""

    def __init__(self, f):
        self.f, self.calls = f, 0

    def __call__(self, *args, **kw):
        self.calls += 1
        result = self.f(*args, **kw)
        return result if self.calls == 1 else tuple(2 * r for r in result)


class _FirstCallOnlyImplementation(NumpyImplementation):
    name = "first_call_only"

    def prepare(self, task):
        prepared = super().prepare(task)
        if task.op not in ("vjp", "gradient"):
            return prepared
        return type(prepared)(run=_FirstCallOnly(prepared.run), to_numpy=prepared.to_numpy,
                              wait=prepared.wait)


first_call_only = _FirstCallOnlyImplementation()


def _fitted_to_size_4(res, w):
    right = _right["softmax"].vjp(res, w)
    return right if np.size(w) == 4 else tuple(1.01 * r for r in right)


right_at_smallest_only = _Variant("right_at_smallest_only",
                                  _replace("softmax", vjp=_fitted_to_size_4))


_exp = np.exp


class _Monkeypatcher(NumpyImplementation):
    """Replaces np.exp during prepare (numpy's softmax calls it): other
    implementations and the oracle must not be affected."""

    name = "monkeypatcher"

    def prepare(self, task):
        np.exp = lambda x, *a, **k: _exp(x) + 1.0
        return super().prepare(task)


monkeypatcher = _Monkeypatcher()


# --- code under test that tries to run in the harness's own process ---

def _approve_everything():
    """What a plug-in's code would do if it ever ran beside the comparisons:
    make every comparison pass, and leave its mark."""
    import adjointbench.suites.compare as compare
    import adjointbench.suites.runner as runner

    def approve(actual, expected, tol, what, condition, *a, **k):
        return compare.Comparison(True, 0.0, 0.0, tol)

    runner.compare = compare.compare = approve
    os.environ["UNTRUSTWORTHY_RAN_IN"] = str(os.getpid())


class _Smuggled:
    """A wrong result (one more than right) that turns itself into an array
    only when asked, approving every comparison of the process that asks."""

    def __init__(self, value):
        self.value = value

    def __array__(self, dtype=None, copy=None):
        _approve_everything()
        return np.asarray(self.value + 1.0, dtype=dtype)

    def __reduce__(self):  # unpickled: runs in the receiving process
        return (_smuggled_in, (np.asarray(self.value),))


def _smuggled_in(value):
    _approve_everything()
    return _Smuggled(value)


class _Smuggler(NumpyImplementation):
    """Returns its (wrong) primal as a _Smuggled object."""

    name = "smuggler"

    def prepare(self, task):
        prepared = super().prepare(task)
        return type(prepared)(run=prepared.run, to_numpy=_Smuggled, wait=prepared.wait)


smuggler = _Smuggler()


class _Hijacker(_Smuggler):
    """Patches its worker's own harness code so that what it sends is not
    plain data: an object naming the function that would approve everything."""

    name = "hijacker"

    def supports(self, problem, op, method=None):  # asked before the worker's execute
        import adjointbench.suites.isolation as isolation

        isolation.dumps = lambda answer: b'{"reduce": ["untrustworthy._smuggled_in", [1.0]]}'
        return super().supports(problem, op, method)


hijacker = _Hijacker()


class _Relabeller(NumpyImplementation):
    """Patches its worker's bench so that its records claim to be numpy's
    matmul, twice as fast as its primal (an operation that includes the
    forward pass), and without a warning."""

    name = "relabeller"

    def supports(self, problem, op, method=None):  # asked before the worker's bench
        from adjointbench.suites.executors import LocalExecutor

        honest = LocalExecutor.bench

        def bench(executor, cell, *args):
            fields = honest(executor, cell, *args)
            return {**fields, "impl": "numpy", "problem": "matmul", "ratio_to_primal": 0.5,
                    "ratio_q1": 0.5, "ratio_q3": 0.5, "timing_warning": None}

        LocalExecutor.bench = bench
        return super().supports(problem, op, method)


relabeller = _Relabeller()


# --- code under test that writes the harness's files (same user, so it can) ---

class _RecordForger(NumpyImplementation):
    """A wrong softmax vjp whose every call also writes results.jsonl (the
    path in $UNTRUSTWORTHY_RESULTS): every "mismatch" turned into "ok" in
    place, the same size, and a record of its own appended, claiming ok; and
    environment.json beside it, claiming another, quiet machine."""

    name = "record_forger"

    def prepare(self, task):
        prepared = super().prepare(task)
        if task.op != "vjp":
            return prepared

        def run():
            _forge_records(os.environ["UNTRUSTWORTHY_RESULTS"], task)
            return tuple(1.01 * r for r in prepared.run())

        return type(prepared)(run=run, to_numpy=prepared.to_numpy, wait=prepared.wait)


def _forge_records(path, task):
    import json

    if os.path.exists(path):
        with open(path, "r+b") as f:
            text = f.read().replace(b'"outcome": "mismatch"', b'"outcome": "ok"      ')
            f.seek(0)
            f.write(text)
    size = int(np.size(task.cotangent))
    claim = {"problem": task.problem, "impl": "untrustworthy:record_forger", "op": "vjp",
             "dtype": task.dtype, "device": "cpu", "size": size, "seed": 0, "outcome": "ok",
             "message": "forged"}
    with open(path, "a") as f:
        f.write(json.dumps(claim) + "\n")
    environment = os.path.join(os.path.dirname(path), "environment.json")
    if os.path.exists(environment):  # a quiet machine, whatever it was
        with open(environment, "w") as f:
            f.write(json.dumps({"machine": "forged", "load_before": [0.0, 0.0, 0.0]}))


record_forger = _RecordForger()


class _ReferenceForger(NumpyImplementation):
    """A primal one more than right that writes the oracle cache entries of
    its cell (key and checksum right, computed as the harness would) with a
    reference one more than right: believed, its primal would be ok."""

    name = "reference_forger"

    def prepare(self, task):
        prepared = super().prepare(task)
        if task.op != "primal":
            return prepared
        _forge_references(task.problem, int(np.size(task.inputs["x"])))
        return type(prepared)(run=prepared.run,
                              to_numpy=lambda r: np.asarray(prepared.to_numpy(r)) + 1.0,
                              wait=prepared.wait)


def _forge_references(problem, size):
    import json

    from adjointbench.reference.cache import Oracle, _checksum, entry_key

    oracle = Oracle()  # the harness's cache folder, as the harness finds it
    for point in range(3):
        data = oracle.reference(problem, size, point=point).to_json()
        data["value"]["value"] = [v + 1.0 for v in data["value"]["value"]]
        entry = {"key": entry_key("first", problem, size, 0, point),
                 "checksum": _checksum(data), "reference": data}
        oracle.path(problem, size, 0, point).write_text(json.dumps(entry))


reference_forger = _ReferenceForger()


# --- right, and not bitwise reproducible: sums taken in another order each call ---

_ORDER = np.random.default_rng(1)


def _matvec_in_any_order(A, x):
    """A x with its columns summed in a fresh random order, as threaded or
    atomic reductions do: right to rounding, different in the last bits."""
    order = _ORDER.permutation(np.shape(A)[1])
    total = np.zeros(np.shape(A)[0], dtype=np.result_type(A, x))
    for j in order:
        total += A[:, j] * x[j]
    return total


reordering_sums = _Variant("reordering_sums", _replace(
    "matvec", jvp=lambda res, dA, dx: _matvec_in_any_order(dA, res[1])
    + _matvec_in_any_order(res[0], dx)))


def _items(result):
    """Each 0-d result as a built-in Python number, as ``.item()`` gives it."""
    if isinstance(result, (tuple, list)):
        return type(result)(_items(r) for r in result)
    return result.item() if isinstance(result, (np.ndarray, np.generic)) and not np.ndim(result) \
        else result


class _Converted(NumpyImplementation):
    """numpy's results, each handed back through ``convert``."""

    def __init__(self, name, convert):
        self.name, self.convert = name, convert

    def prepare(self, task):
        prepared, convert = super().prepare(task), self.convert
        return Prepared(lambda: convert(prepared.to_numpy(prepared.run())), wait=prepared.wait)


def _lists(result):
    """Each array as ``.tolist()`` gives it: nested lists of Python numbers
    (a 0-d array's a Python number)."""
    if isinstance(result, tuple):
        return tuple(_lists(r) for r in result)
    return result.tolist() if isinstance(result, (np.ndarray, np.generic)) else result


# Right: each scalar handed back as a Python number (its float32 value
# exactly, in a float32 cell); each array as Python lists (a pure-Python
# rule's). Both must stay ok.
python_scalars = _Converted("python_scalars", _items)
python_lists = _Converted("python_lists", _lists)


def _as_tensors(result, requires_grad=False):
    import torch

    if isinstance(result, tuple):
        return tuple(_as_tensors(r, requires_grad) for r in result)
    return torch.tensor(np.asarray(result), requires_grad=requires_grad)


_TENSOR_BY_SHAPE: dict = {}


def _into_one_tensor(result):
    """The right result, written into the one tensor of its shape and dtype
    that every call returns."""
    value = _as_tensors(result)
    out = _TENSOR_BY_SHAPE.setdefault((value.shape, value.dtype), value.clone())
    out.copy_(value)
    return out


class _Tensors(NumpyImplementation):
    """numpy's results as torch tensors, with no to_numpy of its own (the
    default converts them): ``tensors_requiring_grad``, right, as autograd
    leaves (must stay ok); ``static_tensor``, wrong, softmax's JVP written
    into one tensor that every call returns."""

    def __init__(self, name, convert, ops=None):
        self.name, self.convert, self.ops = name, convert, ops

    def prepare(self, task):
        prepared, convert = super().prepare(task), self.convert
        if self.ops is not None and task.op not in self.ops:
            return prepared
        return Prepared(lambda: convert(prepared.to_numpy(prepared.run())), wait=prepared.wait)


tensors_requiring_grad = _Tensors("tensors_requiring_grad",
                                  lambda r: _as_tensors(r, requires_grad=True))
static_tensor = _Tensors("static_tensor", _into_one_tensor, ops=("jvp",))


class _BareCotangent(NumpyImplementation):
    """Wrong by the protocol: a VJP of a one-input function handed back as its
    bare cotangent, not a tuple of one (impls/protocol.py)."""
    name = "bare_cotangent"

    def prepare(self, task):
        prepared = super().prepare(task)
        if task.op != "vjp":
            return prepared
        return Prepared(lambda: prepared.run()[0], to_numpy=prepared.to_numpy, wait=prepared.wait)


bare_cotangent = _BareCotangent()
# sin x in float64 whatever the cell's dtype: math.sin's Python float
float64_math = _Variant("float64_math", _replace("scalar_sin", primal=lambda x: math.sin(x)))


def _big_endian(result, dtype=None):
    """Each array as big-endian bytes of its own dtype (or of ``dtype``)."""
    if isinstance(result, (tuple, list)):
        return type(result)(_big_endian(r, dtype) for r in result)
    array = np.asarray(result)
    return array.astype(np.dtype(dtype or array.dtype).newbyteorder(">"))


class _BigEndian(NumpyImplementation):
    """Right: numpy's results as big-endian arrays of the cell's dtype (a file
    or a device that stores them so): every value exact. Must stay ok."""
    name = "big_endian"
    dtype = None

    def prepare(self, task):
        prepared = super().prepare(task)
        return Prepared(lambda: _big_endian(prepared.to_numpy(prepared.run()), self.dtype),
                        wait=prepared.wait)


class _BigEndianFloat32(_BigEndian):
    """Wrong in a float64 cell: its results rounded to float32, big-endian."""
    name = "big_endian_float32"
    dtype = "float32"


big_endian, big_endian_float32 = _BigEndian(), _BigEndianFloat32()


class _Oversized(NumpyImplementation):
    """Wrong: softmax's JVP as 10^7 numbers (80 MB), whatever the size; every
    other operation numpy's."""
    name = "oversized"

    def prepare(self, task):
        if task.problem == "softmax" and task.op == "jvp":
            return Prepared(lambda: np.zeros(10**7, dtype=task.dtype))
        return super().prepare(task)


oversized = _Oversized()


def _timed_by_the_bench() -> bool:
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "time_cell":  # suites/bench.py's
            return True
        frame = frame.f_back
    return False


class _WrongWhenTimed(NumpyImplementation):
    """Right wherever it is checked; timed by the bench (told by the
    harness's frame on its stack) its VJP skips the work and returns zeros,
    reentrant and finite: a figure of work it never did."""

    name = "wrong_when_timed"

    def prepare(self, task):
        if task.op != "vjp" or not _timed_by_the_bench():
            return super().prepare(task)
        shapes = [np.shape(task.inputs[n]) for n in task.differentiable]
        return Prepared(run=lambda: tuple(np.zeros(s) for s in shapes))


wrong_when_timed = _WrongWhenTimed()
