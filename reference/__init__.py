"""The single source of truth: the problem catalogue and its oracle.

The oracle (mpmath, sympy) is imported when first asked for: a worker that
only makes inputs for an implementation does not pay for it."""

import importlib

from adjointbench.reference.catalogue import (UnknownNameError, get_problem, load_problem,
                                              problems)
from adjointbench.reference.declare import DeclarationError, declare_problem
from adjointbench.reference.problem import Probes, Problem, flatten, make_inputs, make_probes, unflatten

__all__ = ["CERTIFY_RTOL", "ORACLE_VERSION", "DeclarationError", "Estimate", "Oracle",
           "PROBLEMS", "Probes", "declare_problem", "load_problem",
           "Problem", "Reference", "UncertifiedReference", "UnknownNameError",
           "compute_reference", "flatten", "get_problem", "make_inputs", "make_probes",
           "problems", "unflatten"]


# name -> the module that defines it, imported on first use
_ORACLE = {"Oracle": "cache", **{name: "oracle" for name in (
    "CERTIFY_RTOL", "ORACLE_VERSION", "Estimate", "Reference", "UncertifiedReference",
    "compute_reference")}}


def __getattr__(name: str):
    if name in _ORACLE:
        return getattr(importlib.import_module(f"adjointbench.reference.{_ORACLE[name]}"), name)
    if name == "PROBLEMS":  # the built-in catalogue, imported when first asked for
        from adjointbench.reference.catalogue import built_in
        return built_in()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
