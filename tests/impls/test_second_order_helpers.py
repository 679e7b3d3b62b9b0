"""The helper API's second order: Hessian-vector products and Hessians in
every nesting, and derivatives through the first-order helpers (a loss that
contains a batched Jacobian or a JVP), against high-precision references."""

import mpmath
import numpy as np
import pytest

from adjointbench.impls import backends
from adjointbench.impls.backends import (SECOND_ORDER_BACKENDS, NestingError, batched_jacobian,
                                         hessian, hessian_vector_product,
                                         jacobian_vector_product)

RNG = np.random.default_rng(7)
X = RNG.standard_normal(5)
V = RNG.standard_normal(5)
W = RNG.standard_normal((3, 4))
B = RNG.standard_normal(3)
XB = RNG.standard_normal((4, 6))  # Lux layout: (features, batch)


def _cubic_hessian(x):
    """f = sum(x^3) + x0 x1 sin(x2): its Hessian, by hand."""
    H = np.diag(6 * x)
    s, c = np.sin(x[2]), np.cos(x[2])
    H[0, 1] = H[1, 0] = s
    H[0, 2] = H[2, 0] = x[1] * c
    H[1, 2] = H[2, 1] = x[0] * c
    H[2, 2] += -x[0] * x[1] * s
    return H


def _framework(backend):
    if backend.startswith("jax"):
        jax = pytest.importorskip("jax")
        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        return jnp, (lambda a: jnp.asarray(a)), np.asarray
    torch = pytest.importorskip("torch")
    return torch, (lambda a: torch.tensor(a, dtype=torch.float64)), lambda t: t.detach().numpy()


@pytest.mark.parametrize("backend", SECOND_ORDER_BACKENDS)
def test_hvp_and_hessian_in_every_nesting(backend):
    xp, put, back = _framework(backend)
    f = lambda x: xp.sum(x ** 3) + x[0] * x[1] * xp.sin(x[2])
    H = _cubic_hessian(X)
    hv = back(hessian_vector_product(f, backend, put(X), put(V)))
    assert np.max(np.abs(hv - H @ V)) <= 1e-13 * np.max(np.abs(H @ V))
    assert np.max(np.abs(back(hessian(f, backend, put(X))) - H)) <= 1e-13 * np.max(np.abs(H))


def test_a_vector_valued_f_is_refused():
    jnp, put, _ = _framework("jax-forward-over-reverse")
    with pytest.raises(ValueError, match="must return a scalar"):
        hessian_vector_product(jnp.sin, "jax-forward-over-reverse", put(X), put(V))


def test_an_unknown_nesting_names_the_valid_ones():
    with pytest.raises(LookupError, match="jax-forward-over-reverse"):
        hessian_vector_product(np.sum, "jax-forward-over-revers", X, V)


def test_a_custom_vjp_refuses_forward_over_reverse_with_a_clear_error():
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    @jax.custom_vjp
    def cube(x):
        return jnp.sum(x ** 3)
    cube.defvjp(lambda x: (cube(x), x), lambda x, g: (3 * x ** 2 * g,))
    with pytest.raises(NestingError, match="jax-forward-over-reverse cannot differentiate"):
        hessian_vector_product(cube, "jax-forward-over-reverse", jnp.asarray(X), jnp.asarray(V))
    hv = hessian_vector_product(cube, "jax-reverse-over-reverse", jnp.asarray(X), jnp.asarray(V))
    assert np.allclose(np.asarray(hv), 6 * X * V, rtol=1e-14)


# --- through the first-order helpers: a Jacobian regulariser ---

def _mp_jacobian_loss(W_, b_):
    """sum over samples of ||d tanh(W x + b)/dx||_F^2, in mpmath."""
    total = mpmath.mpf(0)
    for s in range(XB.shape[1]):
        for i in range(len(W_)):
            z = sum(W_[i][j] * mpmath.mpf(XB[j, s]) for j in range(XB.shape[0])) + b_[i]
            slope = 1 - mpmath.tanh(z) ** 2
            total += sum((slope * W_[i][j]) ** 2 for j in range(XB.shape[0]))
    return total


