"""The oracle's second derivatives against Hessians known in closed form."""

import numpy as np
import pytest

from adjointbench.reference import get_problem, make_inputs, make_probes
from adjointbench.reference.problem import flatten
from adjointbench.reference.second_order import compute_second_order


def test_sin_has_hessian_minus_sin():
    problem = get_problem("scalar_sin")
    inputs = make_inputs(problem, 1)
    probes = make_probes(problem, 1, inputs, ())
    second = compute_second_order(problem, 1)
    x, u, w = float(inputs["x"]), float(probes.tangent["x"]), float(probes.cotangent)
    for v, estimate in zip(probes.projections, second.projected):
        expected = -np.sin(x) * w * u * float(v["x"])
        assert estimate.value == pytest.approx(expected, rel=1e-14, abs=1e-15)
        assert estimate.error <= 1e-14 * max(1.0, abs(expected))
    assert second.hessian.value == pytest.approx(np.array([[-np.sin(x) * w]]), rel=1e-14)


def test_l2_loss_hessian_is_the_difference_operator():
    problem = get_problem("l2_loss")
    size = problem.smallest_size
    inputs = make_inputs(problem, size)
    probes = make_probes(problem, size, inputs, ())
    second = compute_second_order(problem, size)
    w = float(probes.cotangent)
    n = size
    block = np.eye(n)
    full = {("y",): block, ("y", "y_ref"): np.block([[block, -block], [-block, block]])}
    expected = w * full[tuple(problem.differentiable)]
    assert np.max(np.abs(second.hessian.value - expected)) <= 1e-14 * np.max(np.abs(expected))


def test_matvec_second_derivative_is_bilinear():
    problem = get_problem("matvec")
    size = problem.sizes[1]  # not the smallest: projections only
    inputs = make_inputs(problem, size)
    y = inputs["A"] @ inputs["x"]
    probes = make_probes(problem, size, inputs, y.shape)
    second = compute_second_order(problem, size)
    assert second.hessian is None
    u, w = probes.tangent, probes.cotangent
    for v, estimate in zip(probes.projections, second.projected):
        expected = w @ (u["A"] @ v["x"] + v["A"] @ u["x"])
        assert estimate.value == pytest.approx(expected, rel=1e-13)


def test_the_full_hessian_is_symmetric_and_agrees_with_its_projections():
    problem = get_problem("softmax")
    size = problem.smallest_size
    inputs = make_inputs(problem, size)
    probes = make_probes(problem, size, inputs, np.shape(inputs["x"]))
    second = compute_second_order(problem, size)
    H = second.hessian.value
    assert np.max(np.abs(H - H.T)) <= 1e-15 * np.max(np.abs(H))
    u = flatten(probes.tangent, problem.differentiable)
    for v, estimate in zip(probes.projections, second.projected):
        assert flatten(v, problem.differentiable) @ H @ u == pytest.approx(estimate.value,
                                                                          rel=1e-12)
