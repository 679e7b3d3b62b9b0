"""check_function against jax.test_util.check_grads and torch.autograd.gradcheck.

    python benchmarks/against_peers.py [--rounds 7]

Same function, same point, one process; the contenders alternate round by
round (interleaved), so machine load falls on all of them alike. Prints the
median time per call with its interquartile range, and the tolerance each
applied (adjointbench's: the largest over its checks).
"""

import argparse
import statistics
import time

import jax
import numpy as np
import torch
from jax.test_util import check_grads
from jax._src.public_test_util import default_gradient_tolerance

from adjointbench.testing import check_function
from adjointbench_example.jax_rules import logsumexp
from adjointbench_example.torch_rules import tridiagonal_solve

jax.config.update("jax_enable_x64", True)
torch.set_num_threads(1)


def _timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _summary(samples: list[float]) -> str:
    q1, median, q3 = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return f"{median * 1e3:8.1f} ms  (IQR {q1 * 1e3:.1f}-{q3 * 1e3:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(2.0 * rng.standard_normal(64))
    n = 64
    system = [torch.as_tensor(a, dtype=torch.float64).requires_grad_(True) for a in (
        0.5 * rng.standard_normal(n - 1), 4.0 + rng.uniform(size=n),
        0.5 * rng.standard_normal(n - 1), rng.standard_normal(n))]

    tolerances = {}

    def ours_jax():
        result = check_function(logsumexp, "jax-reverse", x)
        tolerances["check_function (jax)"] = max(r.tol for r in result.records)

    def ours_torch():
        result = check_function(tridiagonal_solve, "torch-reverse", *system)
        tolerances["check_function (torch)"] = max(r.tol for r in result.records)

    contenders = {
        "check_function, jax-reverse, logsumexp n=64": ours_jax,
        "jax check_grads(order=1, modes=rev)": lambda: check_grads(logsumexp, (x,), order=1,
                                                                   modes=["rev"]),
        "check_function, torch-reverse, tridiagonal n=64": ours_torch,
        "torch gradcheck": lambda: torch.autograd.gradcheck(tridiagonal_solve, tuple(system)),
    }
    samples = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, call in contenders.items():
            samples[name].append(_timed(call))
    print(f"{rounds} interleaved rounds, one thread per library, time per call:")
    for name, times in samples.items():
        print(f"  {name:<50} {_summary(times)}")
    jax_tol = default_gradient_tolerance[np.dtype(np.float64)]
    print("tolerances applied (relative unless stated):")
    for name, tol in tolerances.items():
        print(f"  {name:<50} {tol:.1e} (the worst check's, reference error included)")
    print(f"  {'jax check_grads (float64 default)':<50} {jax_tol:.0e} atol and rtol")
    print(f"  {'torch gradcheck (defaults)':<50} atol 1e-5, rtol 1e-3")


if __name__ == "__main__":
    main()
