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


def test_sensitivity_hvps_by_every_method(tmp_path):
    """H u of J(theta) for linear_system and diffusion: numpy's second-order
    adjoint and differences of its adjoint gradients, and the frameworks'
    forward-over-reverse through the solver and through its implicit rule."""
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    assert main(["check", "--impl", "numpy,jax,torch,jax_implicit,torch_implicit",
                 "--problem", "linear_system,diffusion", "--size", "3,8,100",
                 "--op", "hvp,symmetry", "--dtype", "float64", "--quiet",
                 "--out", str(tmp_path)]) == 0
    records, _ = ResultsFile(tmp_path).read()
    ok = {(r.impl, r.problem, r.method) for r in records if r.outcome == "ok"
          and r.op == "hvp"}
    for problem in ("linear_system", "diffusion"):
        assert {("numpy", problem, "second_order_adjoint"), ("numpy", problem, "fd_gradient"),
                ("jax", problem, "unrolled"), ("torch", problem, "unrolled"),
                ("jax_implicit", problem, "implicit"),
                ("torch_implicit", problem, "implicit")} <= ok
    assert {r.outcome for r in records} <= {"ok", "unsupported"}


class _ForgetsTheOperatorsTangent(_DroppedTerm):
    """numpy whose diffusion second-order adjoint forgets dA/dtheta lam in the
    adjoint's tangent equation (a classic slip)."""
    name = "forgets_tangent"

    def __init__(self):
        import numpy as np
        import scipy

        from adjointbench.impls.gradient_methods import hvp_table
        from adjointbench.impls.numpy import NumpyImplementation
        from adjointbench.impls.numpy import steady_state as s

        def hvp(theta, v, u_obs):
            P = len(theta)
            h2, kappa = (1.0 / P) ** 2, np.exp(theta)
            solve = lambda rhs: scipy.linalg.solve_banded((1, 1), s._diffusion_banded(kappa), rhs)
            u = solve(np.ones(P - 1))
            lam = solve((u - u_obs) / P)
            Du, Dlam = s._difference(u), s._difference(lam)
            u_dot = solve(-s._difference_transposed(kappa * v * Du) / h2)
            lam_dot = solve(u_dot / P)  # the operator's tangent is missing
            return -kappa * (v * Du * Dlam + s._difference(u_dot) * Dlam
                             + Du * s._difference(lam_dot)) / h2

        self.impl = NumpyImplementation()
        self.impl.hvps = {**self.impl.hvps, "diffusion": hvp_table(s._diffusion, hvp)}


def test_a_second_order_adjoint_missing_a_term_is_caught():
    from adjointbench.reference import Oracle
    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.runner import run_cell

    impl = _ForgetsTheOperatorsTangent()
    cells = plan_cells(["forgets_tangent"], ["diffusion"], ["hvp"], ["float64"], sizes=[8, 100],
                       methods=["second_order_adjoint"])
    assert {run_cell(c, Oracle(), impl=impl).outcome for c in cells} == {"mismatch"}


def test_every_planned_cell_is_planned_once():
    """hvp and symmetry are operations of primitives and of sensitivity
    problems alike: each cell must still appear once in a plan."""
    from adjointbench.suites.cells import plan_cells
    from adjointbench.suites.results import record_key

    for suite in ("check", "bench"):
        keys = [record_key(c) for c in plan_cells(["numpy", "jax"], suite=suite)]
        assert len(keys) == len(set(keys)), suite
    asked_twice = plan_cells(["numpy"], ["softmax"], ["hvp", "hvp"], ["float64", "float64"])
    assert len(asked_twice) == len({record_key(c) for c in asked_twice})


def test_a_hessian_is_the_hvp_cells_compiled_product_per_unit_direction():
    """jax compiles one HVP per (problem, nesting) that the hessian cells reuse:
    column k of the Hessian is H e_k by that same product."""
    pytest.importorskip("jax")
    import numpy as np

    from adjointbench.impls.protocol import Task
    from adjointbench.impls.registry import load_implementation
    from adjointbench.reference import get_problem, make_inputs

    impl = load_implementation("jax")
    problem = get_problem("softmax")
    inputs = make_inputs(problem, 4)
    w = np.linspace(-1.0, 1.0, 4)
    task = lambda op, **kw: Task("softmax", op, inputs, problem.differentiable,
                                 method="reverse_over_reverse", cotangent=w, **kw)
    hessian = impl.prepare(task("hessian"))
    H = hessian.to_numpy(hessian.run())
    for k in range(4):
        e = {"x": np.eye(4)[k]}
        hvp = impl.prepare(task("hvp", tangent=e))
        np.testing.assert_array_equal(hvp.to_numpy(hvp.run())[0], H[:, k])
    compiled = {key[1] for key in impl._cache if key[:1] + key[2:3] == ("softmax", task("hvp").method)}
    assert compiled == {"hvp"}  # one compiled operation for both


def test_the_implicit_rules_second_order_cells_hold_their_manifests(tmp_path):
    """The custom-rule implementations' second-order cells, in every nesting,
    end as their manifests say (check --quick and the pytest sweep leave
    second order out, so only a full check met them): torch's forward over
    forward through its Function's jvp is the listed mismatch, the rest ok."""
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    assert main(["check", "--impl", "jax_implicit,torch_implicit", "--problem",
                 "scalar_root,linear_solve", "--size", "1,2", "--op", "hvp,hessian,symmetry",
                 "--quiet", "--points", "1", "--out", str(tmp_path)]) == 0
    records, _ = ResultsFile(tmp_path).read()
    failed = {(r.impl, r.method) for r in records if r.outcome not in ("ok", "unsupported")}
    assert failed == {("torch_implicit", "forward_over_forward")}
    assert {r.outcome for r in records if r.impl == "jax_implicit"} <= {"ok", "unsupported"}
