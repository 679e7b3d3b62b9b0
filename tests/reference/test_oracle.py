"""The oracle: the exact path against sympy, the finite-difference path
against the exact one, certification, and the cache."""

import json
import math

import mpmath
import numpy as np
import pytest
import sympy

from adjointbench.reference import (CERTIFY_RTOL, ORACLE_VERSION, Oracle, UncertifiedReference,
                       compute_reference, get_problem, make_inputs, make_probes, problems)
from adjointbench.reference import cache as oracle_cache
from adjointbench.reference import oracle as oracle_module
from adjointbench.reference.catalogue import origin
from adjointbench.reference.declare import declare_problem
from adjointbench.reference.oracle import LowPrecisionPrimal, NotDifferentiable

# The built-in catalogue: plug-in problems (the example package's) test themselves
BUILT_IN = [p for p in problems(None) if origin(p.name) == "built-in"]
CLOSED_FORM = [p.name for p in BUILT_IN if p.kind == "primitive" and p.closed_form is not None]
FD_ONLY = [p.name for p in BUILT_IN if p.kind == "primitive" and p.closed_form is None]


def rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


def sympy_jvp(problem, size):
    """J u from sympy.diff, evaluated with evalf at 40 digits: no lambdify, no mpmath."""
    inputs = make_inputs(problem, size)
    value = compute_reference(problem, size).value.value
    tangent = make_probes(problem, size, inputs, value.shape).tangent
    if problem.elementwise:
        t = sympy.Symbol("t")
        derivative = sympy.diff(problem.closed_form(t), t)
        slopes = [float(derivative.evalf(40, subs={t: sympy.Float(x, 40)}))
                  for x in np.ravel(inputs["x"])]
        return np.reshape(slopes, np.shape(inputs["x"])) * tangent["x"]
    syms = sympy.symbols(problem.inputs)
    expr = problem.closed_form(*syms)
    subs = {s: sympy.Float(float(inputs[s.name]), 40) for s in syms}
    return np.array(sum(float(sympy.diff(expr, s).evalf(40, subs=subs)) * float(tangent[s.name])
                        for s in syms if s.name in problem.differentiable))


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_exact_path_matches_sympy(name):
    problem = get_problem(name)
    for size in problem.sizes[:2]:
        reference = compute_reference(problem, size, method="exact")
        assert reference.method == "exact"
        assert rel(reference.jvp.value, sympy_jvp(problem, size)) <= 1e-14


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_finite_differences_agree_with_exact_path(name):
    problem = get_problem(name)
    size = problem.smallest_size
    exact = compute_reference(problem, size, method="exact")
    fd = compute_reference(problem, size, method="fd")
    assert fd.method == "fd"
    assert rel(fd.value.value, exact.value.value) <= 1e-13
    assert rel(fd.jvp.value, exact.jvp.value) <= 1e-13
    assert rel(fd.jacobian.value, exact.jacobian.value) <= 1e-13
    for name_ in problem.differentiable:
        assert rel(fd.vjp[name_].value, exact.vjp[name_].value) <= 1e-13
    # and the estimate is honest: the true error is within it
    assert np.max(np.abs(fd.jvp.value - exact.jvp.value)) <= fd.jvp.error + exact.jvp.error


@pytest.mark.parametrize("name", FD_ONLY)
def test_every_reference_is_certified(name, oracle):
    problem = get_problem(name)
    for size in problem.sizes:
        reference = oracle.reference(name, size)
        for estimate in [reference.value, reference.jvp, *reference.projected]:
            assert estimate.relative_error <= CERTIFY_RTOL
        for estimate in [reference.jvp, *reference.projected]:  # no kink where there is none
            assert estimate.relative_kink <= 1e-3 * CERTIFY_RTOL


