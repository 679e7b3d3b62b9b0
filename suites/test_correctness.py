"""The correctness sweep: every problem x implementation x operation x size x
dtype x device of the catalogue, against the oracle and the identities.

Ids read ``test_vjp[numpy-linear_solve-n16-float32]``. Cells an
implementation does not support are skipped with its reason; nothing here
names an implementation.
"""

import pytest

from impls.protocol import DEVICES
from impls.registry import available_implementations
from suites.runner import ALL_OPS, make_cells, run_cell

# CUDA cells are always generated: where no GPU is visible they skip with the reason
CELLS = make_cells(available_implementations(), devices=DEVICES)


def cells_of(op):
    return pytest.mark.parametrize("cell", [c for c in CELLS if c.op == op], ids=lambda c: c.id)


def check(cell, oracle):
    record = run_cell(cell, oracle)
    if record.outcome == "unsupported":
        pytest.skip(record.message)
    assert record.outcome == "ok", f"{record.outcome}: {record.message}"


@cells_of("primal")
def test_primal(cell, sweep_oracle):
    check(cell, sweep_oracle)


@cells_of("jvp")
def test_jvp(cell, sweep_oracle):
    check(cell, sweep_oracle)


@cells_of("vjp")
def test_vjp(cell, sweep_oracle):
    check(cell, sweep_oracle)


@cells_of("jacfwd")
def test_jacfwd(cell, sweep_oracle):
    check(cell, sweep_oracle)


@cells_of("jacrev")
def test_jacrev(cell, sweep_oracle):
    check(cell, sweep_oracle)


@cells_of("transpose")
def test_transpose(cell, sweep_oracle):
    check(cell, sweep_oracle)


@cells_of("linearity")
def test_linearity(cell, sweep_oracle):
    check(cell, sweep_oracle)


def test_every_operation_has_a_test():
    assert {name[len("test_"):] for name in globals() if name.startswith("test_")} >= set(ALL_OPS)
