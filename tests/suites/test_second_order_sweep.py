"""The second-order cells end to end: every nesting of jax and torch against
the oracle's second derivatives, through the command line."""

import pytest

from adjointbench.cli import main
from adjointbench.impls.protocol import NESTINGS
from adjointbench.suites.results import ResultsFile


def test_second_order_cells_of_every_nesting(tmp_path, capsys):
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    status = main(["check", "--impl", "jax,torch,numpy", "--op", "hvp,hessian,symmetry",
                   "--problem", "scalar_sin,softmax,linear_solve", "--dtype", "float64",
                   "--quick", "--points", "1", "--quiet", "--out", str(tmp_path)])
    assert status == 0, capsys.readouterr().out  # every cell as its manifest expects
    records, _ = ResultsFile(tmp_path).read()
    ok = {(r.impl, r.op, r.method) for r in records if r.outcome == "ok"}
    for impl in ("jax", "torch"):
        for nesting in NESTINGS:
            assert (impl, "hvp", nesting) in ok and (impl, "hessian", nesting) in ok
    # torch's forward rule of linalg.solve is not differentiable in A (its manifest)
    wrong = {(r.impl, r.problem, r.method) for r in records if r.outcome == "mismatch"}
    assert wrong == {("torch", "linear_solve", "reverse_over_forward"),
                     ("torch", "linear_solve", "forward_over_forward")}
    assert {r.outcome for r in records if r.impl == "numpy"} == {"unsupported"}