KINKED_AT_THE_POINT = {  # relu with an entry at 0, in each of the three paths
    "closed_form": dict(closed_form=lambda t: sympy.Max(t, 0), elementwise=True),
    "primal": dict(primal=lambda xp, x: xp.maximum(x, 0)),
    "float64_primal": dict(float64_primal=lambda x: np.maximum(x, 0)),
}


@pytest.mark.parametrize("source", KINKED_AT_THE_POINT)
def test_a_kink_at_the_point_leaves_the_value_and_no_derivative_certified(source):
    """The central difference of max(x, 0) at 0 converges at once, to 1/2:
    no derivative there is certified, and the reason is named."""
    problem = declare_problem(f"relu_{source}", inputs={"x": np.array([-1.0, 0.0, 0.5])},
                              **KINKED_AT_THE_POINT[source])
    reference = compute_reference(problem, 3)
    assert np.array_equal(reference.value.certified("primal"), [0.0, 0.0, 0.5])
    for estimate in (reference.jvp, reference.jacobian, *reference.vjp.values()):
        assert estimate.relative_kink > 0.1  # half the jump against the scale
        with pytest.raises(NotDifferentiable, match="not differentiable at this input point"):
            estimate.certified("jvp")
    # along a direction that leaves the kinked entry alone, the kink is not there
    along_others = oracle_module.directional_derivative(
        problem, {"x": np.array([-1.0, 0.0, 0.5])}, {"x": np.array([1.0, 0.0, 1.0])})
    assert np.allclose(along_others.certified("jvp"), [0.0, 0.0, 1.0], rtol=0, atol=1e-10)
    assert along_others.kink == 0 or along_others.relative_kink <= 1e-3 * CERTIFY_RTOL


JUMPED_AT_THE_POINT = {  # x, but 1 + 2x at 0 itself: a value unlike those around it
    "closed_form": dict(closed_form=lambda t: sympy.Piecewise((1 + 2 * t, sympy.Eq(t, 0)),
                                                              (t, True)), elementwise=True),
    "primal": dict(primal=lambda xp, x: xp.where(x == 0, 1 + 2 * x, x)),
    "float64_primal": dict(float64_primal=lambda x: np.where(x == 0, 1 + 2 * x, x)),
}


@pytest.mark.parametrize("source", JUMPED_AT_THE_POINT)
def test_a_value_unlike_those_around_it_leaves_no_derivative_certified(source):
    """The central difference never looks at f(x): it converged to the slope
    around the point (1), and a rule for the branch taken at the point (2,
    as JAX differentiates jnp.where, or a QR's sign convention at a
    degenerate matrix) was a mismatch. The one-sided differences grow as 1/h
    there: no derivative is certified, and the reason is named."""
    problem = declare_problem(f"jump_{source}", inputs={"x": np.array([-1.0, 0.0, 0.5])},
                              **JUMPED_AT_THE_POINT[source])
    reference = compute_reference(problem, 3)
    assert np.array_equal(reference.value.certified("primal"), [-1.0, 1.0, 0.5])
    for estimate in (reference.jvp, reference.jacobian, *reference.vjp.values()):
        with pytest.raises(NotDifferentiable, match="a value at the point unlike the values "
                           "around it"):
            estimate.certified("jvp")
    along_others = oracle_module.directional_derivative(
        problem, {"x": np.array([-1.0, 0.0, 0.5])}, {"x": np.array([1.0, 0.0, 1.0])})
    assert np.allclose(along_others.certified("jvp"), [1.0, 0.0, 1.0], rtol=0, atol=1e-10)


FLOAT64_INSIDE = {  # the same tanh, computed in float64 somewhere on the way
    "astype": lambda xp, x: xp.tanh(x.astype(float)),
    "float()": lambda xp, x: xp.stack([xp.tanh(float(v)) for v in x]),
    "math": lambda xp, x: xp.stack([math.tanh(v) for v in x]) * 2 - x + x,
}


