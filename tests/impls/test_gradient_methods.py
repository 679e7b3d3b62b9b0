"""The shared gradient methods' finite differences: evaluated in blocks of
shifted parameter vectors, an ODE's block integrated as one system."""

import numpy as np
import pytest

from adjointbench.impls import gradient_methods
from adjointbench.impls.gradient_methods import fd_central, fd_forward, ode_loss, ode_losses
from adjointbench.impls.numpy.adjoint_ode import _neural, _oscillator
from adjointbench.reference import get_problem, make_inputs

A = np.array([[4.0, 1, 0, 0, 0, 0, 2], [1, 3, 1, 0, 0, 0, 0], [0, 1, 5, 1, 0, 0, 0],
              [0, 0, 1, 2, 1, 0, 0], [0, 0, 0, 1, 6, 1, 0], [0, 0, 0, 0, 1, 3, 1],
              [2, 0, 0, 0, 0, 1, 7]])
THETA = np.array([0.3, -1.2, 2.5, 0.0, -0.7, 4.0, 1e-3])


def cubic(theta):
    return 0.5 * theta @ A @ theta + np.sum(theta ** 3) / 3


def cubic_gradient(theta):
    return A @ theta + theta ** 2


@pytest.mark.parametrize("fd, rtol", [(fd_forward, 1e-6), (fd_central, 1e-9)])
def test_blocks_give_the_gradient_and_the_same_bits_as_one_block(fd, rtol, monkeypatch):
    whole = fd(cubic, THETA)
    np.testing.assert_allclose(whole, cubic_gradient(THETA), rtol=rtol, atol=rtol)
    monkeypatch.setattr(gradient_methods, "FD_CHUNK", 3)  # blocks of 3, 3 and 1
    calls = []
    rows = lambda block: calls.append(len(block)) or np.array([cubic(r) for r in block])
    assert np.array_equal(fd(cubic, THETA, rows), whole)
    assert calls == ([4, 4, 2] if fd is fd_forward else [6, 6, 2])


def _models():
    oscillator = get_problem("forced_oscillator_trajectory")
    neural = get_problem("neural_ode_params")
    for problem, size in ((oscillator, oscillator.smallest_size), (neural, 72)):
        inputs = make_inputs(problem, size)
        theta = inputs.pop("theta")
        model = (_oscillator if "oscillator" in problem.name else _neural)(len(theta), **inputs)
        yield pytest.param(model, theta, id=problem.name)


@pytest.mark.parametrize("model, theta", list(_models()))
def test_a_block_integrated_as_one_system_gives_each_rows_loss(model, theta):
    rng = np.random.default_rng(5)
    rows = theta + 1e-4 * np.maximum(1, np.abs(theta)) * rng.standard_normal((5, theta.size))
    one_by_one = np.array([ode_loss(model, row) for row in rows])
    together = ode_losses(model, rows)
    # both within the ODE tolerances of the truth: far closer than any difference quotient needs
    np.testing.assert_allclose(together, one_by_one, rtol=1e-9)
    # the k systems' right-hand side at once is each system's
    f_rows = model.f_rows(0.3, np.tile(model.z0, (len(rows), 1)), rows)
    np.testing.assert_allclose(f_rows, [model.f(0.3, model.z0, row) for row in rows],
                               rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("model, theta", list(_models()))
def test_block_differences_agree_with_the_adjoint(model, theta):
    adjoint = gradient_methods.ode_adjoint(model, theta)
    scale = np.max(np.abs(adjoint))
    np.testing.assert_allclose(fd_central(None, theta, lambda r: ode_losses(model, r)),
                               adjoint, atol=1e-7 * scale)
    np.testing.assert_allclose(fd_forward(None, theta, lambda r: ode_losses(model, r)),
                               adjoint, atol=1e-5 * scale)


def test_observations_without_weight_are_skipped_and_change_nothing(monkeypatch):
    """A zero-weighted observation adds nothing to J or its gradient: the model
    gives, to the bit, what the same model without those observations gives,
    and its integrations stop only at the weighted times."""
    problem = get_problem("forced_oscillator_trajectory")
    inputs = make_inputs(problem, problem.smallest_size)
    theta = inputs.pop("theta")
    weights = inputs["weights"].copy()
    weights[np.random.default_rng(3).permutation(len(weights))[:60]] = 0.0
    weights[-1] = 0.0  # nothing observed at T: no integration reaches it
    kept = np.flatnonzero(weights)
    zeroed = _oscillator(len(theta), **{**inputs, "weights": weights})
    removed = _oscillator(len(theta), **{**inputs, "times": inputs["times"][kept],
                                         "y_ref": inputs["y_ref"][kept], "weights": weights[kept]})
    assert [i for i, _, _ in zeroed.observed()] == kept.tolist()
    ends = []
    integrate = gradient_methods._integrate
    monkeypatch.setattr(gradient_methods, "_integrate",
                        lambda rhs, y0, t0, t1, dense=False: ends.append(t1) or
                        integrate(rhs, y0, t0, t1, dense))
    methods, reduced = gradient_methods.ode_methods(zeroed), gradient_methods.ode_methods(removed)
    assert ode_loss(zeroed, theta) == ode_loss(removed, theta)
    for name in methods:
        assert np.array_equal(methods[name](theta), reduced[name](theta)), name
    assert set(ends) <= set(inputs["times"][kept]) | {0.0}
    adjoint = methods["adjoint"](theta)
    np.testing.assert_allclose(adjoint, methods["forward_sensitivity"](theta),
                               rtol=1e-9, atol=1e-9 * np.max(np.abs(adjoint)))
