"""The single source of truth: the problem catalogue and its oracle."""

from adjointbench.reference.cache import Oracle
from adjointbench.reference.catalogue import (UnknownNameError, get_problem, load_problem,
                                              problems)
from adjointbench.reference.declare import DeclarationError, declare_problem
from adjointbench.reference.oracle import (CERTIFY_RTOL, ORACLE_VERSION, Estimate, Reference,
                              UncertifiedReference, compute_reference)
from adjointbench.reference.problem import Probes, Problem, flatten, make_inputs, make_probes, unflatten

__all__ = ["CERTIFY_RTOL", "ORACLE_VERSION", "DeclarationError", "Estimate", "Oracle",
           "PROBLEMS", "Probes", "declare_problem", "load_problem",
           "Problem", "Reference", "UncertifiedReference", "UnknownNameError",
           "compute_reference", "flatten", "get_problem", "make_inputs", "make_probes",
           "problems", "unflatten"]


def __getattr__(name: str):
    if name == "PROBLEMS":  # the built-in catalogue, imported when first asked for
        from adjointbench.reference.catalogue import built_in
        return built_in()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