@pytest.mark.parametrize("leak", FLOAT64_INSIDE)
def test_a_high_precision_primal_that_computes_in_float64_is_named(leak):
    """Its value does not move at 1e-20, so every one-sided difference is 0
    and each derivative was told as a kink, "not differentiable at this input
    point", of a smooth tanh. The declaration's fault is named instead."""
    problem = declare_problem(f"leaky_{leak}".replace("()", ""),
                              inputs={"x": np.array([-0.7, 0.2, 1.3])},
                              primal=FLOAT64_INSIDE[leak])
    with pytest.raises(LowPrecisionPrimal, match=r"does not move when its inputs move by 1e-20 "
                       r"either way .* computes in float64 somewhere"):
        compute_reference(problem, 3)


def test_a_derivative_that_vanishes_is_not_taken_for_a_float64_primal():
    """softmax along ones is constant: its 40-digit central difference is
    noise (3.5e-40) and the primal rightly does not move at 1e-20, which was
    told as LowPrecisionPrimal (a property test drew such a tangent)."""
    problem = get_problem("softmax")
    estimate = oracle_module.directional_derivative(problem, {"x": np.array([0.0, 1.0])},
                                                    {"x": np.ones(2)})
    assert np.all(estimate.certified("jvp") == 0)


def test_the_same_primal_in_high_precision_is_certified_and_a_real_kink_still_a_kink():
    """The check of a float64 primal asks only where a kink is found, and a
    kink moves on one side at least (max(x, 0) at 0 along +-u)."""
    problem = declare_problem("tanh_in_xp", inputs={"x": np.array([-0.7, 0.2, 1.3])},
                              primal=lambda xp, x: xp.tanh(x))
    reference = compute_reference(problem, 3)
    x = make_inputs(problem, 3)["x"]  # point 0: float32-exact
    np.testing.assert_allclose(reference.jacobian.certified("jacobian"),
                               np.diag(1 - np.tanh(x) ** 2), rtol=1e-14, atol=0)
    for relu in (lambda xp, x: xp.maximum(x, 0), lambda xp, x: xp.maximum(-x, 0)):
        kinked = declare_problem(f"relu_{id(relu)}", inputs={"x": np.array([0.0])}, primal=relu)
        with pytest.raises(NotDifferentiable):
            compute_reference(kinked, 1).jvp.certified("jvp")


def test_linear_solve_reference_solves_the_system(oracle):
    inputs = make_inputs(get_problem("linear_solve"), 8)
    x = oracle.reference("linear_solve", 8).value.value
    np.testing.assert_allclose(inputs["A"] @ x, inputs["b"], rtol=0, atol=1e-14)


def test_too_few_digits_is_refused(monkeypatch):
    """At 14 digits, with no more digits allowed, the differences cannot reach
    1e-13; the oracle says so."""
    monkeypatch.setattr(oracle_module, "DPS", 14)
    monkeypatch.setattr(oracle_module, "MP_PRECISION_RETRIES", 0)
    reference = compute_reference(get_problem("softmax"), 4, method="fd")
    assert reference.jvp.relative_error > CERTIFY_RTOL
    with pytest.raises(UncertifiedReference, match="cannot certify"):
        reference.jvp.certified("jvp")


# matvec (y = A x) at A = 0, x tiny, along (dA, dx) = (3/8, 1): J u = dA x
# exactly, while f(x +- h u) are about h^2 dA dx ~ 1e-3, so their difference
# 2h J u sits at the 40-digit rounding of the terms it cancels, and steps
# h / 2^k round alike (found by hypothesis: x = 2^-126, seed 20)
TINY = [2.0**-126, 2.0**-100, 3 * 2.0**-90]


def _cancelling_matvec(x):
    inputs = {"A": np.zeros((2, 1)), "x": np.array([x])}
    tangent = {"A": np.full((2, 1), 0.375), "x": np.array([1.0])}
    return oracle_module.directional_derivative(get_problem("matvec"), inputs, tangent)


