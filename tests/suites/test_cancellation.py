"""A right product whose terms cancel is no mismatch, and a wrong one still is.

J u, J^T w and H u are compared relative to the magnitudes of their terms
(|J| |u|, ...) where the oracle has the matrix, and softmax's condition
estimate is its Jacobian's own cancellation (README: What a cell checks).
The draws below are seeds where the built-in rules, right ones, were
mismatches before (found by sweeping seeds 9-28).
"""

import dataclasses

import numpy as np
import pytest

from adjointbench.impls.numpy import implementation as numpy_rules
from adjointbench.impls.rules import RuleImplementation
from adjointbench.reference.reductions import softmax_condition
from adjointbench.suites.cells import Cell
from adjointbench.suites.runner import magnitudes, run_cell

FLAGGED_BEFORE = [("l2_loss", "jvp", "float32", 18), ("softmax", "vjp", "float64", 12),
                  ("softmax", "jvp", "float64", 17), ("softmax", "vjp", "float32", 14)]


@pytest.mark.parametrize("problem, op, dtype, seed", FLAGGED_BEFORE)
def test_a_right_rule_whose_terms_cancel_is_ok(oracle, problem, op, dtype, seed):
    cell = Cell(problem, "numpy", op, 4, dtype, seed=seed)
    record = run_cell(cell, oracle, numpy_rules)
    assert record.outcome == "ok", record.message
    assert record.max_rel_err > 0  # rounding there, within the tolerance


class _Scaled(RuleImplementation):
    """The numpy softmax rule with its VJP scaled by 1 + 1e-9: wrong."""
    name = "scaled"
    rules = {"softmax": dataclasses.replace(
        numpy_rules.rules["softmax"],
        vjp=lambda s, s_bar: tuple(c * (1 + 1e-9) for c in numpy_rules.rules["softmax"].vjp(
            s, s_bar)))}


def test_a_wrong_rule_where_the_terms_cancel_is_still_a_mismatch(oracle):
    record = run_cell(Cell("softmax", "scaled", "vjp", 4, "float64", seed=12), oracle,
                      _Scaled())
    assert record.outcome == "mismatch", record.message


def test_magnitudes_are_the_terms_of_each_entry():
    J, u = np.array([[1.0, -1.0], [2.0, 3.0]]), np.array([1.0, 1.0])
    np.testing.assert_array_equal(J @ u, [0.0, 5.0])
    np.testing.assert_array_equal(magnitudes(J, u), [2.0, 5.0])


@pytest.mark.parametrize("n", [2, 4, 64])
def test_softmax_condition_at_equal_entries_is_its_diagonal_cancellation(n):
    """s = 1/n everywhere: the diagonal terms s and s^2 over s - s^2 give (n + 1) / (n - 1)."""
    assert softmax_condition(np.zeros(n)) == pytest.approx((n + 1) / (n - 1), rel=1e-12)


def test_softmax_condition_grows_as_one_entry_takes_over():
    """With s_1 -> 1 the diagonal entry s_1 (1 - s_1) cancels: about 2 / (1 - s_1)."""
    x = np.array([0.0, 0.0, 10.0])
    s = np.exp(x) / np.sum(np.exp(x))
    assert softmax_condition(x) == pytest.approx(2 / (1 - s[2]), rel=1e-3)
    batch = np.stack([np.zeros(3), x], axis=1)  # one softmax per column: the worst
    assert softmax_condition(batch) == softmax_condition(x)


def test_softmax_condition_is_that_of_its_dense_matrices_at_any_size():
    """The same number as max(diag(s) + s s^T) / max|diag(s) - s s^T| built
    densely (spread and saturated inputs, one entry), and at n = 100,000,
    where the dense matrices took 75 GiB each: the oracle's reference there
    (``Oracle().reference("softmax", 100000)``) raised MemoryError."""
    def dense(s):
        return np.max(np.diag(s) + np.outer(s, s)) / np.max(np.abs(np.diag(s) - np.outer(s, s)))

    rng = np.random.default_rng(3)
    for scale in (0.1, 2.0, 40.0, 400.0):
        for n in (2, 3, 17):
            x = scale * rng.standard_normal(n)
            s = np.exp(x - np.max(x)) / np.sum(np.exp(x - np.max(x)))
            assert softmax_condition(x) == dense(s)
    assert softmax_condition(np.ones(1)) == 2.0 / np.finfo(float).tiny  # s = 1: s - s^2 = 0
    assert softmax_condition(np.zeros(100_000)) == pytest.approx(100_001 / 99_999, rel=1e-12)
