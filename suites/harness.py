"""Benchmarks of the harness itself: how long its users wait, and how close
its adjoint gradients come to their floor. Not timed tests: each prints its
figure, its target and the machine's load while it ran.

    python -m adjointbench.suites.harness                  # all but asv
    python -m adjointbench.suites.harness one-cell adjoint
    python -m adjointbench.suites.harness asv              # asv run --quick (minutes)
    python -m adjointbench.suites.harness parallel         # check: 1, 2 workers, Dask

Targets (2-core machine, quiet, warm caches): the default ``check`` sweep of
every built-in implementation (both dtypes, isolated, one worker) 75 s; the
main job ``adjointbench run`` 60 s; a one-cell numpy ``check`` 0.6 s;
``asv run --quick`` 10 minutes; the diffusion adjoint 2.5x and the
neural_ode_params adjoint 5x their primal at P = 10^4. Run a sweep twice to
see it with warm caches (the oracle's and JAX's compilations).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adjointbench.impls.protocol import Prepared
from adjointbench.impls.registry import built_in_implementations
from adjointbench.suites.environment import load_average
from adjointbench.suites.timing import sample_paired, warm_up

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"check": 75.0, "run": 60.0, "one-cell": 0.6, "asv": 600.0,
           "diffusion": 2.5, "neural_ode_params": 5.0}
ADJOINT_SIZES = {"diffusion": 10_000, "neural_ode_params": 10_100}


def built_in() -> str:
    """The --impl of the sweeps: every built-in implementation installed (the
    targets' "every built-in"), no plug-in installed beside them."""
    return ",".join(built_in_implementations())


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "adjointbench.cli", *args]


def user_environment() -> dict[str, str]:
    """This process's environment as a user's shell has it: without
    PYTHONDONTWRITEBYTECODE, which some sandboxes and CI images set. Under it
    no run writes bytecode, and an editable install has none of its own, so
    every command compiles the project's modules from source: the one-cell
    check took 0.55-0.70 s instead of 0.45-0.57 s (medians of five,
    alternating, 2026-12-04)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _wall(argv: list[str]) -> float:
    """Seconds one command takes, run as a user runs it (:func:`user_environment`);
    its failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                          env=user_environment())
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):  # 1: a cell differs from its manifest, still timed
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def _report(name: str, figure: float, unit: str, extra: str = "") -> None:
    target = TARGETS[name]
    verdict = "within" if figure <= target else "ABOVE"
    print(f"{name:<18} {figure:9.3g} {unit:<8} target {target:g} {unit} ({verdict}) "
          f"load {load_average()}{extra}", flush=True)


def sweep(name: str, *args: str) -> None:
    with tempfile.TemporaryDirectory() as out:
        _report(name, _wall(_command(*args, "--out", out, "--quiet")), "s")


PARALLEL = {"--workers 1": ("--workers", "1"), "--workers 2": ("--workers", "2"),
            "--executor dask --workers 2": ("--executor", "dask", "--workers", "2")}


def parallel(rounds: int = 1) -> None:
    """The default check sweep (warm caches) one cell at a time, two at once,
    and on a local Dask cluster of two workers, interleaved ``rounds`` times;
    each median and its speed-up over one worker."""
    times: dict[str, list[float]] = {name: [] for name in PARALLEL}
    for _ in range(rounds):
        for name, options in PARALLEL.items():
            with tempfile.TemporaryDirectory() as out:
                times[name].append(_wall(_command("check", "--impl", built_in(), *options,
                                                  "--out", out, "--quiet")))
    one = statistics.median(times["--workers 1"])
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"check {name:<28} {median:7.1f} s  {one / median:4.2f}x one worker  "
              f"(runs: {', '.join(f'{t:.1f}' for t in seconds)}) load {load_average()}",
              flush=True)


def one_cell(repeats: int = 5) -> None:
    """A one-cell numpy check, ``repeats`` times after one untimed run that
    warms the caches (the oracle's, and Python's bytecode)."""
    argv = _command("check", "--impl", "numpy", "--problem", "scalar_sin", "--op", "jvp",
                    "--dtype", "float64", "--quiet")
    _wall(argv)
    times = [_wall(argv) for _ in range(repeats)]
    _report("one-cell", statistics.median(times), "s",
            f", spread {min(times):.2f}-{max(times):.2f} s over {repeats}")


def adjoint(budget_s: float = 1.0) -> None:
    """Adjoint gradient over J(theta), paired samples, numpy's models."""
    from adjointbench.impls import numpy as numpy_impl
    from adjointbench.impls.families import merged
    from adjointbench.reference import get_problem, make_inputs

    losses, gradients = merged(numpy_impl, "LOSSES"), merged(numpy_impl, "GRADIENTS")
    for name, size in ADJOINT_SIZES.items():
        problem = get_problem(name)
        inputs = make_inputs(problem, size)
        theta = inputs.pop(problem.differentiable[0])
        primal = warm_up(lambda: Prepared(run=lambda: losses[name](theta, **inputs)))
        gradient = warm_up(lambda: Prepared(run=lambda: gradients[name]["adjoint"](theta,
                                                                                 **inputs)))
        paired = sample_paired(primal, gradient, budget_s)
        _report(name, paired.ratio, "x primal",
                f", quartiles {paired.ratio_q1:.2f}-{paired.ratio_q3:.2f} over {paired.pairs} "
                f"pairs, P = {theta.size}, primal {paired.primal_median_s * 1e3:.2f} ms")


def asv_quick() -> None:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "asv", "run", "--python=same", "--quick",
                    "--dry-run", "--show-stderr"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    _report("asv", time.perf_counter() - start, "s")


BENCHMARKS = {
    "one-cell": one_cell,
    "adjoint": adjoint,
    "check": lambda: sweep("check", "check", "--impl", built_in(), "--workers", "1"),
    "parallel": parallel,
    "run": lambda: sweep("run", "run", "--impl", built_in()),
    "asv": asv_quick,
}
DEFAULT = ("one-cell", "adjoint", "check", "run")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adjointbench.suites.harness",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("benchmarks", nargs="*", choices=[*BENCHMARKS, []],
                        help=f"which to run (default: {', '.join(DEFAULT)})")
    args = parser.parse_args(argv)
    print(f"cpus {os.cpu_count()}, load before {load_average()}", flush=True)
    for name in args.benchmarks or DEFAULT:
        BENCHMARKS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