@pytest.mark.parametrize("x", TINY)
def test_a_difference_that_cancels_is_still_certified_right(x):
    """The oracle works at more digits where rounding, not truncation, limits it."""
    estimate = _cancelling_matvec(x)
    exact = 0.375 * x  # exact in float64
    assert estimate.relative_error <= CERTIFY_RTOL
    assert np.all(np.abs(estimate.value - exact) <= estimate.error)
    assert rel(estimate.value, [exact, exact]) <= 2.0**-52


@pytest.mark.parametrize("x", TINY)
def test_at_fixed_digits_a_cancelling_difference_claims_its_rounding_error(x, monkeypatch):
    """Without more digits the same J u is off by up to 1e-5 relative: the error
    the oracle claims covers it, so it refuses to certify instead of vouching."""
    monkeypatch.setattr(oracle_module, "MP_PRECISION_RETRIES", 0)
    estimate = _cancelling_matvec(x)
    assert np.all(np.abs(estimate.value - 0.375 * x) <= estimate.error)
    if estimate.relative_error > CERTIFY_RTOL:
        with pytest.raises(UncertifiedReference, match="cannot certify"):
            estimate.certified("jvp")


def test_richardson_counts_rounding_that_every_level_shares():
    """Levels that agree because they round alike do not certify more than
    the rounding allows: a difference quotient exact but for a shared offset
    of 1e-30 is reported with an error of at least 1e-30."""
    with mpmath.workdps(40):
        offset = mpmath.mpf(10) ** -30
        result = oracle_module.richardson(
            lambda h: (np.array([1 + h * h + offset], dtype=object), mpmath.eps, offset),
            mpmath.mpf(1) / 16, mpmath.mpf(10) ** -25)
    assert abs(result.value[0] - 1) <= result.error
    assert result.floor >= offset and result.agreed


def test_at_too_few_digits_the_oracle_takes_more_where_rounding_stops_it(monkeypatch):
    """The same reference, allowed more digits, is certified and agrees with
    the 40-digit one: rounding, not the scheme, was what stopped it."""
    monkeypatch.setattr(oracle_module, "DPS", 14)
    reference = compute_reference(get_problem("softmax"), 4, method="fd")
    monkeypatch.setattr(oracle_module, "DPS", 40)
    full = compute_reference(get_problem("softmax"), 4, method="fd")
    assert reference.jvp.relative_error <= CERTIFY_RTOL
    assert rel(reference.jvp.value, full.jvp.value) <= reference.jvp.relative_error


def test_cache_is_json_keyed_by_problem_size_seed_and_version(tmp_path, monkeypatch):
    first = Oracle(tmp_path).reference("matvec", 8, seed=3)
    path = tmp_path / f"oracle-v{ORACLE_VERSION}" / "matvec-n8-s3-p0.json"
    data = json.loads(path.read_text())
    key = data["key"]
    assert (key["problem"], key["size"], key["seed"], key["point"], key["oracle_version"]) == \
        ("matvec", 8, 3, 0, ORACLE_VERSION)
    assert len(key["definition"]) == len(key["inputs"]) == 64 and data["checksum"]

    def no_recompute(*args, **kwargs):
        raise AssertionError("the cached reference was recomputed")

    monkeypatch.setattr("adjointbench.reference.cache.compute_reference", no_recompute)
    again = Oracle(tmp_path).reference("matvec", 8, seed=3)
    np.testing.assert_array_equal(again.jvp.value, first.jvp.value)
    assert again.jvp.error == first.jvp.error


