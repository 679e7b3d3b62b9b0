"""What may cross from a worker to the harness: plain data only.

A worker runs code under test, so anything it sends is untrusted. Unpickling
runs code: an object of a plug-in's class would import the plug-in into the
harness's process, and its ``__array__`` or ``__eq__`` would then run beside
the oracle and the comparisons, where it could change a verdict. So the worker
turns every answer into plain data (:func:`plain`: NumPy arrays of numbers,
Python numbers and strings, in dicts, tuples and lists) before it sends it,
and the harness reads answers with :func:`loads`, which builds nothing else
and so never imports or calls anything a worker names, even a worker whose
harness code a plug-in has patched.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

# Numeric arrays: booleans, integers, floats and complex numbers
ARRAY_KINDS = "biufc"
# The globals a pickle of plain data names: array and scalar reconstruction
# (numpy 2 and numpy 1 spellings) and complex numbers
_ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "complex"),
            ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar")}
_ATOMS = (type(None), bool, int, float, complex)


class NotPlainData(TypeError):
    """A worker answered with something other than plain data."""


def plain(value: Any) -> Any:
    """``value`` as plain data, converted in the worker: containers rebuilt
    as built-in dicts, tuples and lists, strings as built-in str, anything
    else as a NumPy array (``np.asarray``, so a framework's array or an
    object with ``__array__`` is converted here, where code under test may
    run); raises NotPlainData for what is not a numeric array."""
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return (tuple if isinstance(value, tuple) else list)(plain(v) for v in value)
    if isinstance(value, str):
        return str.__str__(value)  # a built-in str, even from a subclass
    if type(value) in _ATOMS:
        return value
    try:
        array = np.array(value, copy=True, subok=False)
    except Exception as e:
        raise NotPlainData(f"cannot convert a {type(value).__name__} to a NumPy array: {e}") from None
    if array.dtype.kind not in ARRAY_KINDS:
        raise NotPlainData(f"a {type(value).__name__} is not an array of numbers (NumPy made "
                           f"it an array of dtype {array.dtype}): return NumPy arrays, or the "
                           "framework's arrays with a to_numpy that converts them")
    return array


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise NotPlainData(f"the worker sent an object of {module}.{name}, which is not "
                               "plain data (NumPy arrays of numbers, numbers, strings)")
        return super().find_class(module, name)


def _check_arrays(value: Any) -> Any:
    if isinstance(value, dict):
        for v in value.values():
            _check_arrays(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            _check_arrays(v)
    elif isinstance(value, np.ndarray) and value.dtype.kind not in ARRAY_KINDS:
        raise NotPlainData(f"the worker sent an array of dtype {value.dtype}, not of numbers")
    return value


def loads(data: bytes) -> Any:
    """A worker's answer, read without importing or calling anything it names
    beyond NumPy's array constructors; raises NotPlainData otherwise."""
    return _check_arrays(_PlainUnpickler(io.BytesIO(data)).load())


def _as_kind(value: Any, kind: type, name: str) -> Any:
    """``value`` as a ``kind`` (float: any real number; int: any integer;
    list: of real numbers; a 0-d array counts as its number), else NotPlainData."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iuf":
        value = value.item()
    integer = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
    if kind is list and isinstance(value, list):
        return [_as_kind(v, float, name) for v in value]
    if kind is float and (integer or isinstance(value, (float, np.floating))):
        return float(value)
    if kind is int and integer:
        return int(value)
    if kind is str and isinstance(value, str):
        return str.__str__(value)
    raise NotPlainData(f"the worker's {name} is {value!r}, not a {kind.__name__}")


def measurements(answer: Any, kinds: dict[str, type]) -> dict:
    """Only the fields ``kinds`` names from a worker's answer, each None or of
    its kind: a worker reports what it measured and nothing else of a record
    (not whose record it is, nor its outcome). Raises NotPlainData naming a
    field of another kind."""
    if not isinstance(answer, dict):
        raise NotPlainData(f"the worker's measurements are a {type(answer).__name__}, not a dict")
    return {k: None if answer.get(k) is None else _as_kind(answer[k], kind, k)
            for k, kind in kinds.items()}
