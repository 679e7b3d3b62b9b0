"""Batched Jacobians: stacked per-sample Jacobians, and sample mixing caught."""

import numpy as np
import pytest

from adjointbench.reference import get_problem, make_inputs
from adjointbench.reference.batched import batched_blocks
from adjointbench.suites.cells import plan_cells
from adjointbench.suites.sweep import run_sweep

BATCHED = ["batched_dense", "batched_softmax", "batched_sin", "batched_neural_ode"]


@pytest.mark.parametrize("name", BATCHED)
def test_oracle_jacobian_is_block_diagonal(name, oracle):
    problem = get_problem(name)
    size = problem.smallest_size
    reference = oracle.reference(name, size)
    x = make_inputs(problem, size)[problem.batch_input]
    blocks, outside = batched_blocks(reference.jacobian.value, reference.value.value.shape,
                                     x.shape)
    assert outside == 0.0
    assert blocks.shape[1:] == (x[..., 0].size, size)
    assert np.max(np.abs(blocks)) > 0


def test_batched_jacobian_cells_only_for_batched_problems():
    cells = plan_cells(["numpy"], ops=["batched_jacobian"])
    assert {c.problem for c in cells} == set(BATCHED)


def test_sample_mixing_is_reported_not_answered(plugins_on_path, oracle):
    cells = plan_cells(["batch_norm:implementation"], ["batched_dense"], ["batched_jacobian"])
    records = run_sweep(cells, oracle, progress=False)
    assert len(records) == 2 * len(get_problem("batched_dense").sizes)
    for record in records:
        assert record.outcome == "mismatch", record
        assert "mixes samples in batched_dense" in record.message
        assert "batch normalisation" in record.message


def test_mixing_check_passes_independent_samples(oracle):
    records = run_sweep(plan_cells(["numpy"], ["batched_dense"], ["batched_jacobian"]), oracle,
                        progress=False)
    assert [r.outcome for r in records] == ["ok"] * len(records)
