"""What may cross from a worker to the harness: plain data only, as JSON.

A worker runs code under test, so anything it sends is untrusted. Had its
answers been pickles, reading one would run code: an object of a plug-in's
class would import the plug-in into the harness's process, and its
``__array__`` or ``__eq__`` would then run beside the oracle and the
comparisons, where it could change a verdict. So the worker turns every
answer into plain data (:func:`plain`: NumPy arrays of numbers, Python
numbers and strings, in dicts, tuples and lists) and sends it as JSON
(:func:`dumps`); the harness reads it with :func:`loads`, which builds
nothing else, whatever bytes arrive, even from a worker whose harness code a
plug-in has patched.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from adjointbench.faults import said

# Numeric arrays: booleans, integers, floats and complex numbers
ARRAY_KINDS = "biufc"
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
        raise NotPlainData(f"cannot convert a {type(value).__name__} to a NumPy array: "
                           f"{said(e)}") from None
    if array.dtype.kind not in ARRAY_KINDS:
        raise NotPlainData(f"a {type(value).__name__} is not an array of numbers (NumPy made "
                           f"it an array of dtype {array.dtype}): return NumPy arrays, or the "
                           "framework's arrays with a to_numpy that converts them")
    return array


def _tagged(value: Any) -> Any:
    """Plain data as JSON values: every JSON object is a tag (``d`` dict,
    ``t`` tuple, ``a`` array, ``c`` complex), so nothing else can be one."""
    if isinstance(value, dict):
        return {"d": [[_tagged(k), _tagged(v)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"t": [_tagged(v) for v in value]}
    if isinstance(value, list):
        return [_tagged(v) for v in value]
    if isinstance(value, np.ndarray):
        data = base64.b64encode(np.ascontiguousarray(value).tobytes()).decode("ascii")
        return {"a": [value.dtype.str, list(value.shape), data]}
    if isinstance(value, complex):
        return {"c": [value.real, value.imag]}
    return value


def _array(dtype: str, shape: list, data: str) -> np.ndarray:
    kind = np.dtype(dtype)
    if kind.kind not in ARRAY_KINDS:
        raise NotPlainData(f"the worker sent an array of dtype {kind}, not of numbers")
    return np.frombuffer(base64.b64decode(data), dtype=kind).reshape(shape).copy()


_UNTAG = {"d": lambda items: {_key(k): v for k, v in items}, "t": tuple,
          "a": lambda parts: _array(*parts), "c": lambda parts: complex(*parts)}


def _key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


def _untagged(obj: dict) -> Any:
    if len(obj) != 1 or next(iter(obj)) not in _UNTAG:
        raise NotPlainData(f"the worker sent a JSON object with keys {sorted(obj)[:3]}, "
                           "which is not plain data")
    (tag, content), = obj.items()
    return _UNTAG[tag](content)


def dumps(value: Any) -> bytes:
    """Plain data (see :func:`plain`) as the bytes a worker sends."""
    return json.dumps(_tagged(value)).encode()


def loads(data: bytes) -> Any:
    """A worker's answer: plain data built from JSON, whatever the bytes
    hold; raises NotPlainData for anything else."""
    try:
        return json.loads(data, object_hook=_untagged)
    except NotPlainData:
        raise
    except (ValueError, TypeError, RecursionError) as e:
        raise NotPlainData(f"the worker's answer is not plain data as JSON ({e})") from None


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