def _reference_gradient() -> np.ndarray:
    """dL/d(W, b) by mpmath's high-precision differentiation, entry by entry."""
    params = [mpmath.mpf(v) for v in np.concatenate([W.ravel(), B])]

    def loss(flat):
        return _mp_jacobian_loss([flat[4 * i:4 * i + 4] for i in range(3)], flat[12:])
    grad = []
    with mpmath.workdps(40):
        for k in range(len(params)):
            def along(t, k=k):
                shifted = list(params)
                shifted[k] += t
                return loss(shifted)
            grad.append(float(mpmath.diff(along, 0)))
    return np.array(grad)


REFERENCE = None


def _reference():
    global REFERENCE
    if REFERENCE is None:
        REFERENCE = _reference_gradient()
    return REFERENCE


@pytest.mark.parametrize("inner", ["jax-forward", "jax-reverse"])
@pytest.mark.parametrize("outer", ["forward", "reverse"])
def test_jax_differentiates_through_the_batched_jacobian(inner, outer):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    def loss(flat):
        W_, b_ = flat[:12].reshape(3, 4), flat[12:]
        J = batched_jacobian(lambda x: jnp.tanh(W_ @ x + b_[:, None]), inner, jnp.asarray(XB))
        return jnp.sum(J ** 2)
    flat = jnp.asarray(np.concatenate([W.ravel(), B]))
    grad = jax.grad(loss)(flat) if outer == "reverse" else jax.jacfwd(loss)(flat)
    expected = _reference()
    assert np.max(np.abs(np.asarray(grad) - expected)) <= 1e-12 * np.max(np.abs(expected))


@pytest.mark.parametrize("inner", ["torch-forward", "torch-reverse"])
@pytest.mark.parametrize("outer", ["forward", "reverse"])
def test_torch_differentiates_through_the_batched_jacobian(inner, outer):
    torch = pytest.importorskip("torch")

    def loss(flat):
        W_, b_ = flat[:12].reshape(3, 4), flat[12:]
        x = torch.tensor(XB, dtype=torch.float64)
        J = batched_jacobian(lambda x: torch.tanh(W_ @ x + b_[:, None]), inner, x)
        return (J ** 2).sum()
    flat = torch.tensor(np.concatenate([W.ravel(), B]), dtype=torch.float64)
    transform = torch.func.grad if outer == "reverse" else torch.func.jacfwd
    grad = transform(loss)(flat).detach().numpy()
    expected = _reference()
    assert np.max(np.abs(grad - expected)) <= 1e-12 * np.max(np.abs(expected))


