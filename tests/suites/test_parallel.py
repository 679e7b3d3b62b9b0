"""--workers N: cells side by side in worker processes of their own, the
same outcomes as one at a time, every cell recorded once, hangs and crashes
still outcomes."""

import collections
import time

import pytest

from adjointbench.cli import main
from adjointbench.reference import get_problem
from adjointbench.suites.cells import Cell, plan_cells
from adjointbench.suites.isolation import IsolatedRunner
from adjointbench.suites.results import Record, ResultsFile, record_key
from adjointbench.suites.sweep import _Groups, affinity_groups, run_sweep

CHECK = ["check", "--impl", "numpy,naive", "--problem", "matmul,softmax,linear_solve,diffusion",
         "--quick", "--quiet"]


def _outcomes(folder):
    records, _ = ResultsFile(folder).read()
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys))  # every cell once
    return {record_key(r): r.outcome for r in records}


def test_two_workers_give_the_outcomes_of_one(tmp_path):
    assert main([*CHECK, "--workers", "1", "--out", str(tmp_path / "one")]) == 0
    assert main([*CHECK, "--workers", "2", "--out", str(tmp_path / "two")]) == 0
    one, two = _outcomes(tmp_path / "one"), _outcomes(tmp_path / "two")
    planned = plan_cells(["numpy", "naive"], ["matmul", "softmax", "linear_solve", "diffusion"],
                         quick=True)
    assert one == two and len(one) == len(planned)
    assert '"workers": 2' in (tmp_path / "two" / "environment.json").read_text()


def test_misbehaviour_in_parallel_is_still_an_outcome(plugins_on_path, oracle, tmp_path,
                                                      monkeypatch):
    from misbehaving import EXPECTED

    monkeypatch.setenv("ADJOINTBENCH_MEMORY_LIMIT_GB", "3")
    cells = [Cell(p, "misbehaving:implementation", "primal", get_problem(p).smallest_size)
             for p in EXPECTED] + [Cell("scalar_add", "numpy", "primal", 1)]
    with IsolatedRunner(timeout_s=15, oracle=oracle) as a, \
            IsolatedRunner(timeout_s=15, oracle=oracle) as b:  # the oracle is thread-safe
        records = run_sweep(cells, oracle, ResultsFile(tmp_path), progress=False,
                            runner=[a.run, b.run])
    assert {r.problem: r.outcome for r in records if r.impl != "numpy"} == EXPECTED
    assert [r.outcome for r in records if r.impl == "numpy"] == ["ok"]
    assert len(ResultsFile(tmp_path).read()[0]) == len(cells)


def _recording_runner(name: str, ran: dict, pause_s: float = 0.0):
    def run(cell):
        time.sleep(pause_s)
        ran[record_key(Record.for_cell(cell, "ok"))] = name
        return Record.for_cell(cell, "ok")
    return run


def test_an_implementations_problem_runs_whole_in_one_runner():
    """Its cells reuse each other's checked results and compiled operations,
    which live in one runner's worker."""
    cells = plan_cells(["numpy", "naive"], ["matvec", "softmax", "matmul", "l2_loss"],
                       ["jvp", "vjp", "linearity"], quick=True)
    ran: dict = {}
    records = run_sweep(cells, progress=False, runner=[
        _recording_runner("a", ran, 0.001), _recording_runner("b", ran, 0.002)])
    assert sorted(map(record_key, records)) == sorted(ran) and len(ran) == len(cells)
    runners_of = collections.defaultdict(set)
    for cell in cells:
        runners_of[cell.impl, cell.problem].add(ran[record_key(Record.for_cell(cell, "ok"))])
    assert len(runners_of) == 8 and all(len(r) == 1 for r in runners_of.values())
    assert set(ran.values()) == {"a", "b"}  # both ran groups


def test_a_runner_takes_groups_of_the_implementations_it_has_loaded_first():
    cells = plan_cells(["numpy", "naive"], ["matvec", "matmul"], ["jvp", "jacfwd"],
                       ["float64", "float32"])
    groups = affinity_groups(cells)
    assert [len(g) for g in groups] == sorted((len(g) for g in groups), reverse=True)
    assert sum(map(len, groups)) == len(cells)
    left = _Groups(groups)
    first = left.take(set())
    assert first is groups[0]  # nothing loaded: the largest
    held = {first[0].impl}
    listed_before = next(i for i, g in enumerate(groups) if g[0].impl not in held)
    mine = left.take(held)  # of the loaded implementation, past a group listed before it
    assert mine[0].impl in held and groups.index(mine) > listed_before
    rest = [left.take({"none loaded"}), left.take(set())]
    assert left.take(held) is None
    assert sorted(map(id, [first, mine, *rest])) == sorted(map(id, groups))


def test_a_runner_that_raises_ends_a_parallel_sweep_with_its_error():
    cells = plan_cells(["numpy", "naive"], ["matvec", "softmax"], ["jvp"], quick=True)

    def broken(cell):
        raise RuntimeError("the harness broke")
    with pytest.raises(RuntimeError, match="the harness broke"):
        run_sweep(cells, progress=False, runner=[_recording_runner("a", {}, 0.01), broken])


def test_workers_are_checked(tmp_path, capsys):
    assert main([*CHECK, "--workers", "0", "--out", str(tmp_path / "a")]) == 2
    assert main([*CHECK, "--workers", "2", "--in-process", "--out", str(tmp_path / "b")]) == 2
    assert "--in-process runs one cell at a time" in capsys.readouterr().err
    assert main(["bench", "--impl", "numpy", "--problem", "softmax", "--op", "primal", "--quick",
                 "--budget", "0.01", "--quiet", "--workers", "2",
                 "--out", str(tmp_path / "c")]) == 0
    assert "share the machine's cores" in capsys.readouterr().err


@pytest.mark.parametrize("suite, expected", [("check", None), ("bench", 1)])
def test_defaults(suite, expected, monkeypatch):
    import os

    from adjointbench.cli import _workers, build_parser

    args = build_parser().parse_args([suite])
    assert _workers(args, suite) == (expected or max(1, os.cpu_count() or 1))
