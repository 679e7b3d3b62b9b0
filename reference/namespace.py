"""The array namespace a problem's primal is written against, once.

A third-party problem declares its primal as ``primal(xp, *inputs)``. The
oracle calls it with :data:`MP` (NumPy object arrays of mpmath numbers, every
operation at ``mpmath.mp.dps`` digits) to differentiate it to high precision,
and the harness calls it with :data:`F64` (plain float64 NumPy) to check that
the declaration computes what its float64 twin does. Both namespaces offer the
same names; arithmetic operators (``+ - * / **``, ``@``) and indexing work on
both kinds of array as they do in NumPy.

    def softplus(xp, x):
        return xp.log1p(xp.exp(x))

Elementwise: abs, cos, cosh, erf, exp, expm1, log, log1p, sign, sin, sinh,
sqrt, tan, tanh, maximum, minimum, where. Reductions (``axis`` as in NumPy):
sum, prod, max, min. Linear algebra: dot, matmul, solve (a square system,
one right-hand side). Constructors: asarray, stack (a list of scalars or
arrays), zeros_like, ones_like; constants pi and e. Loops and indexing are
plain Python: ``x[i]``, ``x[1:]``.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import mpmath
import numpy as np

from adjointbench.reference import hp


def _object_ufunc(function):
    """``function`` entry by entry on an object array (or a scalar)."""
    apply = np.frompyfunc(function, 1, 1)
    return lambda x: apply(x)


def _mp_asarray(a):
    array = np.asarray(a)
    return array if array.dtype == object else hp.to_mp(array)


def _reduction(name: str):
    function = getattr(np, name)
    return lambda x, axis=None: function(np.asarray(x, dtype=object), axis=axis)


_MP_UNARY = {
    "abs": abs, "cos": mpmath.cos, "cosh": mpmath.cosh, "erf": mpmath.erf,
    "exp": mpmath.exp, "expm1": mpmath.expm1, "log": mpmath.log, "log1p": mpmath.log1p,
    "sign": mpmath.sign, "sin": mpmath.sin, "sinh": mpmath.sinh, "sqrt": mpmath.sqrt,
    "tan": mpmath.tan, "tanh": mpmath.tanh,
}

class _Namespace(SimpleNamespace):
    """A namespace that names what it offers when asked for what it lacks."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"xp has no {name!r}: a primal written against adjointbench.reference.namespace "
            f"may use {', '.join(NAMES)} (and + - * / ** @, indexing, Python loops); write "
            f"{name} from these, or declare the problem with float64_primal= instead")


class _MPNamespace(_Namespace):
    """pi and e at the working precision when they are read."""

    pi = property(lambda self: +mpmath.pi)
    e = property(lambda self: +mpmath.e)


MP = _MPNamespace(
    **{name: _object_ufunc(f) for name, f in _MP_UNARY.items()},
    maximum=np.maximum, minimum=np.minimum, where=np.where,
    **{name: _reduction(name) for name in ("sum", "prod", "max", "min")},
    dot=np.dot, matmul=np.matmul, solve=hp.solve, stack=lambda xs: np.array(list(xs), dtype=object),
    asarray=_mp_asarray, zeros_like=lambda x: np.asarray(x, dtype=object) * 0,
    ones_like=lambda x: np.asarray(x, dtype=object) * 0 + 1,
)

def _erf(x):
    from scipy.special import erf  # imported when a primal uses it
    return erf(x)


F64 = _Namespace(
    abs=np.abs, cos=np.cos, cosh=np.cosh, erf=_erf, exp=np.exp, expm1=np.expm1,
    log=np.log, log1p=np.log1p, sign=np.sign, sin=np.sin, sinh=np.sinh, sqrt=np.sqrt,
    tan=np.tan, tanh=np.tanh, maximum=np.maximum, minimum=np.minimum, where=np.where,
    sum=np.sum, prod=np.prod, max=np.max, min=np.min,
    dot=np.dot, matmul=np.matmul, solve=np.linalg.solve, stack=lambda xs: np.array(list(xs)),
    asarray=lambda a: np.asarray(a, dtype=np.float64), zeros_like=np.zeros_like,
    ones_like=np.ones_like, pi=math.pi, e=math.e,
)

NAMES = tuple(sorted(vars(F64)))