def test_oracle_processes_compute_what_the_oracle_here_computes(tmp_path, monkeypatch):
    """A parallel sweep's oracle: threads asking at once get references
    computed in oracle processes, equal to those computed here, and cached."""
    import concurrent.futures

    asked = [("reference", "softmax", 4, 0), ("reference", "matvec", 8, 1),
             ("second_order", "softmax", 4, 2),
             ("reference", "softmax", 4, 0)]  # asked twice at once: computed once
    here = Oracle(tmp_path / "here")
    expected = [getattr(here, kind)(problem, n, point=q) for kind, problem, n, q in asked]

    def not_here(*args, **kwargs):
        raise AssertionError("computed in this process")

    for kind, (decode, _) in list(oracle_cache.KINDS.items()):
        monkeypatch.setitem(oracle_cache.KINDS, kind, (decode, not_here))
    elsewhere = Oracle(tmp_path / "elsewhere", processes=2)
    try:
        with concurrent.futures.ThreadPoolExecutor(4) as threads:
            got = list(threads.map(lambda a: getattr(elsewhere, a[0])(a[1], a[2], point=a[3]),
                                   asked))
    finally:
        elsewhere.close()
    without_time = lambda r: {k: v for k, v in r.to_json().items() if k != "seconds"}
    assert [without_time(r) for r in got] == [without_time(r) for r in expected]
    assert got[0] is got[3]
    assert len(list((tmp_path / "elsewhere").rglob("*.json"))) == 3


def test_a_cells_points_are_computed_side_by_side_once_expected(tmp_path, monkeypatch):
    here = [Oracle(tmp_path / "here").reference("softmax", 64, point=q) for q in range(3)]

    def not_here(*args, **kwargs):
        raise AssertionError("computed in this process")

    monkeypatch.setitem(oracle_cache.KINDS, "first", (oracle_cache.KINDS["first"][0], not_here))
    oracle = Oracle(tmp_path / "elsewhere", processes=2)
    try:
        oracle.expect("first", "softmax", 64, 0, range(3))
        assert len(oracle._started) == 3  # begun before any is asked for
        got = [oracle.reference("softmax", 64, point=q) for q in range(3)]
        assert not oracle._started
        oracle.expect("first", "softmax", 64, 0, range(3))  # known or cached: nothing begun
        assert not oracle._started
    finally:
        oracle.close()
    for ours, theirs in zip(got, here):
        np.testing.assert_array_equal(ours.jvp.value, theirs.jvp.value)
        assert ours.jvp.error == theirs.jvp.error


def test_a_problem_the_oracle_processes_cannot_see_is_computed_here(tmp_path):
    import dataclasses

    from adjointbench.reference.catalogue import temporarily

    only_here = dataclasses.replace(get_problem("scalar_sin"), name="only_in_this_process")
    oracle = Oracle(tmp_path, processes=1)
    try:
        with temporarily(only_here):
            reference = oracle.reference("only_in_this_process", 1)
    finally:
        oracle.close()
    x = make_inputs(only_here, 1)["x"]
    assert reference.value.value == pytest.approx(np.sin(x), rel=1e-15)


def test_damaged_cache_entry_is_recomputed(tmp_path):
    path = Oracle(tmp_path).path("scalar_sin", 1, 0)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")  # before the run (written during it: not read at all)
    oracle = Oracle(tmp_path)
    with pytest.warns(UserWarning, match="discarding the oracle cache entry"):
        reference = oracle.reference("scalar_sin", 1)
    x = make_inputs(get_problem("scalar_sin"), 1)["x"]
    assert reference.value.value == pytest.approx(np.sin(x), rel=1e-15)
    assert json.loads(path.read_text())["key"]["problem"] == "scalar_sin"


def test_ode_reference_matches_an_independent_integrator():
    """The Taylor flow against mpmath's own Taylor ODE solver (odefun)."""
    from adjointbench.reference.ode import flow_mp
    from adjointbench.reference import hp
    inputs = make_inputs(get_problem("neural_ode"), 2)
    with mpmath.workdps(30):
        u0, W, b = (hp.to_mp(inputs[k]) for k in ("u0", "W", "b"))
        ours = flow_mp(u0, W, b)
        f = mpmath.odefun(lambda t, u: [mpmath.tanh(sum(W[i, j] * u[j] for j in range(2)) + b[i])
                                        for i in range(2)], 0, list(u0))
        theirs = f(1)
        assert max(abs(a - c) for a, c in zip(ours, theirs)) < mpmath.mpf(10) ** -25


