"""adjointbench.testing: check_rules and check_function on the user's own functions."""

import contextlib
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from adjointbench.reference.declare import DeclarationError
from adjointbench.reference.oracle import ReferenceFailure
from adjointbench.testing import ClosedForm, HighPrecision, check_function, check_rules

X = np.linspace(-1.5, 2.0, 6)


def softplus(x):
    return np.log1p(np.exp(x))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softplus_jvp(args, tangents):
    return sigmoid(args[0]) * tangents[0]


def softplus_vjp(args, w):
    return (sigmoid(args[0]) * w,)


@pytest.mark.parametrize("reference, level", [
    (None, "fd64"),
    (HighPrecision(lambda xp, x: xp.log1p(xp.exp(x))), "fd"),
    (ClosedForm(lambda t: __import__("sympy").log(1 + __import__("sympy").exp(t)),
                elementwise=True), "exact"),
])
def test_right_rules_pass_against_each_reference(reference, level):
    result = check_rules(softplus, X, jvp=softplus_jvp, vjp=softplus_vjp, reference=reference)
    assert result.ok
    ops = {r.op for r in result.records}
    assert ops == {"jvp", "vjp", "linearity", "transpose"} | ({"primal"} if reference else set())
    assert {r.point for r in result.records} == {0, 1, 2}
    assert {r.level for r in result.records if r.op in ("jvp", "vjp")} == {level}
    # every measured error is within its tolerance, which includes the reference's own error
    for r in result.records:
        assert r.max_rel_err <= r.tol
        if r.oracle_err is not None:
            assert r.tol >= r.oracle_err


@pytest.mark.parametrize("scale", [1 + 1e-7, -1.0, 0.5])
def test_a_wrong_vjp_is_caught_with_the_full_message(scale):
    with pytest.raises(AssertionError) as caught:
        check_rules(softplus, X, vjp=lambda a, w: (scale * sigmoid(a[0]) * w,))
    message = str(caught.value)
    for part in ("vjp at input point 0: mismatch", "worst element", "rel > tol",
                 "condition estimate", "reference certified to", "float64 extrapolation",
                 "inputs at that point: x="):
        assert part in message, part
    assert all(line.count("at input point") <= 1 for line in message.splitlines())  # said once


def test_a_rule_right_only_at_the_first_point_is_caught():
    given = X.copy()

    def fitted_jvp(args, tangents):  # memorised at the given point
        return sigmoid(given) * tangents[0]

    with pytest.raises(AssertionError, match="jvp at input point 1: mismatch"):
        check_rules(softplus, X, jvp=fitted_jvp)


def test_a_rule_that_writes_into_its_cotangent_is_caught():
    def in_place(args, w):
        w *= sigmoid(args[0])
        return (w,)

    with pytest.raises(AssertionError, match="mutated its cotangent in place"):
        check_rules(softplus, X, vjp=in_place)


def test_a_rule_with_state_is_not_reentrant():
    calls = []

    def stateful(args, tangents):
        calls.append(1)
        return sigmoid(args[0]) * tangents[0] * (1 + 1e-3 * (len(calls) % 2))

    with pytest.raises(AssertionError, match="not reentrant"):
        check_rules(softplus, X, jvp=stateful)


def test_a_rule_that_returns_one_reused_buffer_is_caught():
    """Each call's values are right, but every call returns the same array:
    what a caller kept from one call changes at the next (a static output)."""
    out = np.empty_like(X)

    def into_one_buffer(args, tangents):
        out[...] = sigmoid(args[0]) * tangents[0]
        return out

    with pytest.raises(AssertionError, match="jvp at input point 1: mismatch: your function "
                       "changed a result it had already returned"):
        check_rules(softplus, X, jvp=into_one_buffer)
    check_rules(softplus, X, jvp=lambda args, t: sigmoid(args[0]) * t[0])  # a new array: ok


def test_a_rule_that_hands_out_a_pool_of_buffers_in_turn_is_caught_when_it_wraps():
    """Four arrays handed out in turn (two calls per point): what the first
    call at point 0 returned is overwritten at point 2, three calls after
    the execution that followed it."""
    pool = [np.empty_like(X) for _ in range(4)]

    def into_a_pool(args, tangents):
        pool.append(out := pool.pop(0))
        out[...] = sigmoid(args[0]) * tangents[0]
        return out

    with pytest.raises(AssertionError, match="jvp at input point 2: mismatch: your function "
                       "changed a result it had already returned"):
        check_rules(softplus, X, jvp=into_a_pool)


def test_a_scalar_returned_as_a_python_number_is_judged_by_the_precision_it_holds():
    """float(...) of a float32 result holds a float32 value: ok. The same
    sum taken in float64 is not float32's, and the mismatch says so."""
    x = X.astype(np.float32)
    jvp = lambda args, t: float(np.sum(2 * args[0] * t[0]))  # noqa: E731
    vjp = lambda args, w: (2 * args[0] * np.float32(w),)  # noqa: E731
    result = check_rules(lambda x: float(np.sum(x * x)), x, jvp=jvp, vjp=vjp)
    assert [r.outcome for r in result.records] == ["ok"] * 12
    in_float64 = lambda args, t: float(np.sum(2 * args[0].astype(np.float64) * t[0]))  # noqa: E731
    with pytest.raises(AssertionError, match="jvp output has dtype float64, expected float32 "
                       r"\(a Python float that float32 cannot hold exactly"):
        check_rules(lambda x: float(np.sum(x * x)), x, jvp=in_float64, vjp=vjp)


def test_several_arguments_and_argnums():
    def f(a, b):
        return a * np.sin(b)

    jvp = lambda args, t: np.sin(args[1]) * t[0] + args[0] * np.cos(args[1]) * t[1]  # noqa: E731
    vjp = lambda args, w: (np.sin(args[1]) * w, args[0] * np.cos(args[1]) * w)  # noqa: E731
    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.1, -0.7])
    assert check_rules(f, a, b, jvp=jvp, vjp=vjp).ok
    only_b = check_rules(f, a, b, vjp=lambda args, w: (args[0] * np.cos(args[1]) * w,), argnums=1)
    assert only_b.ok and "b" in only_b.records[0].message + "b"
    with pytest.raises(AssertionError, match="must return a tuple of 1 cotangents"):
        check_rules(f, a, b, vjp=vjp, argnums=1)


def test_arguments_that_are_not_floating_point_are_held_fixed():
    """An int power, a shift, a mode string, an index array: handed to every
    call as given, never differentiated nor moved between points (before, an
    int was made a float and differentiated in, so a right rule failed)."""
    power = lambda x, k: x ** k  # noqa: E731
    jvp = lambda args, t: args[1] * args[0] ** (args[1] - 1) * t[0]  # noqa: E731
    vjp = lambda args, w: (args[1] * args[0] ** (args[1] - 1) * w,)  # noqa: E731
    x = np.array([0.5, 2.0])
    for reference in (None, HighPrecision(lambda xp, x, k: x ** k)):
        assert check_rules(power, x, 3, jvp=jvp, vjp=vjp, reference=reference).ok
    with pytest.raises(AssertionError, match=r"(?s)jvp at input point 0: mismatch.*"
                       r"held fixed at every point \(not floating-point\): k=3"):
        check_rules(power, x, 3, jvp=lambda args, t: 3.001 * args[0] ** 2 * t[0])
    seen = []

    def gather(x, index, mode):
        seen.append((type(index[0]), mode))
        return x[index] ** 2 if mode == "square" else x[index]

    assert check_rules(gather, X, np.array([4, 0]), "square",
                       jvp=lambda a, t: 2 * a[0][a[1]] * t[0][a[1]],
                       vjp=lambda a, w: (np.bincount(a[1], 2 * a[0][a[1]] * w, len(X)),)).ok
    assert set(seen) == {(np.int64, "square")}
    in_k_too = check_rules(power, x, 3, argnums=(0, 1),  # an int you name is a real number
                           vjp=lambda a, w: (a[1] * a[0] ** (a[1] - 1) * w,
                                             np.sum(a[0] ** a[1] * np.log(a[0]) * w)))
    assert in_k_too.ok
    with pytest.raises(TypeError, match=r"no floating-point argument .* \(2.0, not 2\)"):
        check_rules(lambda x: x ** 2, 2, jvp=lambda a, t: 2 * a[0] * t[0])
    torch = pytest.importorskip("torch")
    shifted = lambda x, s: torch.roll(x, s) * x  # noqa: E731
    assert check_function(shifted, "torch-reverse", torch.tensor(X), 1).ok


