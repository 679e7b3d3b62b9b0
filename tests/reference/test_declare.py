"""Third-party problem declarations and the three reference sources."""

import dataclasses

import mpmath
import numpy as np
import pytest
import sympy

from adjointbench import declare_problem
from adjointbench.reference import (CERTIFY_RTOL, DeclarationError, compute_reference,
                                    make_inputs, make_probes)
from adjointbench.reference.catalogue import temporarily
from adjointbench.reference.namespace import F64, MP, NAMES
from adjointbench.reference.oracle import WEAKEST_REFERENCE, UncertifiedReference, WeakReference


def _vector(size, rng):
    return {"x": rng.standard_normal(size)}


def test_a_declaration_names_what_is_missing():
    with pytest.raises(DeclarationError, match="no reference source"):
        declare_problem("p", inputs=("x",), sizes=(4,), generate=_vector)
    with pytest.raises(DeclarationError, match="no input generator"):
        declare_problem("p", inputs=("x",), sizes=(4,), float64_primal=np.sin)
    with pytest.raises(DeclarationError, match="'y' named in differentiable"):
        declare_problem("p", inputs={"x": np.ones(2)}, differentiable=("y",),
                        float64_primal=np.sin)
    with pytest.raises(DeclarationError, match="Python identifier"):
        declare_problem("my problem", inputs={"x": np.ones(2)}, float64_primal=np.sin)
    with pytest.raises(DeclarationError, match="low < high"):
        declare_problem("p", inputs={"x": np.ones(2)}, domain={"x": (1.0, -1.0)},
                        float64_primal=np.sin)
    with pytest.raises(DeclarationError, match="'t' named in differentiable, domain or varied"):
        declare_problem("p", inputs={"x": np.ones(2)}, varied=("t",), float64_primal=np.sin)


_EXP = dict(primal=lambda xp, x: xp.exp(x))


@pytest.mark.parametrize("arguments, message", [
    (dict(inputs=_vector, sizes=(4,), **_EXP), "inputs= is the input names.*got a function "
     r"\(pass it as generate=\)"),
    (dict(inputs="xy", generate=_vector, sizes=(4,), **_EXP), "inputs= .* got a str"),
    (dict(inputs=("x",), generate=_vector, sizes=4, **_EXP), r"sizes= is a tuple .* got 4"),
    (dict(inputs=("x",), generate=_vector, sizes=(4,), condition="big", **_EXP),
     "condition= is a number or condition"),
    (dict(inputs=("x",), generate=lambda size, rng: {"y": np.ones(size)}, sizes=(4,), **_EXP),
     r"generate\(4, rng\) gave no 'x' \(it gave 'y'\)"),
    (dict(inputs=("x",), generate=lambda size, rng: [np.ones(size)], sizes=(4,), **_EXP),
     r"generate\(4, rng\) returned a list"),
    (dict(inputs=("x",), generate=lambda size, rng: {"x": np.random.uniform(0.1, 1, size)},
          sizes=(4,), **_EXP),
     r"generate\(4, rng\) gave other inputs when called again with the same seed: draw every "
     "random number from the rng it is given"),
    (dict(inputs=("x",), generate=_vector, sizes=(4, 16), primal=lambda xp, x, y: x),
     "its primal raised TypeError: .* missing 1 required positional argument: 'y' at its "
     "seeded inputs of size 4"),
    (dict(inputs=("x",), generate=_vector, sizes=(4,), primal=lambda xp, x: xp.arctan2(x, 1)),
     "its primal raised AttributeError: xp has no 'arctan2': a primal written against "
     "adjointbench.reference.namespace may use abs, asarray, cos"),
    (dict(inputs=("x",), generate=_vector, sizes=(4,), float64_primal=lambda x: "x"),
     "its primal gave .* not an array of numbers"),
    (dict(inputs=("x",), generate=_vector, sizes=(4,), float64_primal=np.log),
     "its primal is not finite at its seeded inputs of size 4"),
    (dict(inputs=("x",), generate=_vector, sizes=(4,), condition=lambda x: 1 / 0, **_EXP),
     "its condition raised ZeroDivisionError"),
])
def test_a_declaration_that_is_not_one_or_fails_when_evaluated_is_named(arguments, message):
    """Each was a bare TypeError, or passed the declaration and was then told
    as every implementation's error in a sweep (a primal that raises), or
    unseen where check_rules brought inputs of its own (generate's keys)."""
    with pytest.raises(DeclarationError, match=f"problem 'p' is not a complete problem "
                       f"declaration: {message}"):
        declare_problem("p", **arguments)