def test_an_entry_another_process_writes_meanwhile_is_recomputed_not_believed(tmp_path):
    """An entry that changed after the Oracle was made, not by this process:
    recomputed; a forged value is reported and removed at close, the same
    reference (another run sharing the cache: its own ``seconds``) is not."""
    from adjointbench.reference.cache import _checksum, entry_key

    Oracle(tmp_path).reference("matvec", 8, point=1)
    Oracle(tmp_path).reference("matvec", 8, point=2)
    oracle = Oracle(tmp_path)  # made before the other process writes
    for point, shift in ((1, 0.0), (2, 1e-9)):
        path = oracle.path("matvec", 8, 0, point)
        data = json.loads(path.read_text())["reference"]
        data["seconds"] += 1.0
        data["jvp"]["value"] = [v + shift for v in data["jvp"]["value"]]
        entry = {"key": entry_key("first", "matvec", 8, 0, point), "checksum": _checksum(data),
                 "reference": data}
        path.write_text(json.dumps(entry))
    with pytest.warns(UserWarning, match="p2.json held another reference"):
        forged = oracle.reference("matvec", 8, point=2)
    same = oracle.reference("matvec", 8, point=1)
    for point, reference in ((1, same), (2, forged)):
        fresh = compute_reference(get_problem("matvec"), 8, 0, point=point)
        np.testing.assert_array_equal(reference.jvp.value, fresh.jvp.value)
    assert len(oracle.altered) == 1
    oracle.close()
    assert len(oracle.altered) == 1  # nothing left to put back or remove
    assert Oracle(tmp_path).reference("matvec", 8, point=2).jvp.value.tolist() == \
        forged.jvp.value.tolist()


def test_a_library_oracle_removes_nothing_and_keeps_another_runs_same_reference(tmp_path):
    """Only the CLI's Oracle (``sweep``) removes entries others wrote during
    its life; at close, an entry it wrote that another run wrote again with
    the same reference (its own ``seconds``) is left as it is, unreported."""
    from adjointbench.reference.cache import _checksum, entry_key

    oracle = Oracle(tmp_path)  # a session's, say: other processes write meanwhile
    oracle.reference("matvec", 8, point=1)
    for point in (1, 2):
        data = compute_reference(get_problem("matvec"), 8, 0, point=point).to_json()
        data["seconds"] += 1.0
        entry = {"key": entry_key("first", "matvec", 8, 0, point), "checksum": _checksum(data),
                 "reference": data}
        oracle.path("matvec", 8, 0, point).write_text(json.dumps(entry))
    oracle.close()
    assert oracle.altered == []
    for point in (1, 2):
        written = json.loads(oracle.path("matvec", 8, 0, point).read_text())
        assert written["reference"]["seconds"] >= 1.0  # the other run's, kept


def test_an_entry_another_run_removed_is_put_back_unreported(tmp_path):
    """Two CLI runs (``sweep``) on one cache folder: the first to end removes
    the entries the other wrote during its life (it cannot tell them from
    forged ones; the removal is simulated here). The other puts its entries
    back when it ends, unreported: a removal makes nobody believe a wrong
    reference, so it is no alteration and no failed run (it was: exit 1,
    "an implementation's code wrote to the harness's files"). Changed bytes
    still are (the test above)."""
    oracle = Oracle(tmp_path, sweep=True)
    mine = oracle.reference("matvec", 8, seed=1)
    path = oracle.path("matvec", 8, 1)
    written = path.read_bytes()
    path.unlink()  # the other run's end
    oracle.close()
    assert oracle.altered == []
    assert path.read_bytes() == written
    assert Oracle(tmp_path).reference("matvec", 8, seed=1).jvp.value.tolist() == \
        mine.jvp.value.tolist()