@pytest.mark.parametrize("backend", ["jax-forward", "jax-reverse"])
def test_a_loss_with_a_jvp_differentiates_in_both_modes(backend):
    """d/dx <u, J(x) u> for f = sin, that is of sum(cos(x) u^2): -sin(x) u^2."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    u = jnp.asarray(V)
    loss = lambda x: jnp.sum(u * jacobian_vector_product(jnp.sin, backend, x, u))
    for transform in (jax.grad, jax.jacfwd):
        grad = np.asarray(transform(loss)(jnp.asarray(X)))
        assert np.allclose(grad, -np.sin(X) * V ** 2, rtol=1e-14, atol=1e-15)


def test_every_second_order_backend_is_documented():
    assert len(SECOND_ORDER_BACKENDS) == 8
    for name in SECOND_ORDER_BACKENDS:
        assert name in backends.__doc__


def test_torch_forward_rule_of_solve_is_not_differentiable_in_A():
    """The finding behind torch's manifest entry: d/dA <w, jvp(solve)> is wrong
    in torch.func (the same formula written out is right); if this starts
    failing, torch fixed it and the manifest entry must go."""
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 3, dtype=torch.float64, generator=g) + 3 * torch.eye(3, dtype=torch.float64)
    b, db, w = (torch.randn(3, dtype=torch.float64, generator=g) for _ in range(3))
    dA = torch.randn(3, 3, dtype=torch.float64, generator=g)

    def by_torch(A):
        return (w * torch.func.jvp(torch.linalg.solve, (A, b), (dA, db))[1]).sum()

    def by_hand(A):  # dx = A^-1 (db - dA x)
        return (w * torch.linalg.solve(A, db - dA @ torch.linalg.solve(A, b))).sum()
    wrong = torch.func.grad(by_torch)(A) - torch.func.grad(by_hand)(A)
    assert wrong.abs().max() > 1e-3


def _cube_function():
    """x^3 as a torch.autograd.Function with its own jvp and backward (the
    probe impls/torch asks whether this torch loses such a jvp)."""
    from adjointbench.impls.torch import Cube
    return Cube


def test_torch_forward_over_forward_through_a_function_jvp_is_zero():
    """The finding behind torch_implicit's manifest entry: torch.func.jvp of
    torch.func.jvp through a torch.autograd.Function's own jvp returns zeros
    (x^3 at 2: want 12), while reverse-over-forward and forward-over-reverse
    through the same Function are right. If this starts failing, torch fixed
    it and the manifest entry must go."""
    torch = pytest.importorskip("torch")
    Cube = _cube_function()
    x, t = (torch.tensor([value], dtype=torch.float64) for value in (2.0, 1.0))
    inner = lambda y: torch.func.jvp(Cube.apply, (y,), (t,))[1]  # noqa: E731
    assert torch.func.jvp(inner, (x,), (t,))[1].item() == 0.0  # 12 is right
    assert torch.func.vjp(inner, x)[1](torch.ones(1, dtype=torch.float64))[0].item() == 12.0


def _solve_in_its_matrix(torch):
    """f(y) = 1^T (M + diag y)^-1 1 and its H v = 2 u * (A^-1 (u * v)), u = A^-1 1
    (A symmetric), by hand in NumPy."""
    M = np.array([[4.0, 1, 0], [1, 3, 1], [0, 1, 5]])
    ones = np.ones(3)

    def hv(y, v):
        A_inv = np.linalg.inv(M + np.diag(y))
        u = A_inv @ ones
        return 2 * u * (A_inv @ (u * v))
    f = lambda y: torch.linalg.solve(torch.tensor(M) + torch.diag(y), torch.tensor(ones)).sum()  # noqa: E731
    return f, hv


def _through_cube(torch):
    Cube = _cube_function()
    return (lambda y: Cube.apply(y).sum()), (lambda y, v: 6 * y * v)


@pytest.mark.parametrize("case, lost, named", [
    (_through_cube, ("forward-over-forward",), "torch.autograd.Function Cube"),
    (_solve_in_its_matrix, ("reverse-over-forward", "forward-over-forward"),
     r"torch.linalg.solve \(its matrix depends on x\)")], ids=["Function", "solve"])
def test_the_helpers_refuse_a_nesting_that_would_answer_wrong(case, lost, named):
    """The findings above, met by a user: hessian_vector_product and hessian
    by a nesting that torch carries through f wrong, silently (zeros through
    a Function, half the term through solve's matrix), raise NestingError
    naming what f calls and only the nestings that are right, which give the
    Hessian by hand; the same nesting without it still works."""
    torch = pytest.importorskip("torch")
    f, by_hand = case(torch)
    x, v = (torch.tensor(a, dtype=torch.float64) for a in (X[:3] / 4, V[:3]))
    for backend in SECOND_ORDER_BACKENDS:
        if not backend.startswith("torch-"):
            continue
        if backend.removeprefix("torch-") in lost:
            for helper, args in ((hessian_vector_product, (x, v)), (hessian, (x,))):
                with pytest.raises(NestingError, match=named) as refused:
                    helper(f, backend, *args)
                chosen = str(refused.value).split("Choose ")[1]
                assert not any(other in chosen for other in lost), chosen
                assert "torch-forward-over-reverse" in chosen
        else:
            np.testing.assert_allclose(hessian_vector_product(f, backend, x, v).numpy(),
                                       by_hand(X[:3] / 4, V[:3]), rtol=1e-12)
    plain = hessian_vector_product(lambda y: (y ** 3).sum(), "torch-forward-over-forward", x, v)
    np.testing.assert_allclose(plain.numpy(), 6 * X[:3] / 4 * V[:3], rtol=1e-14)