def test_a_condition_may_be_a_number():
    problem = declare_problem("p", inputs=("x",), generate=_vector, sizes=(4,), condition=30,
                              **_EXP)
    assert problem.condition(**make_inputs(problem, 4)) == 30.0


def test_varied_keeps_fixed_data_where_it_is_at_every_point():
    times = np.linspace(0.0, 1.0, 5)
    problem = declare_problem("decay", inputs={"k": np.array([0.7]), "t": times},
                              differentiable=("k",), varied=("k",),
                              float64_primal=lambda k, t: np.exp(-k * t))
    first = make_inputs(problem, problem.smallest_size)
    for point in (1, 2):
        moved = make_inputs(problem, problem.smallest_size, point=point)
        assert moved["k"][0] != first["k"][0]
        np.testing.assert_array_equal(moved["t"], times)
    nothing = dataclasses.replace(problem, varied=())
    np.testing.assert_array_equal(make_inputs(nothing, nothing.smallest_size, point=1)["k"],
                                  first["k"])
    everything = dataclasses.replace(problem, varied=None)
    assert not np.array_equal(make_inputs(everything, everything.smallest_size, point=1)["t"],
                              times)


def test_the_namespace_offers_the_same_names_in_both_precisions():
    x = np.array([0.3, -0.2, 2.0])
    for name in ("exp", "log1p", "tanh", "sin", "sqrt", "erf", "expm1", "cosh"):
        arg = np.abs(x) if name == "sqrt" else x
        hp = np.array([float(v) for v in getattr(MP, name)(MP.asarray(arg))])
        np.testing.assert_allclose(hp, getattr(F64, name)(arg), rtol=1e-15, err_msg=name)
    assert set(NAMES) <= set(dir(MP))
    assert float(MP.sum(MP.asarray(x))) == pytest.approx(F64.sum(x), rel=1e-15)


def _three_ways(name, closed_form, primal):
    """One function declared with each source, under one name (same inputs)."""
    base = declare_problem(name, inputs=("x",), sizes=(5, 12), generate=_vector,
                           domain={"x": (-2.0, 2.0)}, closed_form=closed_form)
    hp = dataclasses.replace(base, closed_form=None,
                             primal_mp=lambda x: primal(MP, x))
    f64 = dataclasses.replace(base, closed_form=None,
                              primal_float64=lambda x: primal(F64, x))
    return base, hp, f64


@pytest.mark.parametrize("size", [5, 12])
@pytest.mark.parametrize("point", [0, 1, 2])
def test_every_source_agrees_within_its_certified_error(size, point):
    problems = _three_ways("lse", lambda x: sympy.log(sum(sympy.exp(v) for v in x)),
                           lambda xp, x: xp.log(xp.sum(xp.exp(x))))
    references = []
    for problem in problems:
        with temporarily(problem):
            references.append(compute_reference(problem, size, point=point))
    exact, hp, f64 = references
    assert [r.method for r in references] == ["exact", "fd", "fd64"]
    for other in (hp, f64):
        for a, b in ((exact.jvp, other.jvp), (exact.value, other.value)):
            scale = np.max(np.abs(a.value))
            assert np.max(np.abs(a.value - b.value)) <= b.error + a.error + 1e-15 * scale
    assert hp.jvp.relative_error < 1e-13
    assert 0 < f64.jvp.relative_error < WEAKEST_REFERENCE
    if size == 5:  # full Jacobian at the smallest size
        assert np.max(np.abs(exact.jacobian.value - f64.jacobian.value)) <= f64.jacobian.error


@pytest.mark.parametrize("f, x", [
    (lambda xp, x: xp.sin(x), [1000.5, -3.0, 0.1]),      # a first step far too large
    (lambda xp, x: xp.exp(x), [20.0, -30.0]),            # scales far apart
    (lambda xp, x: xp.sqrt(x), [1e-3, 4.0]),             # a step that leaves the domain
    (lambda xp, x: xp.tanh(50 * x), [0.01, -0.02, 0.3]),  # steep
    (lambda xp, x: x**3 - x, [1e5, 2.0]),                # large values
    (lambda xp, x: xp.sin(1 / x), [0.05, 0.3]),          # fast oscillation
])
def test_float64_extrapolation_never_claims_more_than_it_has(f, x):
    """Its error estimate bounds its distance from the 40-digit reference."""
    x = np.array(x)
    hp = declare_problem("hard", inputs={"x": x}, primal=f)
    f64 = dataclasses.replace(hp, primal_mp=None)
    for point in range(3):
        with temporarily(hp):
            exact = compute_reference(hp, hp.sizes[0], point=point)
        with temporarily(f64):
            approx = compute_reference(f64, f64.sizes[0], point=point)
        for a, b in ((exact.jacobian, approx.jacobian), (exact.jvp, approx.jvp)):
            assert np.max(np.abs(a.value - b.value)) <= b.error + a.error


