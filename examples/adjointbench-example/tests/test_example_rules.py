"""The example's rules, checked the way a rule author checks their own."""

import numpy as np
import pytest

pytest.importorskip("adjointbench_example",
                    reason="install the example: pip install -e examples/adjointbench-example")

from adjointbench.testing import ClosedForm, HighPrecision, check_function, check_rules
from adjointbench_example import problems, rules

RNG = np.random.default_rng(7)
X = 2.0 * RNG.standard_normal(64)
SYSTEM = dict(lower=0.5 * RNG.standard_normal(7), diag=4.0 + RNG.uniform(size=8),
              upper=0.5 * RNG.standard_normal(7), rhs=RNG.standard_normal(8))


def _numpy_jvp(rule):
    return lambda args, tangents: rule.jvp(rule.forward(*args)[1], *tangents)


def _numpy_vjp(rule):
    return lambda args, w: rule.vjp(rule.forward(*args)[1], w)


def test_numpy_logsumexp_rules_against_the_declared_closed_form():
    result = check_rules(rules.logsumexp.primal, X, jvp=_numpy_jvp(rules.logsumexp),
                         vjp=_numpy_vjp(rules.logsumexp), reference=problems.logsumexp)
    assert result.ok
    assert result.worst("vjp").level == "exact"
    assert result.worst("vjp").max_rel_err < 1e-13


def test_numpy_tridiagonal_rules_against_the_high_precision_primal():
    result = check_rules(lambda lower, diag, upper, rhs: rules.tridiagonal_forward(
                             lower, diag, upper, rhs)[0],
                         *SYSTEM.values(), jvp=_numpy_jvp(rules.tridiagonal),
                         vjp=_numpy_vjp(rules.tridiagonal),
                         reference=HighPrecision(problems.solve_tridiagonal))
    assert {r.level for r in result.records if r.level} == {"fd"}
    assert result.worst("transpose").max_rel_err < 1e-14


def test_jax_custom_vjp_against_float64_extrapolation():
    jax = pytest.importorskip("jax")
    from adjointbench_example.jax_rules import logsumexp

    with jax.enable_x64(True):
        result = check_function(logsumexp, "jax-reverse", jax.numpy.asarray(X))
    assert result.ok
    # the default reference is f itself, differenced in float64: its level is stated
    assert all(r.level == "fd64" and r.oracle_err < 1e-8 for r in result.records
               if r.op in ("jvp", "vjp"))


def test_jax_custom_vjp_in_float32_against_the_closed_form():
    jnp = pytest.importorskip("jax.numpy")
    import sympy
    from adjointbench_example.jax_rules import logsumexp

    closed = ClosedForm(lambda x: sympy.log(sum(sympy.exp(v) for v in x)))
    result = check_function(logsumexp, "jax-reverse", jnp.asarray(X, dtype=jnp.float32),
                            reference=closed)
    assert result.ok and result.worst("vjp").tol < 1e-4


def test_torch_function_both_modes():
    torch = pytest.importorskip("torch")
    from adjointbench_example.torch_rules import tridiagonal_solve

    args = [torch.as_tensor(v) for v in SYSTEM.values()]
    for backend in ("torch-forward", "torch-reverse"):
        result = check_function(tridiagonal_solve, backend, *args,
                                reference=problems.tridiagonal_solve)
        assert result.ok, backend


def test_a_wrong_rule_is_caught_with_the_harness_message():
    def wrong_vjp(args, w):  # forgets the softmax's normalisation
        (x,) = args
        return (np.exp(x) * w,)

    with pytest.raises(AssertionError) as caught:
        check_rules(rules.logsumexp.primal, X, vjp=wrong_vjp, reference=problems.logsumexp)
    message = str(caught.value)
    assert "vjp at input point 0: mismatch" in message
    assert "worst element" in message and "> tol" in message
    assert "reference certified to" in message and "sympy closed form" in message


def test_a_wrong_torch_backward_is_caught():
    torch = pytest.importorskip("torch")
    from adjointbench_example.torch_rules import TridiagonalSolve

    class Transposed(TridiagonalSolve):  # solves with T instead of T^T in backward
        @staticmethod
        def backward(ctx, x_bar):
            lower, diag, upper, x = ctx.saved_tensors
            lam = torch.linalg.solve(torch.diag(diag) + torch.diag(lower, -1)
                                     + torch.diag(upper, 1), x_bar)
            return -lam[1:] * x[:-1], -lam * x, -lam[:-1] * x[1:], lam

    args = [torch.as_tensor(v) for v in SYSTEM.values()]
    with pytest.raises(AssertionError, match=r"vjp at input point 0: mismatch"):
        check_function(Transposed.apply, "torch-reverse", *args)