def test_a_hessian_vector_product_rule_is_checked_against_a_high_precision_reference():
    """hvp(args, tangents, w): the Hessian of <w, f> along the tangents, one
    array per differentiable input; with symmetry <u, H v> = <v, H u>."""
    reference = HighPrecision(lambda xp, x, y: x * xp.sin(y))
    f = lambda x, y: x * np.sin(y)  # noqa: E731

    def hvp(scale):
        def rule(args, u, w):
            (x, y), (ux, uy) = args, u
            return (w * np.cos(y) * uy,
                    scale * w * np.cos(y) * ux - w * x * np.sin(y) * uy)
        return rule

    a, b = np.array([1.0, -2.0, 0.5]), np.array([0.3, 1.1, -0.7])
    result = check_rules(f, a, b, hvp=hvp(1.0), reference=reference)
    assert result.ok and {r.op for r in result.records} == {"primal", "hvp", "symmetry"}
    with pytest.raises(AssertionError, match="(?s)hvp at input point 0: mismatch.*"
                       "symmetry at input point 0: mismatch"):
        check_rules(f, a, b, hvp=hvp(1.001), reference=reference)
    with pytest.raises(ValueError, match="hvp= needs a reference the oracle can differentiate "
                       "twice"):
        check_rules(f, a, b, hvp=hvp(1.0))


def test_float32_is_judged_at_float32_accuracy():
    x32 = X.astype(np.float32)
    result = check_rules(softplus, x32, jvp=softplus_jvp, vjp=softplus_vjp)
    assert result.ok and {r.dtype for r in result.records} == {"float32"}
    assert max(r.tol for r in result.records) < 1e-4
    with pytest.raises(AssertionError, match="mismatch"):
        check_rules(softplus, x32, vjp=lambda a, w: ((1 + 1e-3) * sigmoid(a[0]) * w,))


def test_the_oracles_steps_out_of_the_domain_warn_no_one():
    """Differencing sqrt at 1e-3 steps below 0 (NaN, which the tableau drops):
    the user sees no RuntimeWarning for a point they never asked about."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = check_rules(np.sqrt, np.array([1e-3, 4.0]),
                             jvp=lambda a, t: 0.5 / np.sqrt(a[0]) * t[0],
                             vjp=lambda a, w: (0.5 / np.sqrt(a[0]) * w,))
    assert result.ok
    assert [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)] == []


def test_an_unjudgeable_reference_fails_instead_of_passing():
    with pytest.raises(AssertionError, match="too weak to judge"):
        check_rules(lambda x: np.sqrt(np.abs(x)), np.array([1e-12, 2.0]),
                    jvp=lambda a, t: 0.5 / np.sqrt(np.abs(a[0])) * np.sign(a[0]) * t[0],
                    points=1)


def test_a_derivative_that_is_zero_needs_a_high_precision_reference_and_is_told_so():
    """cos at 0, the point users reach for first: float64 differences give its
    derivative as 0 +- 1e-13, which no relative level certifies; 40 digits do."""
    rules = dict(jvp=lambda a, t: -np.sin(a[0]) * t[0], vjp=lambda a, w: (-np.sin(a[0]) * w,))
    with pytest.raises(AssertionError, match=r"stationary point .*\(reference=HighPrecision"):
        check_rules(np.cos, np.zeros(4), points=1, **rules)
    check_rules(np.cos, np.zeros(4), reference=HighPrecision(lambda xp, x: xp.cos(x)), **rules)
    with pytest.raises(AssertionError, match="jvp"):  # 0 is judged: a rule that is not 0 fails
        check_rules(np.cos, np.zeros(4), reference=HighPrecision(lambda xp, x: xp.cos(x)),
                    jvp=lambda a, t: -np.sin(a[0] + 1e-9) * t[0], vjp=rules["vjp"])


RELU_REFERENCES = [None, HighPrecision(lambda xp, x: xp.maximum(x, 0)),
                   ClosedForm(lambda t: __import__("sympy").Max(t, 0), elementwise=True)]


@pytest.mark.parametrize("reference", RELU_REFERENCES, ids=["fd64", "fd", "exact"])
@pytest.mark.parametrize("slope_at_0", [0.0, 0.5, 1.0])  # torch's relu, jnp.maximum, x >= 0
def test_a_kink_at_an_input_point_is_not_judged_whichever_convention(reference, slope_at_0):
    """At a kink the central differences give the mean of the one-sided
    derivatives: a reference certified there would flag torch's relu'(0) = 0
    and pass jnp.maximum's 1/2. Each convention is a right rule; none can be
    judged, so each check there fails as unsupported, naming the kink."""
    def slope(x):
        return np.where(x == 0, slope_at_0, (x > 0).astype(float))

    with pytest.raises(AssertionError) as caught:
        check_rules(lambda x: np.maximum(x, 0), np.array([-1.0, 0.0, 0.5, 2.0]),
                    jvp=lambda a, t: slope(a[0]) * t[0], vjp=lambda a, w: (slope(a[0]) * w,),
                    reference=reference, points=1)
    message = str(caught.value)
    assert "jvp at input point 0: unsupported" in message
    assert "vjp at input point 0: unsupported" in message
    assert "not differentiable at this input point" in message
    assert "mismatch" not in message


@pytest.mark.parametrize("reference", RELU_REFERENCES, ids=["fd64", "fd", "exact"])
def test_away_from_its_kink_a_piecewise_function_is_judged(reference):
    x = np.array([-1.0, 0.25, 0.5, 2.0])
    right = check_rules(lambda x: np.maximum(x, 0), x, jvp=lambda a, t: (a[0] > 0) * t[0],
                        vjp=lambda a, w: ((a[0] > 0) * w,), reference=reference, points=1)
    assert right.ok
    with pytest.raises(AssertionError, match="jvp at input point 0: mismatch"):
        check_rules(lambda x: np.maximum(x, 0), x, jvp=lambda a, t: (a[0] >= 0.5) * t[0],
                    reference=reference, points=1)


def test_an_infinite_slope_at_an_input_point_is_no_verdict_and_the_oracle_keeps_quiet():
    """sqrt at 0: the right rule's slope is inf there, and float64 differences
    do not converge (a step leaves the domain). That was a "mismatch: jvp
    output is not finite" of the right rule, under RuntimeWarnings of the
    oracle's own arithmetic. Now no verdict, saying why; a rule that gives
    NaN where the derivative is certified is still a mismatch."""
    def slope(x):
        return 0.5 / np.sqrt(x) + 1

    rules = dict(jvp=lambda a, t: slope(a[0]) * t[0], vjp=lambda a, w: (slope(a[0]) * w,))
    f = lambda x: np.sqrt(x) + x  # noqa: E731
    with warnings.catch_warnings(record=True) as caught, np.errstate(divide="ignore"):
        warnings.simplefilter("always")
        with pytest.raises(AssertionError) as failure:
            check_rules(f, np.array([0.0, 0.5, 1.0]), points=1, **rules)
    message = str(failure.value)
    assert "jvp at input point 0: unsupported: jvp output is not finite" in message
    assert "float64 differences of the primal do not converge at this input point" in message
    assert "mismatch" not in message
    assert [str(w.message) for w in caught if w.filename != __file__] == []
    with pytest.raises(AssertionError, match="jvp at input point 0: mismatch: jvp output is "
                       "not finite: nan"):
        check_rules(f, np.array([0.25, 0.5, 1.0]), points=1,
                    jvp=lambda a, t: slope(a[0]) * t[0] * np.nan)
    # points 1 and 2 move the zero entry, to -0.1 here: outside sqrt's domain, where
    # the float64 reference was NaN itself and the rule's NaN a mismatch
    with np.errstate(invalid="ignore", divide="ignore"), pytest.raises(AssertionError) as failure:
        check_rules(f, np.array([0.0, 0.5, 1.0]), points=3, jvp=rules["jvp"])
    outside = [r for r in failure.value.result.records if r.point > 0]
    assert outside and all(r.outcome == "unsupported" for r in outside)
    assert all("is not finite at input point" in r.message for r in outside)


def test_a_function_that_rounds_its_value_names_why_no_reference_can_judge_it():
    """Integer values (a piecewise-constant f) and float32 values at float64
    arguments (a cast inside f) both made float64 differences fail to
    converge, told as a reference "too weak to judge" at a feature near the
    point; the message now names the cause. Given a reference, the float32
    value is the primal's mismatch to tell."""
    x = np.linspace(0.1, 1.0, 5)
    with pytest.raises(TypeError, match="returns int64 values: it is piecewise constant"):
        check_rules(lambda x: np.floor(3 * x).astype(int), x, jvp=lambda a, t: 0 * t[0])
    rounded = lambda x: np.sin(x.astype(np.float32))  # noqa: E731
    rules = dict(jvp=lambda a, t: np.cos(a[0]) * t[0])
    with pytest.raises(TypeError, match=r"returns float32 at float64 arguments: it computes in "
                       r"a lower precision somewhere \(.astype\(np.float32\)"):
        check_rules(rounded, x, **rules)
    with pytest.raises(AssertionError, match="primal at input point 0: mismatch: .*dtype float32"):
        check_rules(rounded, x, reference=HighPrecision(lambda xp, x: xp.sin(x)), **rules)


