"""Adjoint-sensitivity problems: the design's values, every method against the
oracle, the unrolling curve, and the ill-conditioned system."""

import json

import numpy as np
import pytest

from adjointbench.cli import main
from adjointbench.reference import get_problem, make_inputs
from adjointbench.suites.sensitivity import make_gradient_cells, run_gradient_cell, run_unrolling_curve

IMPLS = ["numpy", "jax", "torch", "jax_implicit", "torch_implicit"]
SMALL = [c for c in make_gradient_cells(IMPLS, ops=("gradient",)) if c.size <= 100]


def test_the_worked_examples_keep_the_design_values():
    theta = lambda name: make_inputs(get_problem(name), get_problem(name).smallest_size)["theta"]
    np.testing.assert_array_equal(theta("linear_system"), [1, 1, 1])
    np.testing.assert_array_equal(theta("scalar_nonlinear"), [0.9, 0.9, 180])
    np.testing.assert_array_equal(theta("nonlinear_system"), [1, -2, 1, 1.2])
    np.testing.assert_array_equal(theta("forced_oscillator_terminal"), [0.4, 1.8, 0.6, 1.1])
    np.testing.assert_array_equal(theta("unrolled_gd"), [0.05])
    assert max(get_problem("diffusion").sizes) >= 10_000
    assert max(get_problem("neural_ode_params").sizes) >= 10_000


def test_linear_system_oracle_matches_the_adjoint_by_hand(oracle):
    A, b_true = np.array([[10.0, 2, 1], [2, 5, 1], [1, 1, 3]]), np.array([5.0, 4, 3])
    x = np.linalg.solve(A, np.ones(3))
    # J = 0.5 ||x - x_ref||^2, x = A^-1 theta:  dJ/dtheta = A^-T (x - x_ref)
    expected = np.linalg.solve(A.T, x - np.linalg.solve(A, b_true))
    got = oracle.reference("linear_system", 3).jacobian.value.ravel()
    np.testing.assert_allclose(got, expected, rtol=1e-14)


def test_every_method_is_offered_somewhere():
    methods = {(c.problem, c.method) for c in SMALL}
    for problem in ("linear_system", "scalar_nonlinear", "diffusion"):
        for method in ("fd_forward", "fd_central", "forward_sensitivity", "adjoint",
                       "unrolled", "implicit"):
            assert (problem, method) in methods
    for problem in ("forced_oscillator_terminal", "forced_oscillator_trajectory"):
        for method in ("forward_sensitivity", "adjoint", "unrolled"):
            assert (problem, method) in methods


@pytest.mark.parametrize("cell", SMALL, ids=lambda c: c.id)
def test_gradient_against_the_oracle(cell, oracle):
    record = run_gradient_cell(cell, oracle)
    if cell.problem == "nonlinear_system":
        assert record.outcome == "ill_conditioned", record
        assert "condition estimate" in record.message
        assert record.condition > 1e10
        return
    assert record.outcome == "ok", record.message
    assert record.method == cell.method
    assert len(record.value) == cell.size and record.time_median_s > 0 and record.rounds >= 3
    assert record.max_rel_err <= record.tol


@pytest.mark.parametrize("impl", ["jax", "torch"])
def test_unrolling_curve_matches_the_closed_form(impl):
    record = run_unrolling_curve(impl)
    assert record.outcome == "ok", record.message
    curve, closed = np.array(record.value), np.array(record.reference)
    t = np.arange(1001)
    np.testing.assert_allclose(closed, -0.1 * t * (1 - 0.1 * 0.05) ** (t - 1) * 0.5, rtol=1e-15)
    np.testing.assert_allclose(curve[1:], closed[1:], rtol=1e-12)


def test_implicit_answer_is_the_fixed_points(oracle):
    for impl in ("jax_implicit", "torch_implicit"):
        [cell] = make_gradient_cells([impl], ["unrolled_gd"], ops=("gradient",))
        record = run_gradient_cell(cell, oracle)
        assert record.outcome == "ok" and record.value == [0.0] and record.reference == [0.0]


def test_check_writes_method_value_and_reference(tmp_path):
    status = main(["check", "--problem", "linear_system", "--method", "adjoint,fd_central",
                   "--out", str(tmp_path), "--quiet"])
    assert status == 0
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {r["method"] for r in records} == {"adjoint", "fd_central"}
    for r in records:
        assert r["op"] == "gradient" and len(r["value"]) == 3 and len(r["reference"]) == 3
