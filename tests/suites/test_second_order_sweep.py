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
    numpy = {(r.method, r.outcome) for r in records if r.impl == "numpy"}
    assert numpy == {("rule", "ok")} | {(m, "unsupported") for m in NESTINGS + ("materialised",)}


PRIMITIVES = ("scalar_add,scalar_mul,scalar_sin,broadcast_sin,broadcast_tanh,batched_sin,"
              "l2_loss,softmax,matvec,matmul,linear_solve")


@pytest.mark.parametrize("impl, method", [("numpy", "rule"), ("naive", "materialised")])
def test_hand_written_second_order_of_every_primitive(impl, method, tmp_path):
    """numpy's second-order rules (the tangent of each VJP, by hand) and naive's
    Hessians filled entry by entry, against the oracle, in both dtypes."""
    assert main(["check", "--impl", impl, "--op", "hvp,hessian,symmetry", "--method", method,
                 "--problem", PRIMITIVES, "--points", "1", "--quiet", "--in-process",
                 "--out", str(tmp_path)]) == 0
    records, _ = ResultsFile(tmp_path).read()
    ok = {(r.problem, r.op) for r in records if r.outcome == "ok"}
    for problem in PRIMITIVES.split(","):
        if impl == "numpy" or problem != "batched_sin":
            assert {(problem, op) for op in ("hvp", "hessian", "symmetry")} <= ok, problem
    assert {r.outcome for r in records} <= {"ok", "unsupported"}


class _DroppedTerm:
    """numpy with a softmax second-order rule that forgets -s <ds, s_bar>."""
    name = "dropped_term"

    def __init__(self):
        import dataclasses

        import numpy as np

        from adjointbench.impls.numpy import NumpyImplementation
        from adjointbench.impls.numpy.reductions import _softmax, softmax

        def hvp(inputs, s_bar, u):
            s = _softmax(inputs["x"])
            return (s * (u - np.dot(s, u)) * (s_bar - np.dot(s, s_bar)),)

        self.impl = NumpyImplementation()
        self.impl.rules = {**self.impl.rules, "softmax": dataclasses.replace(softmax, hvp=hvp)}

    def devices(self):
        return ("cpu",)

    def supports(self, problem, op, method=None):
        return self.impl.supports(problem, op, method)

    def prepare(self, task):
        return self.impl.prepare(task)


def test_a_second_order_rule_missing_a_term_is_caught():
    from adjointbench.reference import Oracle
    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.runner import run_cell

    impl = _DroppedTerm()
    cells = plan_cells(["dropped_term"], ["softmax"], ["hvp", "hessian"], ["float64"],
                       methods=["rule"], points=1)
    outcomes = {run_cell(c, Oracle(), impl=impl).outcome for c in cells}
    assert outcomes == {"mismatch"}
