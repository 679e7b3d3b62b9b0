import numpy as np
import pytest

from adjointbench.reference import (PROBLEMS, UnknownNameError, get_problem, make_inputs, make_probes,
                       problems)
from adjointbench.reference.catalogue import origin

PRIMITIVE_NAMES = sorted(p.name for p in problems() if origin(p.name) == "built-in")

PRIMITIVES = {"scalar_add", "scalar_mul", "scalar_sin", "matvec", "matmul", "scalar_root",
              "l2_loss", "softmax", "linear_solve", "nonlinear_solve", "neural_ode"}


def test_all_twelve_primitives_are_declared():
    assert PRIMITIVES <= set(PROBLEMS)
    assert {"broadcast_sin", "broadcast_tanh"} <= set(PROBLEMS)  # broadcast: sin and tanh


@pytest.mark.parametrize("name", sorted(PROBLEMS))
def test_sized_problems_have_three_sizes(name):
    problem = get_problem(name)
    fixed_shape = problem.kind == "sensitivity" and len(problem.sizes) == 1
    assert problem.sizes == (1,) or fixed_shape or len(problem.sizes) >= 3


@pytest.mark.parametrize("name", ["scalar_add", "scalar_mul", "scalar_sin",
                                  "broadcast_sin", "broadcast_tanh"])
def test_scalar_and_elementwise_have_sympy_definitions(name):
    assert get_problem(name).closed_form is not None


@pytest.mark.parametrize("name", PRIMITIVE_NAMES)
def test_inputs_are_seeded_and_float32_exact(name):
    problem = get_problem(name)
    size = problem.sizes[-1]
    a, b = make_inputs(problem, size, seed=0), make_inputs(problem, size, seed=0)
    other = make_inputs(problem, size, seed=1)
    for key in problem.inputs:
        np.testing.assert_array_equal(a[key], b[key])
        if "float32" in problem.dtypes:  # one input for both dtypes' cells
            np.testing.assert_array_equal(a[key].astype(np.float32).astype(np.float64), a[key])
        assert a[key].dtype == np.float64
    fixed = problem.sizes == (1,) and problem.kind == "sensitivity" or name == "gd_trajectory"
    assert fixed or any(not np.array_equal(a[k], other[k]) for k in problem.inputs)


def test_probes_have_the_shapes_of_inputs_and_output():
    problem = get_problem("matvec")  # non-square: A is (n + 1) x n
    probes = make_probes(problem, 8, make_inputs(problem, 8), (9,))
    assert {k: v.shape for k, v in probes.tangent.items()} == {"A": (9, 8), "x": (8,)}
    assert probes.cotangent.shape == (9,)


@pytest.mark.parametrize("name", ["scalar_sin", "broadcast_sin", "matvec", "softmax"])
def test_input_points_differ_and_stay_in_the_domain(name):
    problem = get_problem(name)
    size = problem.smallest_size
    points = [make_inputs(problem, size, point=k) for k in range(3)]
    for key, (low, high) in problem.domain.items():
        for later in points[1:]:
            assert np.all((later[key] >= low) & (later[key] <= high))
            assert not np.array_equal(later[key], points[0][key])
    if name == "scalar_sin":  # the golden-ratio spread reaches cos x < 0 within three points
        assert any(np.cos(p["x"]) < 0 for p in points)


def test_linear_solve_matrices_are_well_conditioned():
    problem = get_problem("linear_solve")
    for size in problem.sizes:
        assert np.linalg.cond(make_inputs(problem, size)["A"]) < 10


def test_unknown_problem_names_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'softmax'"):
        get_problem("softmx")


def test_oscillator_reference_states_are_computed_once_whatever_the_callers_precision():
    """The oscillators' 100 closed-form reference states are the same inputs
    for a first caller at 50 digits and for every later one, and each caller
    gets its own copy (a caller that changes it changes no later input)."""
    import mpmath

    from adjointbench.reference import adjoint_ode, hp

    adjoint_ode._reference_states.cache_clear()
    with mpmath.workdps(50):
        first = adjoint_ode.reference_states()
    with mpmath.workprec(53):
        theta = hp.to_mp(adjoint_ode.OSCILLATOR_REF_THETA)
        expected = np.array([[float(v) for v in adjoint_ode.oscillator_state_mp(theta, mpmath.mpf(t))]
                             for t in adjoint_ode.observation_times()])
    assert np.array_equal(first, expected)
    assert np.array_equal(first[0], adjoint_ode.OSCILLATOR_Y0)  # y(0) = 0.5, y'(0) = 0
    first[:] = 0.0
    for name in ("forced_oscillator_terminal", "forced_oscillator_trajectory"):
        assert np.array_equal(make_inputs(get_problem(name), 4)["y_ref"], expected)
