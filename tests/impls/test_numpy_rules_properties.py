"""Property-based tests of the hand-written NumPy rules against the oracle:
random sizes and values (hypothesis), the JVP against the oracle's J u, the
VJP through <J^T w, u> = <w, J u> with the oracle's J u."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from adjointbench.impls.numpy import implementation
from adjointbench.impls.protocol import Task
from adjointbench.reference import get_problem
from adjointbench.reference.oracle import directional_derivative
from adjointbench.reference.problem import float32_exact
from adjointbench.suites.compare import compare
from adjointbench.suites.tolerance import tolerance

# problem -> largest size drawn (the oracle runs in 40-digit arithmetic)
PROBLEMS = {"scalar_add": 1, "scalar_mul": 1, "scalar_sin": 1, "broadcast_sin": 64,
            "broadcast_tanh": 64, "l2_loss": 64, "softmax": 64, "matvec": 6, "matmul": 5,
            "linear_solve": 5}
VALUES = st.floats(-3, 3, allow_nan=False, width=32)


@st.composite
def problem_point(draw, name):
    """Inputs of random size and values, a tangent and a cotangent."""
    problem = get_problem(name)
    size = draw(st.integers(1, PROBLEMS[name]))
    shapes = {k: np.shape(v) for k, v in problem.generate(size, np.random.default_rng(0)).items()}
    inputs = {k: draw(arrays(np.float64, shape, elements=VALUES)) for k, shape in shapes.items()}
    if name == "linear_solve":  # keep A well conditioned: diagonally dominant
        n = shapes["A"][0]
        inputs["A"] = float32_exact(inputs["A"] + np.diag(3.0 * n + np.abs(inputs["A"]).sum(1)))
    tangent = {k: draw(arrays(np.float64, shapes[k], elements=VALUES))
               for k in problem.differentiable}
    return problem, size, inputs, tangent


def _run(problem, inputs, op, **kw):
    task = Task(problem.name, op, inputs, problem.differentiable, **kw)
    prepared = implementation.prepare(task)
    return prepared.to_numpy(prepared.run())


def _tol(problem, size, inputs, oracle_error):
    return tolerance("float64", problem.condition(**inputs), size, problem.accuracy_floor,
                     oracle_error)


@pytest.mark.parametrize("name", PROBLEMS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_jvp_and_vjp_match_the_oracle(name, data):
    problem, size, inputs, tangent = data.draw(problem_point(name))
    y = _run(problem, inputs, "primal")
    cotangent = data.draw(arrays(np.float64, np.shape(y), elements=VALUES))
    expected = directional_derivative(problem, inputs, tangent)
    tol = _tol(problem, size, inputs, expected.relative_error)

    # J u can cancel to zero (softmax along ones): measure the error against
    # max |J u| + max |u| max |y| rather than against zero
    jvp = _run(problem, inputs, "jvp", tangent=tangent)
    typical = max(np.max(np.abs(t)) for t in tangent.values()) * np.max(np.abs(y))
    scale = np.maximum(np.abs(expected.value), np.max(np.abs(expected.value)) + typical)
    result = compare(jvp, expected.value, tol, "jvp", problem.condition(**inputs), scale=scale)
    assert result.ok, result.message

    cotangents = _run(problem, inputs, "vjp", cotangent=cotangent)
    lhs_terms = [c * tangent[n] for c, n in zip(cotangents, problem.differentiable)]
    lhs = sum(float(np.sum(t)) for t in lhs_terms)
    rhs = float(np.sum(cotangent * expected.value))
    # J^T w can cancel to zero too (softmax with w along ones): include the
    # magnitude of the terms that cancel inside it
    scale = max(sum(float(np.sum(np.abs(t))) for t in lhs_terms),
                float(np.sum(np.abs(cotangent * expected.value))),
                typical * float(np.sum(np.abs(cotangent))), 1e-300)
    # and the oracle's own absolute error, carried by <w, J u> (an entry of J u
    # that is 0 comes out as high-precision noise, 1e-35, that no relative
    # level bounds)
    allowed = tol * scale + float(np.sum(np.abs(cotangent))) * expected.error
    assert abs(lhs - rhs) <= allowed, f"<J^T w, u> = {lhs!r}, <w, J u> = {rhs!r}"
