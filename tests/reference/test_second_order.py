"""The oracle's second derivatives against Hessians known in closed form."""

import numpy as np
import pytest

from adjointbench.reference import get_problem, make_inputs, make_probes
from adjointbench.reference.declare import declare_problem
from adjointbench.reference.oracle import NotDifferentiable
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


def test_a_primal_that_cancels_inside_gets_its_hessian_at_more_digits():
    """log(1 + e^x) at x near -100: at 40 digits 1 + e^x is 1 and every second
    difference is 0; the oracle sees that twice the digits disagree and takes
    them. The Hessian of <w, f> is diag(w s (1 - s)), s the logistic sigmoid."""
    import mpmath

    from adjointbench import declare_problem
    from adjointbench.reference.catalogue import temporarily
    from adjointbench.reference.oracle import CERTIFY_RTOL

    problem = declare_problem("naive_softplus", inputs={"x": np.array([-100.0, -97.0])},
                              primal=lambda xp, x: xp.log(1 + xp.exp(x)))
    with temporarily(problem):
        second = compute_second_order(problem, problem.sizes[0])
    inputs = make_inputs(problem, problem.sizes[0])
    w = make_probes(problem, problem.sizes[0], inputs, (2,)).cotangent
    with mpmath.workdps(60):
        s = [1 / (1 + mpmath.exp(-x)) for x in inputs["x"]]
        exact = np.diag([float(wi * si * (1 - si)) for wi, si in zip(w, s)])
    assert second.hessian.relative_error <= CERTIFY_RTOL
    assert np.max(np.abs(second.hessian.value - exact)) <= (
        second.hessian.error + 2.0**-52 * np.max(np.abs(exact)))


@pytest.mark.parametrize("seed, point", [(0, 0), (10, 0)])
def test_a_hessian_that_is_zero_is_certified_zero(seed, point):
    """x + y has no curvature. At seed 0 its second differences round alike
    at 40 and 80 digits; at seed 10's first point the 40-digit extrapolation
    gives -8.3e-39 +- 2.9e-38, which an exact 0 at 80 digits made a "kink".
    Either way the oracle certifies 0 rather than refusing it (its 40 cells
    were unsupported at seed 10)."""
    from adjointbench.reference.oracle import CERTIFY_RTOL

    second = compute_second_order(get_problem("scalar_add"), 1, seed, point)
    for estimate in (second.hessian, *second.projected):
        assert np.all(estimate.certified("Hessian") == 0)
        assert estimate.relative_error <= CERTIFY_RTOL


def test_noise_around_zero_is_zero_but_a_kink_or_a_weak_estimate_is_not():
    from adjointbench.reference.oracle import Estimate, UncertifiedReference, VANISHING

    noise = Estimate(np.array([-8.3e-39, 2e-40]), 2.9e-38, "fd", 8.3e-39)
    assert noise.certified("x").tolist() == [0.0, 0.0] and noise.relative_error == 0
    with pytest.raises(NotDifferentiable):  # |x| at 0: central 0, one-sided 1
        Estimate(np.array([0.0]), 1.0, "fd", 1.0).certified("x")
    with pytest.raises(UncertifiedReference):  # within its error of 0, but not noise
        Estimate(np.array([1e-20]), 1e3 * VANISHING, "fd").certified("x")
    with pytest.raises(UncertifiedReference):  # a value above its error stays as it is
        Estimate(np.array([3e-31]), 2e-31, "fd").certified("x")


@pytest.mark.parametrize("kinked_probe", ["relu2_a", "relu2_0"])  # two probe draws
def test_a_kink_of_the_gradient_at_the_point_leaves_no_second_derivative_certified(kinked_probe):
    """relu(x)^2 / 2 has Hessian diag(x > 0), which jumps at 0; the central
    mixed difference gives the mean of the two sides there, which no rule
    need return. relu2_0's probes have u and v opposite at the kinked entry,
    the largest of each, so the first quadrant straddles the kink and gives
    the mean as well: only the second quadrant shows it."""
    x = np.array([-1.0, 0.0, 0.5])
    problem = declare_problem(kinked_probe, inputs={"x": x},
                              primal=lambda xp, x: xp.maximum(x, 0) ** 2 / 2)
    second = compute_second_order(problem, 3)
    for estimate in (second.hessian, *second.projected):
        with pytest.raises(NotDifferentiable, match="not differentiable"):
            estimate.certified("second derivative")


def test_a_value_unlike_those_around_it_leaves_no_second_derivative_certified():
    """x^2 / 2, but 1 + x^2 at 0 itself: the central mixed differences never
    look at f(x) and give the Hessian around it, 1; the quadrants' quotients
    grow as 1/h^2 there (ONE_SIDED_RATIO^2 from one step to the other)."""
    problem = declare_problem("jump_squared", inputs={"x": np.array([-1.0, 0.0, 0.5])},
                              primal=lambda xp, x: xp.where(x == 0, 1 + x**2, x**2 / 2))
    second = compute_second_order(problem, 3)
    for estimate in (second.hessian, *second.projected):
        with pytest.raises(NotDifferentiable, match="a value at the point unlike"):
            estimate.certified("second derivative")


def test_away_from_the_kink_the_hessian_of_relu_squared_is_certified_and_right():
    x = np.array([-1.0, 0.25, 0.5])
    problem = declare_problem("relu2_away", inputs={"x": x},
                              primal=lambda xp, x: xp.maximum(x, 0) ** 2 / 2)
    probes = make_probes(problem, 3, make_inputs(problem, 3), (3,))
    second = compute_second_order(problem, 3)
    expected = np.diag((x > 0) * probes.cotangent)
    assert np.allclose(second.hessian.certified("Hessian"), expected, rtol=1e-14, atol=1e-15)
    assert second.hessian.relative_kink <= 1e-16