JUMP_REFERENCES = [None, HighPrecision(lambda xp, x: xp.where(x == 0, 1 + 2 * x, x)),
                   ClosedForm(lambda t: __import__("sympy").Piecewise(
                       (1 + 2 * t, __import__("sympy").Eq(t, 0)), (t, True)), elementwise=True)]


@pytest.mark.parametrize("reference", JUMP_REFERENCES, ids=["fd64", "fd", "exact"])
@pytest.mark.parametrize("slope_at_0", [1.0, 2.0])  # the slope around 0, the branch's at 0
def test_a_value_unlike_those_around_it_is_not_judged_whichever_branch(reference, slope_at_0):
    """f(x) = x, but 1 + 2x at x == 0 (a branch taken only at the point, as a
    QR's sign convention at a degenerate matrix): the central differences
    give the slope around 0 and passed the rule of that branch, while the
    rule of the branch taken there (2, as JAX differentiates it) was a
    mismatch. Neither can be judged: both fail as unsupported, naming why."""
    def slope(x):
        return np.where(x == 0, slope_at_0, 1.0)

    with pytest.raises(AssertionError) as caught:
        check_rules(lambda x: np.where(x == 0, 1 + 2 * x, x), np.array([-1.0, 0.0, 0.5]),
                    jvp=lambda a, t: slope(a[0]) * t[0], vjp=lambda a, w: (slope(a[0]) * w,),
                    reference=reference, points=1)
    message = str(caught.value)
    assert "jvp at input point 0: unsupported" in message
    assert "a value at the point unlike the values around it" in message
    assert "mismatch" not in message
    x = np.array([-1.0, 0.25, 0.5])  # away from it, the same rules are judged
    assert check_rules(lambda x: np.where(x == 0, 1 + 2 * x, x), x, reference=reference,
                       jvp=lambda a, t: slope(a[0]) * t[0], points=1).ok


def test_a_high_precision_reference_written_with_float64_functions_is_named():
    """np.sin on mpmath's numbers raises inside the oracle, and math.sin
    rounds them to float64 (which was told as a kink of a smooth sin at every
    point): each names the fix, xp's functions, and no --problem (there is
    no sweep to leave it out of)."""
    x = np.linspace(0.1, 1.0, 5)
    rules = dict(jvp=lambda a, t: np.cos(a[0]) * t[0], vjp=lambda a, w: (np.cos(a[0]) * w,))
    with pytest.raises(ReferenceFailure) as caught:
        check_rules(np.sin, x, reference=HighPrecision(lambda xp, x: np.sin(x)), **rules)
    assert "xp.sin(x), not np.sin(x)" in str(caught.value)
    assert "not of your function: fix it" in str(caught.value)
    assert "--problem" not in str(caught.value)
    with pytest.raises(ReferenceFailure, match="computes in float64 somewhere"):
        check_rules(np.sin, x, reference=HighPrecision(
            lambda xp, x: xp.stack([math.sin(v) for v in x])), **rules)
    assert check_rules(np.sin, x, reference=HighPrecision(lambda xp, x: xp.sin(x)), **rules).ok
    with pytest.raises(ReferenceFailure, match=r"sympy.sin\(t\), not np.sin\(t\)"):
        check_rules(np.sin, x, reference=ClosedForm(np.sin, elementwise=True), **rules)


def test_forward_mode_through_a_reverse_only_rule_names_the_backend_that_checks_it():
    """jax.custom_vjp and a torch.autograd.Function without jvp: forward mode
    cannot go through them (the frameworks' own errors), and the message
    says to check them in reverse mode, where they pass."""
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")

    @jax.custom_vjp
    def sin(x):
        return jax.numpy.sin(x)
    sin.defvjp(lambda x: (jax.numpy.sin(x), x), lambda x, g: (jax.numpy.cos(x) * g,))

    x = np.linspace(0.1, 1.0, 4).astype(np.float32)
    torch_sin = _reverse_only(torch, "Sin", torch.sin, torch.cos)
    sin_reference = HighPrecision(lambda xp, x: xp.sin(x))
    for f, framework in ((sin, "jax"), (torch_sin.apply, "torch")):
        with pytest.raises(AssertionError, match="check it with 'jax-reverse' or 'torch-reverse'"):
            check_function(f, f"{framework}-forward", x)
        assert check_function(f, f"{framework}-reverse", x).ok
        # second order: forward inside ("Differentiation rule for 'custom_lin' not implemented")
        with pytest.raises(AssertionError, match="a nesting whose inner mode is reverse"):
            check_function(f, f"{framework}-reverse-over-forward", x, reference=sin_reference)
        assert check_function(f, f"{framework}-reverse-over-reverse", x,
                              reference=sin_reference).ok


