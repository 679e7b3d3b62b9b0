"""xp.axpy, xp.scale and xp.lift, the namespace helpers that spare torch's
forward mode its ZeroTensor tangents, change no value and no derivative."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from adjointbench.impls.torch import XP  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lift_keeps_values_and_dtype_and_leaves_integers_alone(dtype):
    W = torch.tensor([[1.5, -2.0], [1e-30, 3e30]], dtype=dtype)
    index = torch.tensor([0, 3])
    like = torch.tensor([float("nan"), 1.0], dtype=torch.float64)  # whatever like holds
    lifted_W, lifted_index = XP.lift((W, index), (like,))
    assert lifted_W.dtype == dtype and torch.equal(lifted_W, W)
    assert lifted_index is index


def test_a_lifted_constant_carries_a_zero_tangent_at_every_level():
    rng = np.random.default_rng(3)
    W, b = (torch.tensor(rng.standard_normal(s)) for s in ((3, 3), (3,)))
    x, u, v = (torch.tensor(rng.standard_normal(3)) for _ in range(3))

    def f(x, lift):
        W_, b_ = XP.lift((W, b), (x,)) if lift else (W, b)
        return torch.tanh(W_ @ torch.sin(x) + b_)

    def second(lift):  # d/dx <v, d/dx f(x) u> along v: a JVP of a JVP
        inner = lambda y: torch.func.jvp(lambda z: f(z, lift), (y,), (u,))[1]
        return torch.func.jvp(inner, (x,), (v,))[1]
    levels = []

    def record_levels(y):  # the lifted constant is a value of the inner transform; W is not
        levels.append((torch._C._functorch.is_functorch_wrapped_tensor(W),
                       torch._C._functorch.maybe_get_level(XP.lift((W,), (y,))[0])))
        return y
    torch.func.jvp(lambda y: torch.func.jvp(record_levels, (y,), (u,))[1], (x,), (u,))
    assert levels == [(False, 2)]
    lifted = torch.func.jvp(lambda z: f(z, True), (x,), (u,))
    plain = torch.func.jvp(lambda z: f(z, False), (x,), (u,))
    assert torch.equal(lifted[0], plain[0])
    np.testing.assert_allclose(lifted[1], plain[1], rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(second(True), second(False), rtol=1e-15, atol=1e-15)


def test_axpy_is_a_x_plus_y_in_value_and_derivative():
    x, y, u = (torch.tensor(np.random.default_rng(s).standard_normal(5)) for s in (1, 2, 3))
    value, tangent = torch.func.jvp(lambda x: XP.axpy(0.3, torch.sin(x), y), (x,), (u,))
    np.testing.assert_allclose(value, 0.3 * torch.sin(x) + y, rtol=1e-15)
    np.testing.assert_allclose(tangent, 0.3 * torch.cos(x) * u, rtol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scale_is_a_times_x_to_the_bit_at_every_level(dtype):
    x, u, v = (torch.tensor(np.random.default_rng(s).standard_normal(6), dtype=dtype)
               for s in (4, 5, 6))

    def second(f):  # a JVP of a JVP: two forward levels
        return torch.func.jvp(lambda y: torch.func.jvp(f, (y,), (u,))[1], (x,), (v,))
    scaled = second(lambda y: XP.scale(3, torch.sin(y)) * y)
    plain = second(lambda y: 3 * torch.sin(y) * y)
    for a, b in zip(scaled, plain):
        assert a.dtype == dtype and torch.equal(a, b)
    # the closed form: d2/dy2 (3 y sin y) = 3 (2 cos y - y sin y)
    expected = 3 * (2 * torch.cos(x) - x * torch.sin(x)) * u * v
    np.testing.assert_allclose(scaled[1], expected, rtol=50 * torch.finfo(dtype).eps)
