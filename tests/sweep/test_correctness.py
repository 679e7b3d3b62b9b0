"""The correctness sweep: every problem x implementation x operation x size x
dtype x device of the catalogue, against the oracle and the identities.

Ids read ``test_vjp[numpy-linear_solve-n16-float32]``. Cells an
implementation does not support are skipped with its reason; nothing here
names an implementation. ``ADJOINTBENCH_SWEEP=full`` runs every size.
"""

import os

import pytest

from adjointbench.impls.protocol import DEVICES, DTYPES
from adjointbench.impls.registry import available_implementations, load_implementation
from adjointbench.suites.cells import ALL_OPS, plan_cells
from adjointbench.suites.expected import expected_outcome, load_manifest
from adjointbench.suites.runner import run_cell

IMPLS = available_implementations()
# ADJOINTBENCH_SWEEP=full runs every size; the default keeps each problem's two
# smallest (as check --quick does), in both dtypes, at every input point.
SWEEPS = ("quick", "full")
SWEEP = os.environ.get("ADJOINTBENCH_SWEEP", "quick")
if SWEEP not in SWEEPS:
    raise ValueError(f"ADJOINTBENCH_SWEEP={SWEEP!r}: choose one of {', '.join(SWEEPS)}")
# CUDA cells are always generated: where no GPU is visible they skip with the reason
CELLS = plan_cells(IMPLS, dtypes=DTYPES, devices=DEVICES, quick=SWEEP == "quick")
MANIFESTS = {name: load_manifest(name, getattr(load_implementation(name), "expected_outcomes", None))
             or [] for name in IMPLS}


def check(cell, oracle):
    """ok, or the outcome the implementation's manifest declares for the cell."""
    record = run_cell(cell, oracle)
    if record.outcome == "unsupported":
        pytest.skip(record.message)
    expected = expected_outcome(record, MANIFESTS[cell.impl])
    assert record.outcome == expected, f"{record.outcome}: {record.message}"


def sweep_test(op):
    """``test_<op>``, parametrised over the cells of that operation."""
    @pytest.mark.parametrize("cell", [c for c in CELLS if c.op == op], ids=lambda c: c.id)
    def test(cell, sweep_oracle):
        check(cell, sweep_oracle)

    test.__name__ = f"test_{op}"
    return test


for _op in ALL_OPS:  # test_primal, test_jvp, test_vjp, ..., test_linearity
    globals()[f"test_{_op}"] = sweep_test(_op)