def test_a_tuple_of_scalar_parameters_is_a_structure_not_one_array():
    """(scale, shift) as 0-d arrays was taken as one array of two numbers, so
    a jax.custom_vjp, whose cotangent must be a tuple like its argument,
    failed every check ("Custom VJP bwd rule must produce an output with the
    same container"); a list of plain numbers stays one array."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def layer(shift_scale):
        @jax.custom_vjp
        def affine(p, x):
            return p[0] * jnp.tanh(x) + p[1]

        def backward(saved, g):
            p, x = saved
            return ((jnp.sum(g * jnp.tanh(x)), shift_scale * jnp.sum(g)),
                    p[0] * (1 - jnp.tanh(x) ** 2) * g)
        affine.defvjp(lambda p, x: (affine(p, x), (p, x)), backward)
        return affine

    x = np.linspace(-1, 1, 4).astype(np.float32)
    p = (jnp.array(0.5, jnp.float32), jnp.array(2.0, jnp.float32))
    result = check_function(layer(1.0), "jax-reverse", p, x)
    assert result.ok and result.differentiated == ("p[0]", "p[1]", "x")
    with pytest.raises(AssertionError, match=r"vjp cotangent for input 'p\[1\]'"):
        check_function(layer(1.01), "jax-reverse", p, x)
    numbers = check_rules(lambda p, x: p[0] * np.tanh(x) + p[1], [0.5, 2.0], x.astype(float),
                          jvp=lambda a, t: t[0][0] * np.tanh(a[1]) + t[0][1]
                          + a[0][0] * (1 - np.tanh(a[1]) ** 2) * t[1])
    assert numbers.differentiated == ("p", "x")


def test_a_torch_function_that_leaves_torch_names_the_fix():
    """np.sin(x.detach().numpy()) inside: torch.func's own error ("Cannot
    access data pointer of Tensor that doesn't have storage") says nothing
    of the cause; the message names it."""
    torch = pytest.importorskip("torch")
    through_numpy = lambda x: torch.as_tensor(np.sin(x.detach().numpy()))  # noqa: E731
    with pytest.raises(AssertionError, match=r"takes its tensor out of torch \(.numpy\(\)"):
        check_function(through_numpy, "torch-reverse", torch.tensor(X))


def test_a_torch_function_that_returns_a_number_names_the_fix():
    """.item() inside: the default reference's float64 evaluation failed on
    "'float' object has no attribute 'detach'", which names neither cause
    nor fix."""
    torch = pytest.importorskip("torch")
    with pytest.raises(DeclarationError, match=r"returned a Python float .* \.item\(\), "
                       r"float\(\) or \.tolist\(\) take the value out of torch"):
        check_function(lambda x: torch.sin(x).sum().item(), "torch-reverse", torch.tensor(X))


@pytest.mark.parametrize("leaves", ["np.sin", "float()"])
def test_a_jax_function_that_leaves_jax_names_the_fix(leaves):
    """np.sin on a tracer, or float() of one: JAX's own errors
    (TracerArrayConversionError, ConcretizationTypeError) say what failed,
    not that the function must stay in jax.numpy."""
    jnp = pytest.importorskip("jax.numpy")
    f = {"np.sin": lambda x: np.sin(x), "float()": lambda x: jnp.sin(x) * float(x[0])}[leaves]
    with pytest.raises(AssertionError, match=r"takes a traced JAX array out of JAX .* compute "
                       r"with jax.numpy"):
        check_function(f, "jax-reverse", np.asarray(X, np.float32))


def test_a_torch_modules_weight_gradients_are_checked_through_functional_call():
    """The README's recipe: the weights as a dict argument, each an input."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())
    x = torch.randn(3)
    result = check_function(lambda p, x: torch.func.functional_call(module, p, (x,)),
                            "torch-reverse", dict(module.named_parameters()), x)
    assert result.ok
    assert result.differentiated == ("p['0.weight']", "p['0.bias']", "x")


