"""The frameworks' forced oscillator composes each interval's RK4 steps into
one affine map (impls/traceable/adjoint_ode.py). It must be the same scheme
as stepping: checked against RK4 written out step by step, in NumPy."""

import importlib

import numpy as np
import pytest

from adjointbench.impls.traceable.adjoint_ode import OSCILLATOR_SUBSTEPS, _oscillator_loss
from adjointbench.reference import get_problem, make_inputs

PROBLEMS = ("forced_oscillator_terminal", "forced_oscillator_trajectory")


def stepped_loss(theta, y0, times, y_ref, weights, components):
    """J by classical RK4 on z' = A z + g(t), one stage after another."""
    c, k, f, w = theta
    A = np.array([[0.0, 1.0], [-k, -c]])
    g = lambda t: np.array([0.0, f * np.cos(w * t)])
    rhs = lambda t, z: A @ z + g(t)
    observe = lambda i, z: weights[i] * 0.5 * np.sum(components * (z - y_ref[i]) ** 2)
    z, total = np.array(y0, dtype=float), observe(0, y0)
    for i in range(len(times) - 1):
        h = (times[i + 1] - times[i]) / OSCILLATOR_SUBSTEPS
        for j in range(OSCILLATOR_SUBSTEPS):
            t = times[i] + j * h
            k1 = rhs(t, z)
            k2 = rhs(t + h / 2, z + h / 2 * k1)
            k3 = rhs(t + h / 2, z + h / 2 * k2)
            k4 = rhs(t + h, z + h * k3)
            z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        total += observe(i + 1, z)
    return total


def _loss_in(framework: str, inputs: dict) -> float:
    """J by the framework's own code, its arrays put by its adapter."""
    pytest.importorskip(framework)
    if framework == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
    adapter = importlib.import_module(f"adjointbench.impls.{framework}")
    arrays = {k: adapter.FRAMEWORK.put(v, "float64", "cpu") for k, v in inputs.items()}
    return float(_oscillator_loss(adapter.XP, **arrays))


@pytest.mark.parametrize("framework", ["torch", "jax"])
@pytest.mark.parametrize("name", PROBLEMS)
@pytest.mark.parametrize("point", [0, 1, 2])
def test_composed_interval_maps_are_rk4_stepping(framework, name, point):
    inputs = make_inputs(get_problem(name), 4, 0, point)
    expected = stepped_loss(**{k: np.asarray(v, dtype=float) for k, v in inputs.items()})
    assert _loss_in(framework, inputs) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("name", PROBLEMS)
def test_the_stepped_scheme_is_the_oracles_loss_within_rk4_error(oracle, name):
    """The yardstick itself: RK4 with h = 20/99/20 is within 1e-7 of the
    exact J (the oracle's, from the closed-form solution)."""
    inputs = make_inputs(get_problem(name), 4, 0, 0)
    exact = float(oracle.reference(name, 4, 0, 0).value.value)
    stepped = stepped_loss(**{k: np.asarray(v, dtype=float) for k, v in inputs.items()})
    assert stepped == pytest.approx(exact, rel=1e-7)
