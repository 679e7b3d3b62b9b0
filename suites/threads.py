"""Thread settings: recorded with every timing, settable for a whole run.

Thread pools are read when a library loads, so a count is best set in the
environment of a fresh worker process (:func:`thread_environment`); in this
process :func:`limit_threads` also applies it to BLAS/OpenMP (threadpoolctl)
and to torch. XLA's CPU pool reads neither: jax 0.10 sizes it from the CPUs
the process may run on when its CPU client starts, whatever ``XLA_FLAGS``
says, so implementations load under :func:`pools_sized_to`, and a bench
cell's timed samples run :func:`confined_to` the run's CPUs. The timing core
counts the cores each timed call kept busy (suites/timing.py's ``Cores``),
which catches the processes a call hands work to, and where the samples are
not confined any pool or thread these settings missed.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


DEFAULT_THREADS = 1  # bench, check and run: quiet, comparable timings on a shared machine
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def thread_environment(threads: int | None) -> dict[str, str]:
    """Environment variables that fix the BLAS/OpenMP/torch pools to
    ``threads``, and XLA's flags for one thread, which older jax read (jax
    0.10 sizes its pool from the CPUs instead: :func:`pools_sized_to`)."""
    if threads is None:
        return {}
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    variables = {name: str(threads) for name in THREAD_VARIABLES}
    if threads == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        variables["XLA_FLAGS"] = f"{flags} {XLA_ONE_THREAD}".strip()
    return variables


def requested_threads(environment: dict[str, str]) -> int | None:
    """The thread count ``environment`` (:func:`thread_environment`'s) sets, or None."""
    text = environment.get(THREAD_VARIABLES[0])
    return int(text) if text and text.isdigit() else None


def _cpus() -> set[int] | None:
    """The CPUs this process may run on, where the platform says (Linux)."""
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None


@contextlib.contextmanager
def pools_sized_to(threads: int | None):
    """Within: this thread may run on ``threads`` CPUs only, so that pools
    sized from the CPUs a process may use (XLA's) get ``threads`` threads;
    after: every thread of the process may run on all of them again, so no
    thread is tied to a core another program keeps busy. On 2 cores, jax's
    1024 x 1024 matmul kept 1.9 cores busy in 16 ms; loaded within, one in 32
    ms, as numpy and torch on one thread. Nothing where ``threads`` is None
    or not below the CPUs' count, or the platform has no affinity."""
    cpus = _cpus()
    if not threads or cpus is None or threads >= len(cpus) or not _allow(0, _some(cpus, threads)):
        yield  # the timing core's cores still tell a pool that took more
        return
    try:
        yield
    finally:
        _allow_all(cpus)


@contextlib.contextmanager
def confined_to(threads: int | None):
    """Within: every thread of this process, and each one it starts, runs on
    ``threads`` CPUs, the one the calling thread is on first; after: on all
    of them again. The timed samples of a bench cell run within, so that a
    call handed from thread to thread stays on its cores: on 2 idle CPUs of
    a virtual machine a jax call waited for XLA's thread to wake on the other
    CPU, a 3 x 4 dense layer over 1024 samples taking 92-102 us a call, 22
    us confined to one CPU (or with the other CPU busy), and the main job's
    samples of one cell jumped between the two. Nothing where ``threads``
    is None or not below the CPUs' count, or the platform has no affinity."""
    cpus = _cpus()
    if not threads or cpus is None or threads >= len(cpus):
        yield
        return
    _allow_all(set(_some(cpus, threads, _current_cpu())))
    try:
        yield
    finally:
        _allow_all(cpus)


def _current_cpu() -> int | None:
    """The CPU the calling thread last ran on (Linux), or None."""
    try:
        fields = Path("/proc/thread-self/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[36])  # field 39, "processor"
    except (OSError, IndexError, ValueError):
        return None


def _some(cpus: set[int], count: int, first: int | None = None) -> list[int]:
    """``count`` of ``cpus``, from ``first`` if it is one of them, else from
    one that this process's id picks: workers that load at once do not queue
    on one CPU (all on the first, the bench's nine took 10.4 s to load
    instead of 5.6)."""
    ordered = sorted(cpus)
    start = ordered.index(first) if first in cpus else os.getpid() % len(ordered)
    return (ordered[start:] + ordered[:start])[:count]


def _allow(thread: int, cpus) -> bool:
    """``thread`` (0: the calling one) allowed on ``cpus``; False where the
    system refuses."""
    try:
        os.sched_setaffinity(thread, cpus)
    except (OSError, ValueError):
        return False
    return True


def _allow_all(cpus) -> None:
    """Every thread of this process allowed on ``cpus``, the calling thread
    first (threads it starts from now on inherit its affinity)."""
    _allow(0, cpus)
    tasks = Path("/proc/self/task")
    for thread in (t.name for t in tasks.iterdir()) if tasks.is_dir() else ():
        if thread.isdigit():
            _allow(int(thread), cpus)


def limit_threads(threads: int | None) -> None:
    """Apply ``threads`` to this process's BLAS, OpenMP and torch pools."""
    if threads is None:
        return
    os.environ.update(thread_environment(threads))
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


@contextlib.contextmanager
def threads_of_a_run(threads: int | None = None):
    """Within: this process's pools as a bench worker's, for timings taken
    here (pytest-benchmark's suite): ``threads``, else the count
    ``OMP_NUM_THREADS`` asks for, else DEFAULT_THREADS, set in the
    environment (pools that load within read it, and timed_on_run_cpus
    confines samples to it), BLAS/OpenMP and torch. After: the environment,
    BLAS/OpenMP and a torch loaded before as they were; a torch first
    loaded within (which read the scope's environment) at the count it
    would have started with outside it."""
    threads = threads or requested_threads(os.environ) or DEFAULT_THREADS
    from threadpoolctl import threadpool_limits
    torch = sys.modules.get("torch")
    torch_threads = torch.get_num_threads() if torch else None
    try:
        with environment_with(thread_environment(threads)), threadpool_limits(threads):
            if torch:
                torch.set_num_threads(threads)
            yield threads
    finally:
        torch = sys.modules.get("torch")  # loaded before, or within
        if torch:
            torch.set_num_threads(torch_threads or _torch_starting_threads())


def _torch_starting_threads() -> int:
    """The intra-op thread count a torch loaded now would start with: what
    OMP_NUM_THREADS, else MKL_NUM_THREADS, asks for, else the physical cores
    (torch's rule)."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        with contextlib.suppress(KeyError, ValueError):
            if int(os.environ[name]) > 0:
                return int(os.environ[name])
    return _physical_cores()


def _physical_cores() -> int:
    """The machine's cores, each counted once whatever its hardware threads
    (Linux's CPU topology; elsewhere, the CPUs)."""
    topology = Path("/sys/devices/system/cpu").glob("cpu[0-9]*/topology/thread_siblings_list")
    with contextlib.suppress(OSError):
        cores = {path.read_text().strip() for path in topology}
        if cores:
            return len(cores)
    return os.cpu_count() or 1


@contextlib.contextmanager
def environment_with(variables: dict[str, str]):
    """These variables in os.environ within (a worker started within
    inherits them); after, each as it was, unset where it was unset."""
    saved = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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


def _thread_variables() -> dict[str, str]:
    return {n: os.environ[n] for n in (*THREAD_VARIABLES, "XLA_FLAGS") if n in os.environ}


def thread_settings() -> dict:
    """Every thread setting of this process that can change a timing, as JSON-ready data."""
    settings = {"cpu_count": os.cpu_count(), "cpus_allowed": _allowed_count(),
                "of": "this process", "pools": _blas_pools(), "environment": _thread_variables()}
    if "torch" in sys.modules:
        settings["torch"] = sys.modules["torch"].get_num_threads()
    return settings


def worker_thread_settings(threads: int | None) -> dict:
    """The thread settings worker processes start with: this process's thread
    variables with :func:`thread_environment`'s over them (their pools read
    them as they load). Not this process's pools: in an isolated sweep nothing
    is timed here, and its BLAS pool keeps the library's default (each timed
    record carries the BLAS thread count its worker measured)."""
    return {"cpu_count": os.cpu_count(), "cpus_allowed": _allowed_count(),
            "of": "worker processes",
            "environment": {**_thread_variables(), **thread_environment(threads)}}


def _allowed_count() -> int | None:
    """How many CPUs this process may run on (``taskset``, a cgroup's cpuset),
    which pools sized from the CPUs see; None where the platform does not say."""
    cpus = _cpus()
    return len(cpus) if cpus is not None else None
