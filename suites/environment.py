"""What a timing depends on besides the code: versions, CPU, GPU, threads.

Written next to the results as ``environment.json`` and shown in reports.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from adjointbench.suites.threads import thread_settings, worker_thread_settings
from adjointbench.vouched import write_atomically

PACKAGES = ("adjointbench", "numpy", "scipy", "sympy", "mpmath", "jax", "jaxlib", "torch",
            "pandas", "matplotlib", "threadpoolctl")


def _versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    """CUDA devices, asked of nvidia-smi (importing a framework just to look is slow)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def _commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def describe_environment(requested_threads: int | None = None, isolated: bool = False) -> dict:
    """Everything that can change a timing, as JSON-ready data; the thread
    settings are the workers' when cells run ``isolated`` in them, else this
    process's."""
    threads = worker_thread_settings(requested_threads) if isolated else thread_settings()
    return {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.node(),  # which machine, for compare and merged results
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpus": _gpus(),
        "versions": _versions(),
        "threads": {"requested": requested_threads, **threads},
        "load_before": load_average(),
    }


def load_average() -> list[float] | None:
    """The 1, 5 and 15-minute load averages (None where the system has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


LOADED_PER_CPU = 0.5  # load average per core, beyond the sweep's own, above which timings are suspect
# Cores other processes kept busy, per core, above which timings are suspect: on
# 2 cores, half a core on average (a full one beside run's one-worker bench left
# 99 of its 411 timed cells noisy, IQR over 25% of the median, against 30-43 quiet)
OTHERS_BUSY_PER_CPU = 0.25


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy since boot (``/proc/stat``:
    all but idle and iowait; time stolen by a hypervisor counts as busy), or
    None where there is no ``/proc/stat``."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def cpu_mark() -> dict | None:
    """Where the CPU clocks stand now, for :func:`other_cores_busy`: the
    machine's busy seconds and this process's own, its reaped children's
    (the workers, and what they reaped) included; None without /proc/stat."""
    busy = _machine_busy_s()
    if busy is None:
        return None
    own = os.times()
    return {"wall": time.monotonic(), "busy": busy,
            "own": own.user + own.system + own.children_user + own.children_system}


def other_cores_busy(since: dict | None) -> float | None:
    """How many cores other processes kept busy, on average, since the mark
    ``since``: the machine's busy time less this process's and its reaped
    children's. Unlike the load average, which still counts for a minute the
    processes of a sweep that just ended (run's check before its bench), it
    sees only what is not the harness; its workers must have been reaped."""
    now = cpu_mark()
    if since is None or now is None or now["wall"] <= since["wall"]:
        return None
    others = (now["busy"] - since["busy"]) - (now["own"] - since["own"])
    return round(max(others, 0.0) / (now["wall"] - since["wall"]), 2)


def machine_was_loaded(environment: dict) -> str | None:
    """Why the machine was too busy for timings to be believed, or None: other
    processes kept more than :data:`OTHERS_BUSY_PER_CPU` per core busy during
    the run (``other_cores_busy``), or, for results that do not record it, the
    1-minute load average before the run, or after it less the sweep's own one
    process, was above :data:`LOADED_PER_CPU` per core."""
    cpus = environment.get("cpu_count") or 1
    before, after = environment.get("load_before"), environment.get("load_after")
    loads = f"load average before {before and before[0]}, after {after and after[0]}"
    others = environment.get("other_cores_busy")
    if others is not None:
        if others > OTHERS_BUSY_PER_CPU * cpus:
            return (f"the machine was busy while these timings ran (other processes kept "
                    f"{others:g} of its {cpus} cores busy on average; {loads}): rerun on a "
                    "quiet machine before trusting them")
        return None
    if max(([before[0]] if before else []) + ([after[0] - 1] if after else []),
           default=0.0) > LOADED_PER_CPU * cpus:
        return (f"the machine was busy while these timings ran ({loads}, on {cpus} cores): "
                "rerun on a quiet machine before trusting them")
    return None


def read_environment(folder: Path) -> dict:
    """``folder/environment.json`` as a dict ({} when missing or not a JSON object)."""
    try:
        environment = json.loads((Path(folder) / "environment.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return environment if isinstance(environment, dict) else {}


def write_environment(folder: Path, requested_threads: int | None = None,
                      workers: int = 1, cluster: dict | None = None,
                      isolated: bool = True, not_loaded: dict | None = None) -> dict:
    """``folder/environment.json``, and what it holds; ``workers``: cells run
    at once (timings of cells that ran side by side shared the machine's
    cores); ``cluster``: the Dask cluster that ran them (its scheduler and
    workers); ``isolated``: False for --in-process (a bench's rounds then
    share one process); ``not_loaded``: installed implementations left out
    because they would not load, and why."""
    path = Path(folder) / "environment.json"
    environment = {**describe_environment(requested_threads, isolated), "workers": workers,
                   "isolated": isolated, **(cluster or {}),
                   **({"not_loaded": not_loaded} if not_loaded else {})}
    path.write_text(json.dumps(environment, indent=2) + "\n", encoding="utf-8")
    return environment


def finish_environment(folder: Path, since: dict | None = None,
                       written: dict | None = None) -> bool:
    """Add the load average after the sweep to ``folder/environment.json``,
    and the cores other processes kept busy since the mark ``since``
    (:func:`cpu_mark`, taken before the sweep's workers started). From
    ``written``, what write_environment wrote, if given: whatever another
    process put in the file meanwhile is dropped. Whether it had."""
    path = Path(folder) / "environment.json"
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        found = None
    environment = dict(written) if written is not None else found
    if environment is None:
        return False
    environment["load_after"] = load_average()
    if (others := other_cores_busy(since)) is not None:
        environment["other_cores_busy"] = others
    try:
        write_atomically(path, (json.dumps(environment, indent=2) + "\n").encode())
    except OSError as e:  # a full disk, say: the records, written already, are what matter
        print(f"adjointbench: warning: cannot finish {path}: {e.strerror or e}",
              file=sys.stderr)
    return written is not None and found != json.loads(json.dumps(written))
