"""adjointbench: verify and benchmark automatic-differentiation rules.

The public API, re-exported from the layout's packages:

>>> from adjointbench import make_cells, run_sweep
>>> records = run_sweep(make_cells(["numpy"], ["linear_solve"], ["vjp"]), progress=False)
>>> {r.outcome for r in records}
{'ok'}
"""

from adjointbench.impls.backends import (BACKENDS, SampleMixingError, batched_jacobian,
                            jacobian_vector_product, vector_jacobian_product)
from adjointbench.impls import (Implementation, Prepared, Task, available_implementations,
                   load_implementation)
from adjointbench.reference import Oracle, get_problem, problems
from adjointbench.suites.results import OUTCOMES, Record, ResultsFile
from adjointbench.suites.runner import ALL_OPS, Cell, make_cells, run_cell
from adjointbench.suites.sweep import run_sweep

__version__ = "0.1.0"

__all__ = ["BACKENDS", "SampleMixingError", "batched_jacobian", "jacobian_vector_product",
           "vector_jacobian_product", "ALL_OPS", "Cell", "Implementation", "OUTCOMES", "Oracle", "Prepared", "Record",
           "ResultsFile", "Task", "available_implementations", "get_problem",
           "load_implementation", "make_cells", "problems", "run_cell", "run_sweep"]
