"""Thread settings: recorded with every timing, settable for a whole run.

Thread pools are read when a library loads, so a count is best set in the
environment of a fresh worker process (:func:`thread_environment`); in this
process :func:`limit_threads` also applies it to BLAS/OpenMP (threadpoolctl)
and to torch. XLA's CPU thread pool has no runtime setting; JAX uses every core.
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def thread_environment(threads: int | None) -> dict[str, str]:
    """Environment variables that fix every thread pool to ``threads``."""
    if threads is None:
        return {}
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    return {name: str(threads) for name in THREAD_VARIABLES}


def limit_threads(threads: int | None) -> None:
    """Apply ``threads`` to this process's BLAS, OpenMP and torch pools."""
    if threads is None:
        return
    os.environ.update(thread_environment(threads))
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


def _blas_pools() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{"api": p.get("internal_api"), "library": os.path.basename(p.get("filepath", "")),
             "threads": p.get("num_threads")} for p in threadpool_info()]


def blas_threads() -> int | None:
    """The largest thread count of the loaded BLAS/OpenMP pools."""
    counts = [p["threads"] for p in _blas_pools() if p["threads"]]
    return max(counts) if counts else None


def thread_settings() -> dict:
    """Every thread setting that can change a timing, as JSON-ready data."""
    settings = {"cpu_count": os.cpu_count(), "pools": _blas_pools(),
                "environment": {n: os.environ[n] for n in THREAD_VARIABLES if n in os.environ}}
    if "torch" in sys.modules:
        settings["torch"] = sys.modules["torch"].get_num_threads()
    return settings
