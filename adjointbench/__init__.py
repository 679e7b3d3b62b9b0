"""adjointbench: verify and benchmark automatic-differentiation rules.

The public API. Names load on first use, so ``import adjointbench`` stays
cheap and the helpers import only the framework they are asked for:

>>> from adjointbench import plan_cells, run_sweep
>>> records = run_sweep(plan_cells(["numpy"], ["linear_solve"], ["vjp"]), progress=False)
>>> {r.outcome for r in records}
{'ok'}
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    # the helper API: products and batched Jacobians of your own function
    "BACKENDS": "adjointbench.impls.backends",
    "SampleMixingError": "adjointbench.impls.backends",
    "batched_jacobian": "adjointbench.impls.backends",
    "jacobian_vector_product": "adjointbench.impls.backends",
    "vector_jacobian_product": "adjointbench.impls.backends",
    "SECOND_ORDER_BACKENDS": "adjointbench.impls.backends",
    "NestingError": "adjointbench.impls.backends",
    "hessian": "adjointbench.impls.backends",
    "hessian_vector_product": "adjointbench.impls.backends",
    # the protocol an implementation follows
    "Implementation": "adjointbench.impls.protocol",
    "Prepared": "adjointbench.impls.protocol",
    "Task": "adjointbench.impls.protocol",
    "available_implementations": "adjointbench.impls.registry",
    "load_implementation": "adjointbench.impls.registry",
    # the catalogue and the oracle
    "Oracle": "adjointbench.reference",
    "declare_problem": "adjointbench.reference",
    "DeclarationError": "adjointbench.reference",
    "get_problem": "adjointbench.reference",
    "problems": "adjointbench.reference",
    # sweeps and their records
    "Cell": "adjointbench.suites.cells",
    "plan_cells": "adjointbench.suites.cells",
    "run_cell": "adjointbench.suites.runner",
    "run_sweep": "adjointbench.suites.sweep",
    "OUTCOMES": "adjointbench.suites.results",
    "Record": "adjointbench.suites.results",
    "ResultsFile": "adjointbench.suites.results",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'adjointbench' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *__all__])
