"""The single source of truth: the problem catalogue and its oracle."""

from adjointbench.reference.cache import Oracle
from adjointbench.reference.catalogue import PROBLEMS, UnknownNameError, get_problem, problems
from adjointbench.reference.oracle import (CERTIFY_RTOL, ORACLE_VERSION, Estimate, Reference,
                              UncertifiedReference, compute_reference)
from adjointbench.reference.problem import Probes, Problem, flatten, make_inputs, make_probes, unflatten

__all__ = ["CERTIFY_RTOL", "ORACLE_VERSION", "Estimate", "Oracle", "PROBLEMS", "Probes",
           "Problem", "Reference", "UncertifiedReference", "UnknownNameError",
           "compute_reference", "flatten", "get_problem", "make_inputs", "make_probes",
           "problems", "unflatten"]