def test_a_float32_torch_module_is_checked_and_a_float32_closure_names_the_fix():
    """The default reference evaluates f in float64: a float32 nn.Module's
    weights against float64 arguments were a torch error ("mat1 and mat2
    must have the same dtype"), so no float32 module could be checked
    without a reference. Its weights are now taken in float64 there; a
    closure holding float32 weights says what to do."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    layer = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    x = torch.randn(3)
    assert check_function(layer, "torch-reverse", x).ok
    assert layer[0].weight.dtype == torch.float32  # the module itself untouched
    weights = layer[0].weight.detach().clone()  # float32
    with pytest.raises(AssertionError, match="vjp at input point 0: mismatch"):
        check_function(_with_wrong_backward(torch, layer), "torch-reverse", x)
    with pytest.raises(DeclarationError, match="Pass them as arguments"):
        check_function(lambda v: torch.tanh(weights @ v), "torch-reverse", x)
    weights_as_argument = lambda v, w: torch.tanh(w @ v)  # noqa: E731
    assert check_function(weights_as_argument, "torch-reverse", x, weights, argnums=0).ok


def _with_wrong_backward(torch, module):
    """``module`` whose VJP is 1.001 times the true one."""
    class Scaled(torch.autograd.Function):
        @staticmethod
        def forward(y):
            return y.clone()

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, g):
            return 1.001 * g

    class Wrong(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def forward(self, v):
            return Scaled.apply(self.inner(v))
    return Wrong()


PARAMS = {"w": np.array([[0.3, -1.2, 0.5], [0.8, 0.1, -0.4]]), "b": np.array([0.2, -0.7])}
XS = np.array([0.6, -0.3, 1.1])


def _dense_rules(scale_b: float):
    """tanh(p['w'] x + p['b']) with its rules, p a dict; the VJP's cotangent
    for p['b'] scaled by ``scale_b``."""
    f = lambda p, x: np.tanh(p["w"] @ x + p["b"])  # noqa: E731

    def jvp(a, t):
        (p, x), (tp, tx) = a, t
        return (1 - f(p, x) ** 2) * (tp["w"] @ x + p["w"] @ tx + tp["b"])

    def vjp(a, w):
        p, x = a
        d = w * (1 - f(p, x) ** 2)
        return {"w": np.outer(d, x), "b": scale_b * d}, p["w"].T @ d
    return f, jvp, vjp


def test_parameters_in_a_dict_or_a_tuple_are_differentiated_in_not_held_fixed():
    """A dict (or tuple) of parameter arrays was held fixed as a constant:
    "12 of 12 checks ok" of a custom_vjp whose parameter gradient was wrong,
    never looked at. Each array in it is now an input, named by where it
    sits; rules get tangents and give cotangents in the argument's
    structure."""
    f, jvp, vjp = _dense_rules(1.0)
    reference = HighPrecision(lambda xp, p, x: xp.tanh(p["w"] @ x + p["b"]))
    assert check_rules(f, PARAMS, XS, jvp=jvp, vjp=vjp, reference=reference).ok
    with pytest.raises(AssertionError, match=r"vjp cotangent for input \"p\['b'\]\""):
        check_rules(f, PARAMS, XS, jvp=jvp, vjp=_dense_rules(1.001)[2])
    with pytest.raises(AssertionError, match=r"the cotangent for p has no \['b'\]"):
        check_rules(f, PARAMS, XS, vjp=lambda a, w: ({"w": vjp(a, w)[0]["w"]}, vjp(a, w)[1]))
    only_p = check_rules(f, PARAMS, XS, vjp=lambda a, w: (vjp(a, w)[0],), argnums=0)
    assert {r.op for r in only_p.records} == {"vjp"}
    assert only_p.differentiated == ("p['w']", "p['b']") and only_p.held_fixed == ("x",)
    assert "  differentiated in: p['w'], p['b']\n  held fixed: x" in str(only_p)
    # a constant inside the dict (an activation's name) is listed as held fixed too
    named = check_rules(lambda p, x: f(p, x), {**PARAMS, "act": "tanh"}, XS,
                        vjp=lambda a, w: (vjp(a, w)[0],), argnums=0)
    assert named.held_fixed == ("x", "p['act']")
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def layer(scale_b):
        @jax.custom_vjp
        def dense(p, x):
            return jnp.tanh(p[0] @ x + p[1])

        def backward(saved, g):
            p, x = saved
            d = g * (1 - dense(p, x) ** 2)
            return (jnp.outer(d, x), scale_b * d), p[0].T @ d
        dense.defvjp(lambda p, x: (dense(p, x), (p, x)), backward)
        return dense

    weights = tuple(np.asarray(PARAMS[k], np.float32) for k in ("w", "b"))
    assert check_function(layer(1.0), "jax-reverse", weights, XS.astype(np.float32)).ok
    with pytest.raises(AssertionError, match=r"vjp cotangent for input 'p\[1\]'"):
        check_function(layer(1.001), "jax-reverse", weights, XS.astype(np.float32))


def test_a_pytree_class_of_its_own_is_differentiated_in_not_held_fixed():
    """A JAX pytree node of a class of its own (a ``register_dataclass``
    like an Equinox module or a flax struct) among the arguments was held
    fixed whole: "12 of 12 checks ok" of a custom_vjp that zeroed its weight
    gradient, and "held fixed: p" last. Its arrays are inputs now, named by
    key; rules get and give its class; one that returns one is checked
    through its children."""
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    import dataclasses

    @jax.tree_util.register_dataclass
    @dataclasses.dataclass
    class Dense:
        w: np.ndarray
        b: np.ndarray
        act: str = dataclasses.field(default="tanh", metadata={"static": True})
        steps: int = 2  # a child that is not floating-point: held fixed

    def layer(scale_w):
        @jax.custom_vjp
        def dense(p, x):
            return jnp.tanh(p.w @ x + p.b) * p.steps

        def backward(saved, g):
            p, x = saved
            d = g * p.steps * (1 - jnp.tanh(p.w @ x + p.b) ** 2)
            return Dense(scale_w * jnp.outer(d, x), d, p.act, None), p.w.T @ d
        dense.defvjp(lambda p, x: (dense(p, x), (p, x)), backward)
        return dense

    p32 = Dense(*(np.asarray(PARAMS[k], np.float32) for k in ("w", "b")))
    right = check_function(layer(1.0), "jax-reverse", p32, XS.astype(np.float32))
    assert right.ok and right.differentiated == ("p.w", "p.b", "x")
    assert right.held_fixed == ("p.steps",)
    with pytest.raises(AssertionError, match=r"vjp cotangent for input 'p.w'"):
        check_function(layer(0.0), "jax-reverse", p32, XS.astype(np.float32))
    # NumPy rules on it: tangents and cotangents in its class
    p = Dense(PARAMS["w"], PARAMS["b"])
    f = lambda p, x: np.tanh(p.w @ x + p.b)  # noqa: E731

    def vjp(a, w, scale_b=1.0):
        (p, x), d = a, w * (1 - f(*a) ** 2)
        return Dense(np.outer(d, x), scale_b * d, p.act, None), p.w.T @ d

    jvp = lambda a, t: (1 - f(*a) ** 2) * (t[0].w @ a[1] + a[0].w @ t[1] + t[0].b)  # noqa: E731
    reference = HighPrecision(lambda xp, p, x: xp.tanh(p.w @ x + p.b))
    assert check_rules(f, p, XS, jvp=jvp, vjp=vjp, reference=reference).ok
    with pytest.raises(AssertionError, match=r"vjp cotangent for input 'p.b'"):
        check_rules(f, p, XS, vjp=lambda a, w: vjp(a, w, 1.001))
    with pytest.raises(AssertionError, match=r"the cotangent for p is a tuple, not a Dense "
                       r"with children .w, .b, .steps: give it in the structure"):
        check_rules(f, p, XS, vjp=lambda a, w: (tuple(vjp(a, w)[0].__dict__.values()), 0 * XS))

    @jax.tree_util.register_pytree_node_class
    class Pair:
        def __init__(self, y, s):
            self.y, self.s = y, s

        def tree_flatten(self):
            return (self.y, self.s), None

        @classmethod
        def tree_unflatten(cls, _, children):
            return cls(*children)

    def pair(p, x):  # a Pair out: the layer and its weights' energy, whose VJP is scaled below
        return Pair(f(p, x), np.sum(p.w ** 2))

    def pair_vjp(a, w, scale=1.0):
        inner = vjp(a, w.y)
        return Dense(inner[0].w + 2 * scale * w.s * a[0].w, inner[0].b, None, None), inner[1]

    assert check_rules(pair, p, XS, vjp=pair_vjp).ok
    with pytest.raises(AssertionError, match=r"vjp cotangent for input 'p.w'"):
        check_rules(pair, p, XS, vjp=lambda a, w: pair_vjp(a, w, 1.01))


def test_bad_calls_name_the_fix():
    with pytest.raises(TypeError, match="give the rules to check"):
        check_rules(softplus, X)
    with pytest.raises(TypeError, match="float32 or float64"):
        check_rules(softplus, np.arange(3), jvp=softplus_jvp)
    with pytest.raises(ValueError, match="points must be at least 1"):
        check_rules(softplus, X, jvp=softplus_jvp, points=0)
    with pytest.raises(ValueError, match="argument 'x' is empty"):
        check_rules(softplus, np.array([]), jvp=softplus_jvp)
    with pytest.raises(ValueError, match=r"argument 'x' holds nan at index \(1,\): the checks "
                       "need finite arguments"):
        check_rules(softplus, np.array([0.5, np.nan]), jvp=softplus_jvp)
    with pytest.raises(ValueError, match="argnums=5: give positions of the 1 argument"):
        check_rules(softplus, X, jvp=softplus_jvp, argnums=5)


def test_a_complex_or_low_precision_argument_is_refused_not_held_fixed():
    """A bfloat16 weight beside a float32 input was held fixed (its NumPy
    dtype is not of kind "f"; a torch bfloat16 tensor has no NumPy form), so
    its gradient went unchecked; float16 and complex arguments name the fix."""
    scaled = lambda x, w: np.sin(x) * np.asarray(w, np.float32)  # noqa: E731
    vjp = lambda a, g: (np.cos(a[0]) * np.asarray(a[1], np.float32) * g, 0 * g)  # noqa: E731
    x32 = X.astype(np.float32)
    with pytest.raises(TypeError, match=r"a float16 argument: .* convert it"):
        check_rules(scaled, x32, x32.astype(np.float16), vjp=vjp)
    with pytest.raises(TypeError, match=r"a complex argument \(complex128\): .* real and imaginary"):
        check_rules(softplus, X + 1j, jvp=softplus_jvp)
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match=r"a bfloat16 argument: .* convert it"):
        check_rules(scaled, x32, x32.astype(ml_dtypes.bfloat16), vjp=vjp)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"a bfloat16 argument: .* x.float\(\) in torch"):
        check_function(lambda x, w: torch.sin(x) * w.float(), "torch-reverse",
                       torch.tensor(x32), torch.tensor(x32).bfloat16())


def test_a_function_that_writes_to_its_argument_or_keeps_state_is_caught():
    """With the default reference nothing called f in the cell (its primal is
    checked only against an independent reference): an f that doubles its
    argument in place passed with a right rule; one that counts its calls
    made the reference's differences noise, told as a kink."""
    def doubling(x):
        x *= 2
        return x

    with pytest.raises(AssertionError, match="doubling mutated its input 'x' in place"):
        check_rules(doubling, X, jvp=lambda a, t: 2 * t[0])
    calls = []

    def counting(x):
        calls.append(1)
        return np.sin(x) + 1e-9 * len(calls)

    with pytest.raises(AssertionError, match="counting is not reentrant: its second call "
                       "differs from the first by 1e-09"):
        check_rules(counting, X, jvp=lambda a, t: np.cos(a[0]) * t[0])
    torch = pytest.importorskip("torch")

    def sine_of_doubled(x):
        return torch.sin(x.mul_(2))

    with pytest.raises(AssertionError, match="sine_of_doubled mutated its input 'x' in place"):
        check_function(sine_of_doubled, "torch-reverse", torch.tensor(X))