def test_a_reference_too_weak_to_judge_is_refused_not_passed():
    noisy = declare_problem("kinked", inputs={"x": np.array([1e-12, 2.0])},
                            float64_primal=lambda x: np.sqrt(np.abs(x)))
    with temporarily(noisy):
        reference = compute_reference(noisy, noisy.sizes[0])
    with pytest.raises(WeakReference, match="too weak to judge"):
        reference.jvp.certified("jvp")
    assert issubclass(WeakReference, UncertifiedReference)


# Forms that cancel inside, before their output: at 40 digits they round to
# nothing (1 + e^-100 is 1; cos(1e-30) is 1), so the oracle must take more
# digits, or refuse; never certify the rounded-away value.
def _softplus_truth(x):
    with mpmath.workdps(60):
        value = [float(mpmath.log1p(mpmath.exp(v))) for v in x]
        slope = [float(1 / (1 + mpmath.exp(-v))) for v in x]
    return np.array(value), np.array(slope)


def _versine_truth(x):  # (1 - cos x) / x^2 = 1/2 - x^2/24 + ...: exact at |x| < 1e-20
    return np.full(np.shape(x), 0.5), -np.asarray(x) / 12


CANCELLING = {
    "naive_softplus": (dict(primal=lambda xp, x: xp.log(1 + xp.exp(x))), [-100.0, -95.0],
                       _softplus_truth),
    "versine": (dict(closed_form=lambda t: (1 - sympy.cos(t)) / t**2, elementwise=True),
                [1e-30, 2e-25], _versine_truth),
}


@pytest.mark.parametrize("point", [0, 1, 2])
@pytest.mark.parametrize("name", CANCELLING)
def test_a_form_that_cancels_inside_is_certified_right_or_not_at_all(name, point):
    source, x, truth = CANCELLING[name]
    problem = declare_problem(name, inputs={"x": np.array(x)}, **source)
    with temporarily(problem):
        reference = compute_reference(problem, problem.sizes[0], point=point)
    inputs = make_inputs(problem, problem.sizes[0], point=point)
    value, slope = truth(inputs["x"])
    tangent = make_probes(problem, problem.sizes[0], inputs, value.shape, 0, point).tangent["x"]
    for estimate, exact in ((reference.value, value), (reference.jvp, slope * tangent),
                            (reference.jacobian, np.diag(slope))):
        assert estimate.relative_error <= CERTIFY_RTOL, estimate
        assert np.max(np.abs(estimate.value - exact)) <= (
            estimate.error + 2.0**-52 * np.max(np.abs(exact))), (estimate, exact)


@pytest.mark.parametrize("point", [0, 1])
def test_a_feature_narrower_than_the_first_step_is_certified_from_a_smaller_one(point):
    """1 / (1 + 10^6 x^2) near 0: from the first step (1/16 over sqrt of the
    entries) the levels never agree; from one 2^10 times smaller they do."""
    problem = declare_problem("bump", inputs={"x": np.array([0.0005, 0.002])},
                              primal=lambda xp, x: 1 / (1 + 1e6 * x * x))
    with temporarily(problem):
        reference = compute_reference(problem, problem.sizes[0], point=point)
    inputs = make_inputs(problem, problem.sizes[0], point=point)
    x = inputs["x"]
    slope = -2e6 * x / (1 + 1e6 * x * x) ** 2
    tangent = make_probes(problem, problem.sizes[0], inputs, x.shape, 0, point).tangent["x"]
    for estimate, exact in ((reference.jvp, slope * tangent), (reference.jacobian, np.diag(slope))):
        assert estimate.relative_error <= CERTIFY_RTOL, estimate
        assert np.max(np.abs(estimate.value - exact)) <= 1e-14 * np.max(np.abs(exact))
