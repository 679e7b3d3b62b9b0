"""The helper API against the oracle, in every backend and both layouts."""

import numpy as np
import pytest

from adjointbench.impls.backends import (BACKENDS, SampleMixingError, batched_jacobian,
                            jacobian_vector_product, vector_jacobian_product)
from adjointbench.impls.traceable import PRIMALS
from adjointbench.reference import UnknownNameError, get_problem, make_inputs, make_probes

SAMPLES = 4


@pytest.fixture(autouse=True, scope="module")
def jax_float64():
    """Numerics strict in tests: float64 in JAX, turned on by the test as a
    user would (the helpers themselves never change it)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)


def framework(backend):
    if backend.startswith("jax"):
        from adjointbench.impls.jax import XP
        import jax.numpy as jnp
        return XP, jnp
    from adjointbench.impls.torch import XP
    import torch
    return XP, torch


def catalogue_function(backend, name):
    xp, _ = framework(backend)
    return lambda x: PRIMALS[name](xp, x)


def assert_close_to(actual, estimate, rtol=1e-13):
    expected = estimate.certified("reference")
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0,
                               atol=rtol * np.max(np.abs(expected)))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["softmax", "broadcast_tanh"])
def test_products_match_the_oracle(backend, name, oracle):
    problem = get_problem(name)
    size = problem.smallest_size
    x = make_inputs(problem, size)["x"]
    reference = oracle.reference(name, size)
    probes = make_probes(problem, size, {"x": x}, reference.value.value.shape)
    f = catalogue_function(backend, name)
    assert_close_to(jacobian_vector_product(f, backend, x, probes.tangent["x"]), reference.jvp)
    assert_close_to(vector_jacobian_product(f, backend, x, probes.cotangent), reference.vjp["x"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["softmax", "broadcast_sin"])
def test_batched_jacobian_is_the_stack_of_oracle_jacobians(backend, name, oracle):
    """Samples are the catalogue's inputs at seeds 0..3; each has its own oracle Jacobian."""
    problem = get_problem(name)
    size = problem.smallest_size
    batch = np.stack([make_inputs(problem, size, seed)["x"] for seed in range(SAMPLES)])  # (B, N)
    expected = np.stack([oracle.reference(name, size, seed).jacobian.certified("jacobian")
                         for seed in range(SAMPLES)])  # (B, M, N)
    # the catalogue primal sees one sample; vmap it into a batch-to-batch function
    one = catalogue_function(backend, name)
    if backend.startswith("jax"):
        import jax
        rows, cols = jax.vmap(one, 0, 0), jax.vmap(one, 1, 1)
    else:
        import torch.func
        rows, cols = torch.func.vmap(one, 0, 0), torch.func.vmap(one, 1, 1)
    numpy_layout = np.asarray(batched_jacobian(rows, backend, batch, batch_axis=0))
    lux_layout = np.asarray(batched_jacobian(cols, backend, batch.T))
    assert numpy_layout.shape == (SAMPLES, size, size)
    assert lux_layout.shape == (size, size, SAMPLES)
    np.testing.assert_allclose(numpy_layout, expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.moveaxis(lux_layout, 2, 0), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dense_layer_batched_jacobian_equals_per_sample_jacobians(backend):
    """tanh(W x + b) per sample, x (N, B): J[:, :, k] = diag(1 - y_k^2) W."""
    rng = np.random.default_rng(0)
    W, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
    x = rng.standard_normal((5, 7))
    _, lib = framework(backend)
    to_lib = lib.asarray if backend.startswith("jax") else lib.as_tensor
    Wt, bt = to_lib(W), to_lib(b)
    J = np.asarray(batched_jacobian(lambda v: lib.tanh(Wt @ v + bt[:, None]), backend, x))
    y = np.tanh(W @ x + b[:, None])
    expected = np.stack([(1 - y[:, k] ** 2)[:, None] * W for k in range(7)], axis=2)
    assert J.shape == (3, 5, 7)
    np.testing.assert_allclose(J, expected, rtol=0, atol=1e-14)  # entries are O(1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_normalisation_is_detected(backend):
    _, lib = framework(backend)
    x = np.random.default_rng(1).standard_normal((4, 6))
    if backend.startswith("jax"):
        batch_norm = lambda v: (v - v.mean(axis=-1, keepdims=True)) / v.std(axis=-1, keepdims=True)
    else:
        batch_norm = lambda v: (v - v.mean(dim=-1, keepdim=True)) / v.std(dim=-1, keepdim=True)
    with pytest.raises(SampleMixingError, match="mixes samples along batch axis -1"):
        batched_jacobian(batch_norm, backend, x)


def test_unknown_backend_names_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'jax-forward'"):
        jacobian_vector_product(np.sin, "jax-foward", np.zeros(2), np.ones(2))


def test_helpers_change_no_global_setting_and_keep_the_dtype():
    import subprocess
    import sys
    code = ("import jax, jax.numpy as jnp, numpy as np\n"
            "from adjointbench import jacobian_vector_product, batched_jacobian\n"
            "x = np.linspace(-1, 1, 4, dtype=np.float32)\n"
            "y = jacobian_vector_product(jnp.tanh, 'jax-reverse', x, np.ones(4, np.float32))\n"
            "J = batched_jacobian(jnp.tanh, 'jax-forward', x.reshape(2, 2))\n"
            "assert not jax.config.jax_enable_x64, 'the helper turned on float64'\n"
            "assert y.dtype == J.dtype == jnp.float32, (y.dtype, J.dtype)\n"
            "np.testing.assert_allclose(y, 1 - np.tanh(x) ** 2, rtol=1e-6)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