def test_a_function_that_raises_at_its_arguments_is_named_not_its_rules():
    """Its float64 evaluation, the default reference, raised: each rule's
    check was an error or ill-conditioned before, as if the rules were at fault."""
    def broken(x):
        raise TypeError("broken here")

    with pytest.raises(ValueError, match="broken cannot be checked at these arguments, its "
                       "reference fails there: its primal raised TypeError: broken here"):
        check_rules(broken, X, jvp=softplus_jvp)


def test_check_rules_imports_no_framework_and_no_sympy():
    code = ("import sys, numpy as np\n"
            "from adjointbench.testing import check_rules\n"
            "f = lambda x: np.sin(x)\n"
            "check_rules(f, np.ones(3), jvp=lambda a, t: np.cos(a[0]) * t[0])\n"
            "heavy = [m for m in ('sympy', 'jax', 'torch', 'scipy') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_check_function_through_jax_custom_vjp():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    def make(scale):
        @jax.custom_vjp
        def f(x):
            return jnp.sum(jnp.sin(x) ** 2)
        f.defvjp(lambda x: (f(x), x), lambda x, g: (scale * g * 2 * jnp.sin(x) * jnp.cos(x),))
        return f

    x = jnp.asarray(X, dtype=jnp.float32)
    x64 = jax.config.jax_enable_x64  # on when an earlier test in this process turned it on
    result = check_function(make(1.0), "jax-reverse", x)
    assert result.ok and {r.dtype for r in result.records} == {"float32"}
    with pytest.raises(AssertionError, match="vjp at input point 0: mismatch"):
        check_function(make(1.01), "jax-reverse", x)
    with pytest.raises(AssertionError, match="forward-mode"):  # custom_vjp has no JVP
        check_function(make(1.0), "jax-forward", x)
    assert jax.config.jax_enable_x64 == x64  # the float64 reference changed no setting
    with jax.enable_x64(False), pytest.raises(ValueError, match="float64 mode is off"):
        check_function(make(1.0), "jax-reverse", X)


def test_rules_of_a_function_with_outputs_of_several_shapes_are_checked():
    """(sin x, sum cos x): a tuple of tangents from the JVP, a tuple of
    cotangents handed to the VJP. Its reference failed before (an
    inhomogeneous array)."""
    f = lambda x: (np.sin(x), np.sum(np.cos(x)))  # noqa: E731
    jvp = lambda a, t: (np.cos(a[0]) * t[0], -np.sum(np.sin(a[0]) * t[0]))  # noqa: E731

    def vjp(sign):
        return lambda a, w: (np.cos(a[0]) * w[0] - sign * np.sin(a[0]) * w[1],)

    reference = HighPrecision(lambda xp, x: (xp.sin(x), xp.sum(xp.cos(x))))
    for given in (None, reference):
        assert check_rules(f, X, jvp=jvp, vjp=vjp(1.0), reference=given).ok
    with pytest.raises(AssertionError, match="vjp at input point 0: mismatch"):
        check_rules(f, X, jvp=jvp, vjp=vjp(-1.0))


def test_an_output_that_is_none_holds_nothing_to_check():
    """(y, None), an auxiliary output left empty, as JAX flattens it: f was
    refused ("'NoneType' object has no attribute 'reshape'"). The VJP is
    handed None there."""
    x = np.linspace(-1, 1, 5)
    handed = []

    def vjp(a, w):
        handed.append(w)
        return (np.cos(a[0]) * w[0],)

    assert check_rules(lambda x: (np.sin(x), None), x, vjp=vjp,
                       jvp=lambda a, t: (np.cos(a[0]) * t[0], None)).ok
    assert handed[0][1] is None
    jnp = pytest.importorskip("jax.numpy")
    assert check_function(lambda x: {"y": jnp.tanh(x), "aux": None}, "jax-reverse",
                          x.astype(np.float32)).ok


def test_outputs_in_a_dict_are_checked_through_every_entry():
    """{"s": sin x, "c": (sum cos x, x^2)}: the JVP's dict may list its keys
    in any order, the VJP is handed a dict of cotangents shaped like the
    outputs; a rule that drops one output's cotangent is caught. A dict was
    refused before ("its primal gave array({'s': ...}), not an array of
    numbers"), in check_function too."""
    f = lambda x: {"s": np.sin(x), "c": (np.sum(np.cos(x)), x ** 2)}  # noqa: E731
    jvp = lambda a, t: {"c": (-np.sum(np.sin(a[0]) * t[0]), 2 * a[0] * t[0]),  # noqa: E731
                        "s": np.cos(a[0]) * t[0]}

    def vjp(weight):
        return lambda a, w: (np.cos(a[0]) * w["s"] - weight * np.sin(a[0]) * w["c"][0]
                             + 2 * a[0] * w["c"][1],)

    reference = HighPrecision(lambda xp, x: {"c": (xp.sum(xp.cos(x)), x * x), "s": xp.sin(x)})
    for given in (None, reference):
        assert check_rules(f, X, jvp=jvp, vjp=vjp(1.0), reference=given).ok
    with pytest.raises(AssertionError, match="vjp at input point 0: mismatch"):
        check_rules(f, X, jvp=jvp, vjp=vjp(0.0))
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    layer = lambda x: {"value": jnp.tanh(x), "state": {"mean": jnp.mean(x)}}  # noqa: E731
    assert check_function(layer, "jax-reverse", jnp.asarray(X, dtype=jnp.float32)).ok
    torch = pytest.importorskip("torch")
    twisted = lambda x: {"value": torch.tanh(x), "state": [torch.mean(x.detach()) + x[0]]}
    with pytest.raises(AssertionError, match="mismatch"):  # not what it computes: detach drops
        check_function(twisted, "torch-reverse", torch.tensor(X),  # the mean's derivative
                       reference=HighPrecision(lambda xp, x: {
                           "value": xp.tanh(x), "state": [xp.sum(x) / x.size + x[0]]}))


def test_a_function_with_several_outputs_is_checked_through_them_all():
    """A tuple of outputs (a layer's value and its state) is one vector of
    their entries: an AttributeError of the reference ('tuple' object has no
    attribute 'detach') in torch, a pytree mismatch in JAX, before."""
    torch = pytest.importorskip("torch")

    def make(sign):
        class SinCos(torch.autograd.Function):
            @staticmethod
            def forward(x):
                return torch.sin(x), torch.cos(x).sum()

            @staticmethod
            def setup_context(ctx, inputs, output):
                ctx.save_for_backward(inputs[0])

            @staticmethod
            def backward(ctx, g_sin, g_sum):
                (x,) = ctx.saved_tensors
                return g_sin * torch.cos(x) - sign * g_sum * torch.sin(x)
        return SinCos.apply

    x = torch.tensor(X)
    assert check_function(make(1.0), "torch-reverse", x).ok
    reference = HighPrecision(lambda xp, x: (xp.sin(x), xp.sum(xp.cos(x))))  # a tuple too
    assert check_function(make(1.0), "torch-reverse", x, reference=reference).ok
    with pytest.raises(AssertionError, match="vjp at input point 0: mismatch"):
        check_function(make(-1.0), "torch-reverse", x)
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    both = lambda x: (jnp.sin(x), jnp.cos(x)[:2])  # noqa: E731
    assert check_function(both, "jax-forward", jnp.asarray(X, dtype=jnp.float32)).ok


def _reverse_only(torch, name: str, forward, derivative):
    """A torch.autograd.Function ``name`` of an elementwise ``forward``, with
    a backward (``derivative`` times g) and no jvp."""
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return derivative(x) * g

    return type(name, (torch.autograd.Function,), {
        "forward": staticmethod(lambda x: forward(x)),
        "setup_context": staticmethod(lambda ctx, inputs, output:
                                      ctx.save_for_backward(inputs[0])),
        "backward": staticmethod(backward)})


def test_check_function_through_a_torch_function():
    torch = pytest.importorskip("torch")

    Cube = _reverse_only(torch, "Cube", lambda x: x ** 3, lambda x: 3 * x ** 2)
    Wrong = _reverse_only(torch, "Wrong", lambda x: x ** 3, lambda x: 3 * x)
    x = torch.as_tensor(X)
    result = check_function(Cube.apply, "torch-reverse", x,
                            reference=HighPrecision(lambda xp, x: x * x * x))
    assert result.ok and result.function == "Cube.apply"
    with pytest.raises(AssertionError, match="(?s)Wrong.apply: .*vjp at input point 0: mismatch"):
        check_function(Wrong.apply, "torch-reverse", x)


def _classic(torch, name: str, derivative):
    """A torch.autograd.Function ``name`` of x ** 3 written the classic way
    (``forward(ctx, x)``, no setup_context), its backward ``derivative(x) g``."""
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return derivative(x) * g

    return type(name, (torch.autograd.Function,), {"forward": staticmethod(forward),
                                                    "backward": staticmethod(backward)})


def test_a_classic_torch_function_without_setup_context_is_checked_in_reverse_mode():
    """torch.func refuses an autograd.Function without setup_context, the way
    most are written: every check of one failed with its RuntimeError, where
    gradcheck checks it. The reverse modes go through torch.autograd.grad
    there now, and say so; forward mode names the fix."""
    torch = pytest.importorskip("torch")
    x, reference = torch.as_tensor(X), HighPrecision(lambda xp, x: x * x * x)
    Cube = _classic(torch, "Cube", lambda x: 3 * x ** 2)
    result = check_function(Cube.apply, "torch-reverse", x)
    assert result.ok and result.through.startswith("torch.autograd.grad")
    assert "differentiated through torch.autograd.grad: a torch.autograd.Function" in str(result)
    with pytest.raises(AssertionError, match="(?s)jvp at input point 0: mismatch.*"
                       "vjp at input point 0: mismatch"):
        check_function(_classic(torch, "Wrong", lambda x: 3.003 * x ** 2).apply,
                       "torch-reverse", x)
    with pytest.raises(AssertionError, match="no setup_context .* forward mode needs one"):
        check_function(Cube.apply, "torch-forward", x)
    assert check_function(Cube.apply, "torch-reverse-over-reverse", x, reference=reference).ok
    detached = _classic(torch, "Detached", lambda x: 3 * x.detach() ** 2)
    assert check_function(detached.apply, "torch-reverse", x).ok
    with pytest.raises(AssertionError, match="hvp at input point 0: mismatch"):
        check_function(detached.apply, "torch-reverse-over-reverse", x, reference=reference)
    # a function torch.func runs is differentiated by it, as before
    assert check_function(torch.sin, "torch-reverse", x).through == ""
    # the helper API's reverse modes, the same way
    from adjointbench.impls.backends import (hessian_vector_product, jacobian_vector_product,
                                             vector_jacobian_product)
    u = torch.linspace(-1.0, 1.0, len(X), dtype=torch.float64)
    for product in (vector_jacobian_product, jacobian_vector_product):
        assert torch.allclose(product(Cube.apply, "torch-reverse", x, u), 3 * x ** 2 * u)
    assert torch.allclose(hessian_vector_product(lambda x: Cube.apply(x).sum(),
                                                 "torch-reverse-over-reverse", x, u), 6 * x * u)


def test_a_once_differentiable_backward_has_its_vjp_judged_and_no_jvp_of_zero():
    """torch transposes the VJP of a backward marked @once_differentiable
    into a JVP of 0, without an error: check_function's torch-reverse called
    the right rule's JVP a mismatch ("got 0"), and its reverse-over-reverse
    Hessian was 0. The VJP is judged; the transposed JVP and the nestings
    through the backward say why they cannot be had."""
    torch = pytest.importorskip("torch")
    from torch.autograd.function import once_differentiable

    from adjointbench.impls.backends import NestingError, hessian_vector_product

    x = torch.as_tensor(X)

    def cube_backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * g

    modern = type("Modern", (torch.autograd.Function,), {
        "forward": staticmethod(lambda x: x ** 3),
        "setup_context": staticmethod(lambda ctx, inputs, output:
                                      ctx.save_for_backward(inputs[0])),
        "backward": staticmethod(once_differentiable(cube_backward))})
    classic = _classic(torch, "Classic", lambda x: 3 * x ** 2)
    classic.backward = staticmethod(once_differentiable(cube_backward))
    for function in (modern, classic):
        with pytest.raises(AssertionError) as failed:
            check_function(function.apply, "torch-reverse", x)
        outcomes = {(r.op, r.outcome) for r in failed.value.result.records}
        assert outcomes == {("vjp", "ok"), ("jvp", "error"), ("linearity", "error"),
                            ("transpose", "error")}
        assert "Your backward cannot be differentiated in its cotangent" in str(failed.value)
        assert "mismatch" not in str(failed.value)
    with pytest.raises(NestingError, match=r"Modern \(its backward @once_differentiable\)"):
        check_function(lambda x: modern.apply(x).sum(), "torch-reverse-over-reverse", x,
                       reference=HighPrecision(lambda xp, x: xp.sum(x * x * x)))
    with pytest.raises(NestingError, match="under forward-over-reverse, without an error"):
        hessian_vector_product(lambda x: modern.apply(x).sum(), "torch-forward-over-reverse",
                               x, x)


def test_a_backward_that_detaches_its_cotangent_has_its_vjp_judged_and_no_jvp_of_zero():
    """Reverse mode's JVP is the VJP's own VJP in its cotangent: a torch
    backward that detaches the cotangent, or a jax.custom_vjp that stops its
    gradient, gave 0 there, without an error, and a right rule's "jvp
    mismatch: got 0". A transposed JVP of exactly 0 where the VJP along a
    random cotangent is not (J u = 0 for a random u means J = 0) is now an
    error that says so; the VJP is judged."""
    torch = pytest.importorskip("torch")
    jax = pytest.importorskip("jax")

    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * g.detach()

    detaching = type("Detaching", (torch.autograd.Function,), {
        "forward": staticmethod(lambda x: x ** 3),
        "setup_context": staticmethod(lambda ctx, inputs, output:
                                      ctx.save_for_backward(inputs[0])),
        "backward": staticmethod(backward)})

    @jax.custom_vjp
    def cube(x):
        return x ** 3
    cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (3 * x ** 2 * jax.lax.stop_gradient(g),))
    x32 = np.asarray(X, np.float32)
    for f, backend, x in ((detaching.apply, "torch-reverse", torch.as_tensor(X)),
                          (cube, "jax-reverse", x32)):
        with pytest.raises(AssertionError) as failed:
            check_function(f, backend, x)
        outcomes = {(r.op, r.outcome) for r in failed.value.result.records}
        assert outcomes == {("vjp", "ok"), ("jvp", "error"), ("linearity", "error"),
                            ("transpose", "error")}
        assert "came out 0 where the VJP is not" in str(failed.value)
    # J^T 1 = 0 for a softmax: its transposed JVP is judged as before
    assert check_function(lambda x: torch.softmax(x, 0), "torch-reverse", torch.as_tensor(X)).ok

    # forward mode's VJP, the JVP's own VJP in its tangent: a tangent rule that detaches it
    def save(ctx, inputs, output):
        ctx.save_for_forward(inputs[0])
        ctx.save_for_backward(inputs[0])

    detached_tangent = type("DetachedTangent", (torch.autograd.Function,), {
        "forward": staticmethod(lambda x: x ** 3), "setup_context": staticmethod(save),
        "jvp": staticmethod(lambda ctx, t: 3 * ctx.saved_tensors[0] ** 2 * t.detach()),
        "backward": staticmethod(backward)})
    with pytest.raises(AssertionError) as failed:
        check_function(detached_tangent.apply, "torch-forward", torch.as_tensor(X))
    outcomes = {(r.op, r.outcome) for r in failed.value.result.records}
    assert outcomes == {("jvp", "ok"), ("linearity", "ok"), ("vjp", "error"),
                        ("transpose", "error")}
    assert "Your tangent rule (a jvp staticmethod" in str(failed.value)


