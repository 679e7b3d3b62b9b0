"""The pytest plugin: the catalogue's correctness sweep for your implementation,
inside your own test run.

    pytest --adjointbench-impl mypkg.rules:implementation

or, once for all runs, in your pytest configuration::

    [tool.pytest.ini_options]
    adjointbench_impl = "mypkg.rules:implementation"

Every cell your implementation supports becomes one test, with an id such
as ``softmax-vjp-n64-float64`` (``-m adjointbench`` selects them all).
Cells listed in the implementation's ``expected_outcomes`` are expected
failures (xfail); unsupported cells, and ill-conditioned ones not listed (no
verdict either way), are skipped with the reason; any other difference from
the list, a new failure or a listed failure that now passes, fails the test,
as in ``adjointbench check``. ``--adjointbench-sweep full`` runs every size and
both dtypes instead of the quick sweep (two smallest sizes, float64). As in
``adjointbench check``, the implementation runs in a worker process of its
own, under ``--adjointbench-timeout`` seconds per cell (default 300): a
crash or a hang fails its test as ``crashed`` or ``timeout`` and the run
goes on, and nothing the implementation does reaches the verdicts, which
are made in the pytest process (``--adjointbench-in-process`` runs it
there instead, for a debugger). The oracle's references are cached in
``$ADJOINTBENCH_CACHE_DIR`` (default ``.oracle-cache``).
"""

from __future__ import annotations

import pytest

SWEEPS = ("quick", "full")


def pytest_addoption(parser) -> None:
    group = parser.getgroup("adjointbench", "adjointbench: the correctness sweep of a plug-in")
    group.addoption("--adjointbench-impl", default=None, metavar="MODULE:OBJECT",
                    help="add the catalogue's correctness sweep of this implementation "
                    "(module:object or an entry-point name), one test per cell")
    group.addoption("--adjointbench-sweep", default=None, choices=SWEEPS,
                    help="quick (default: two smallest sizes, float64) or full")
    group.addoption("--adjointbench-timeout", default=None, type=float, metavar="SECONDS",
                    help="seconds per cell before its worker is killed (default 300)")
    group.addoption("--adjointbench-in-process", action="store_true",
                    help="run the implementation in the pytest process (for a debugger): "
                    "a crash or a hang then stops the run")
    parser.addini("adjointbench_impl", "implementation whose correctness sweep to add")
    parser.addini("adjointbench_sweep", "quick or full", default="quick")


def _option(config, name: str) -> str | None:
    return config.getoption(f"--adjointbench-{name}") or config.getini(f"adjointbench_{name}") or None


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "adjointbench: a cell of the adjointbench sweep")


def _cell_id(cell) -> str:
    """``softmax-vjp-n64-float64`` (with the method, and a device off the CPU)."""
    method = f"-{cell.method}" if cell.method else ""
    device = "" if cell.device == "cpu" else f"-{cell.device}"
    return f"{cell.problem}-{cell.op}{method}-n{cell.size}-{cell.dtype}{device}"


class CellItem(pytest.Item):
    """One cell of the sweep, run and judged by the harness."""

    def __init__(self, *, cell, manifest: list[dict] | None, **kwargs):
        super().__init__(**kwargs)
        self.cell, self.manifest = cell, manifest
        self.add_marker("adjointbench")

    def runtest(self) -> None:
        from adjointbench.suites.expected import expected_outcome, surprises
        from adjointbench.suites.runner import run_cell

        runner = _runner(self.config)
        record = (runner.run(self.cell) if runner is not None
                  else run_cell(self.cell, _oracle(self.config)))
        for _, expected in surprises([record], {record.impl: self.manifest}):
            if record.outcome == "ok":
                pytest.fail(f"{self.name} now passes, but the implementation's expected_outcomes "
                            f"list it as {expected}: update the list", pytrace=False)
            pytest.fail(f"{record.outcome} (expected {expected}): {record.message}",
                        pytrace=False)
        listed = self.manifest is not None and expected_outcome(record, self.manifest) != "ok"
        if record.outcome == "unsupported" or (record.outcome == "ill_conditioned" and not listed):
            pytest.skip(record.message)  # no verdict, and none expected
        if record.outcome != "ok":
            pytest.xfail(f"{record.outcome}, as expected: {record.message}")

    def reportinfo(self):
        return self.path, None, f"adjointbench {self.cell.impl} {self.name}"


def _oracle(config):
    from adjointbench.reference import Oracle

    if not hasattr(config, "_adjointbench_oracle"):
        config._adjointbench_oracle = Oracle()
    return config._adjointbench_oracle


def _runner(config):
    """The session's IsolatedRunner (None with --adjointbench-in-process)."""
    from adjointbench.suites.isolation import DEFAULT_TIMEOUT_S, IsolatedRunner

    if config.getoption("--adjointbench-in-process"):
        return None
    if not hasattr(config, "_adjointbench_runner"):
        timeout = config.getoption("--adjointbench-timeout") or DEFAULT_TIMEOUT_S
        config._adjointbench_runner = IsolatedRunner(timeout_s=timeout, oracle=_oracle(config))
    return config._adjointbench_runner


def pytest_unconfigure(config) -> None:
    runner = getattr(config, "_adjointbench_runner", None)
    if runner is not None:
        runner.close()  # its workers end with the session


class SweepCollector(pytest.Collector):
    """The sweep's cells for one implementation."""

    def __init__(self, *, spec: str, sweep: str, **kwargs):
        super().__init__(**kwargs)
        self.spec, self.sweep = spec, sweep

    def collect(self):
        from adjointbench.impls.registry import load_implementation
        from adjointbench.suites.cells import plan_cells
        from adjointbench.suites.executors import LocalExecutor
        from adjointbench.suites.expected import load_manifest

        runner = _runner(self.config)
        executor = (runner.executor(self.spec) if runner is not None
                    else LocalExecutor(load_implementation(self.spec)))
        description = executor.describe()
        manifest = load_manifest(self.spec, description["expected_outcomes"])
        for cell in plan_cells([self.spec], quick=self.sweep == "quick"):
            if not executor.supports(cell.problem, cell.op if cell.op not in
                                     ("transpose", "linearity") else "jvp", cell.method):
                continue
            yield CellItem.from_parent(self, name=_cell_id(cell), cell=cell, manifest=manifest)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session, config, items) -> None:
    spec = _option(config, "impl")
    if not spec:
        return
    timeout = config.getoption("--adjointbench-timeout")
    if timeout is not None and not 0 < timeout < float("inf"):
        raise pytest.UsageError(f"--adjointbench-timeout must be a number of seconds above 0, "
                                f"got {timeout}")
    sweep = _option(config, "sweep") or "quick"
    if sweep not in SWEEPS:
        raise pytest.UsageError(f"adjointbench_sweep must be one of {', '.join(SWEEPS)}, "
                                f"got {sweep!r}")
    try:
        collector = SweepCollector.from_parent(session, name=f"adjointbench[{spec}]",
                                               spec=spec, sweep=sweep)
        items.extend(collector.collect())
    except Exception as e:  # noqa: BLE001 - a plug-in that does not load is a usage error
        raise pytest.UsageError(f"--adjointbench-impl {spec!r}: {e}") from None