def test_an_inputs_share_of_a_second_derivative_that_is_zero_is_judged():
    """sin(a) + b: b's share of H u is 0, which the 40-digit oracle gives as
    noise (1e-40) under the whole Hessian's error, and its own relative error
    was 5e22: every hvp check was ill_conditioned. It is certified with the
    whole now; a rule whose share is not 0 is caught."""
    a, b = np.array([0.5, -0.3]), np.array([0.2, 0.1])
    reference = HighPrecision(lambda xp, a, b: xp.sin(a) + b)

    def hvp(share_of_b):
        return lambda args, t, w: (-np.sin(args[0]) * t[0] * w,
                                   share_of_b * np.sin(args[0]) * t[0] * w)

    assert check_rules(lambda a, b: np.sin(a) + b, a, b, hvp=hvp(0.0), reference=reference).ok
    with pytest.raises(AssertionError, match="hvp at input point 0: mismatch: hvp \\(H u\\) for "
                       "input 'b'.* want 0;"):
        check_rules(lambda a, b: np.sin(a) + b, a, b, hvp=hvp(1e-9), reference=reference)


def test_check_function_checks_second_derivatives_through_each_nesting():
    """A second-order backend checks the Hessian of <w, f> the framework
    computes through your rule: a jax.custom_jvp whose tangent rule holds its
    primal fixed (stop_gradient) and a torch backward that detaches its saved
    input both pass every first-order check, and fail here."""
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    from adjointbench.impls.backends import NestingError
    from adjointbench.names import UnknownNameError

    cube_reference = HighPrecision(lambda xp, x: x * x * x)
    x32 = np.asarray(X, np.float32)

    def custom_cube(hold):
        cube = jax.custom_jvp(lambda x: x ** 3)
        cube.defjvp(lambda p, t: (cube(p[0]), 3 * hold(p[0]) ** 2 * t[0]))
        return cube

    right, held = custom_cube(lambda x: x), custom_cube(jax.lax.stop_gradient)
    for nesting in ("forward-over-reverse", "reverse-over-forward", "reverse-over-reverse",
                    "forward-over-forward"):
        assert check_function(right, f"jax-{nesting}", x32, reference=cube_reference).ok
    assert check_function(held, "jax-forward", x32, reference=cube_reference).ok
    with pytest.raises(AssertionError, match="hvp at input point 0: mismatch"):
        check_function(held, "jax-forward-over-reverse", x32, reference=cube_reference)

    Cube = _reverse_only(torch, "Cube", lambda x: x ** 3, lambda x: 3 * x ** 2)
    Detached = _reverse_only(torch, "Detached", lambda x: x ** 3, lambda x: 3 * x.detach() ** 2)
    x = torch.as_tensor(X)
    assert check_function(Cube.apply, "torch-reverse-over-reverse", x,
                          reference=cube_reference).ok
    assert check_function(Detached.apply, "torch-reverse", x, reference=cube_reference).ok
    with pytest.raises(AssertionError, match="hvp at input point 0: mismatch"):
        check_function(Detached.apply, "torch-reverse-over-reverse", x, reference=cube_reference)

    with pytest.raises(ValueError, match=r"second derivatives.*reference=HighPrecision"):
        check_function(right, "jax-forward-over-reverse", x32)
    with pytest.raises(UnknownNameError, match="jax-forward-over-reverse"):
        check_function(right, "jax-fwd-over-rev", x32, reference=cube_reference)
    from adjointbench.impls.torch import _loses_function_jvps  # this torch's defect, or none
    with (pytest.raises(NestingError, match="torch-reverse-over-reverse")
          if _loses_function_jvps() else contextlib.nullcontext()):
        check_function(_with_jvp(torch, Cube), "torch-forward-over-forward", x,
                       reference=cube_reference)


def _with_jvp(torch, function):
    """``function.apply`` with a jvp staticmethod too (3 x^2 t, for Cube)."""
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])
        ctx.x = inputs[0]

    return type(f"{function.__name__}WithJvp", (function,), {
        "setup_context": staticmethod(setup_context),
        "jvp": staticmethod(lambda ctx, t: 3 * ctx.x ** 2 * t)}).apply


def _softmax(x):
    e = np.exp(x - np.max(x))
    return e / np.sum(e)


def _softmax_jvp(args, tangents):  # the textbook rule, s (u - <s, u>)
    s = _softmax(args[0])
    return s * (tangents[0] - np.dot(s, tangents[0]))


def _softmax_vjp(args, w):
    s = _softmax(args[0])
    return (s * (w - np.dot(s, w)),)


def _saturation(x):
    """How much s_i (1 - s_i) cancels: about 2 / (1 - max s)."""
    return 2 / (1 - np.max(_softmax(x)))


SATURATED = np.array([0.0, 0.0, 9.0, 0.5])  # max s = 0.9997
SOFTMAX_40_DIGITS = HighPrecision(lambda xp, x: xp.exp(x - xp.max(x)) / xp.sum(xp.exp(x - xp.max(x))))


def test_a_saturated_softmax_rule_is_flagged_near_rounding_and_told_about_condition():
    """The textbook softmax rule (torch's too) rounds s_i near 1, so s_i (1 - s_i)
    is off by about eps / (1 - s_i) relative: within a few hundred tolerances
    at condition 1. The message says so and names condition=; given the
    cancellation as a condition estimate, the right rule passes."""
    with pytest.raises(AssertionError, match=r"within .* times its rounding tolerance(.|\n)*"
                                             r"condition="):
        check_rules(_softmax, SATURATED, jvp=_softmax_jvp, vjp=_softmax_vjp,
                    reference=SOFTMAX_40_DIGITS)
    result = check_rules(_softmax, SATURATED, jvp=_softmax_jvp, vjp=_softmax_vjp,
                         reference=SOFTMAX_40_DIGITS, condition=_saturation)
    assert result.ok
    assert max(r.max_rel_err / r.tol for r in result.records if r.op == "jvp") > 1e-3


def test_a_wrong_rule_fails_whatever_condition_and_gets_no_rounding_hint():
    wrong = lambda args, t: _softmax_jvp(args, t) * (1 + 1e-7)  # noqa: E731
    with pytest.raises(AssertionError) as failure:
        check_rules(_softmax, SATURATED, jvp=wrong, reference=SOFTMAX_40_DIGITS,
                    condition=_saturation)
    assert "jvp at input point" in str(failure.value)
    assert "condition=" not in str(failure.value)


def test_a_condition_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        check_rules(np.sin, X, jvp=lambda a, t: np.cos(a[0]) * t[0], condition=0.5)


def test_a_check_visits_the_same_input_points_whatever_ran_before_it():
    """Points 1, 2, ... and each point's probes are drawn from the name the
    check registers your function under, which held a counter of the checks
    run before in the process: a check passed alone and failed in a test suite (this file's
    saturated-softmax test did, once tests were added before it)."""
    rules = dict(jvp=lambda a, t: np.cos(a[0]) * t[0], vjp=lambda a, w: (np.cos(a[0]) * w,))

    def errors():
        result = check_rules(np.sin, X, **rules)
        return [(r.problem, r.op, r.point, r.max_rel_err) for r in result.records]

    first = errors()
    check_rules(np.cos, X, jvp=lambda a, t: -np.sin(a[0]) * t[0])
    assert errors() == first
    assert len({error for *_, error in first}) > 1  # the points differ from each other
