"""The suite catches wrong rules, and only where they are wrong."""

from collections import defaultdict

from adjointbench.reference import get_problem
from adjointbench.reference.problem import FULL_MATRICES_MAX
from adjointbench.suites.cells import SECOND_ORDER_OPS, plan_cells
from adjointbench.suites.sweep import run_sweep

WRONG_PROBLEMS = {"softmax", "matmul", "linear_solve"}
# every cell whose operation runs the VJP
USES_VJP = {"vjp", "jacrev", "transpose"}


def test_wrong_vjps_are_mismatches_exactly_where_wrong(plugins_on_path, oracle):
    problems = sorted(WRONG_PROBLEMS | {"matvec", "l2_loss", "broadcast_tanh", "scalar_mul"})
    records = run_sweep(plan_cells(["wrong_rules:implementation"], problems), oracle,
                        progress=False)
    by_outcome = defaultdict(set)
    for r in records:
        by_outcome[r.outcome].add((r.problem, r.op, r.size, r.dtype))
    expected_mismatches = {(p, op, size, dtype)
                           for p in WRONG_PROBLEMS for size in get_problem(p).sizes
                           for op in USES_VJP for dtype in ("float64", "float32")
                           if op != "jacrev" or size == get_problem(p).smallest_size}
    # matmul's transposed factor is a shape error now that A and B are not square
    assert by_outcome["mismatch"] | by_outcome["error"] == expected_mismatches
    assert {p for p, *_ in by_outcome["error"]} <= {"matmul"}
    # hand-written first-order rules offer no second order: those cells, and only those
    assert {op for _, op, *_ in by_outcome["unsupported"]} == set(SECOND_ORDER_OPS)
    assert set(by_outcome) <= {"ok", "mismatch", "error", "unsupported"}


def test_mismatch_message_names_op_input_element_error_tolerance_condition(plugins_on_path,
                                                                            oracle):
    [record] = run_sweep(plan_cells(["wrong_rules:implementation"], ["linear_solve"], ["vjp"],
                                    ["float64"], [2]), oracle, progress=False)
    assert record.outcome == "mismatch"
    message = record.message
    for part in ("vjp cotangent for input 'A'", "worst element (", "got ", "want ",
                 " rel > tol ", "condition estimate"):
        assert part in message, message
    assert record.max_rel_err > record.tol


def test_a_declared_problem_wider_than_its_full_matrices_is_checked_along_directions(
        plugins_on_path, oracle):
    """A declared problem's oracle builds full Jacobians and Hessians up to
    FULL_MATRICES_MAX input entries (a column per entry, a pair of columns
    per Hessian entry: five cells of wide's 80 took 200 s, a declaration of
    200,000 entries 9 GB and more than 10 minutes before its first cell);
    beyond, Jacobians and Hessians are checked along the tangent and the
    projections, and still catch a wrong rule."""
    import wide

    assert wide.SIZE > FULL_MATRICES_MAX
    reference = oracle.reference("wide:problem", wide.SIZE)
    second = oracle.second_order("wide:problem", wide.SIZE)
    assert reference.jacobian is None and second.hessian is None
    assert len(reference.projected) >= 2 and len(second.projected) >= 2
    judged = {"primal", "jvp", "vjp", "jacfwd", "jacrev", "hvp", "hessian", "transpose",
              "linearity", "symmetry"}
    records = run_sweep(plan_cells(["wide:implementation", "wide:wrong_rules"], ["wide:problem"],
                                   sorted(judged), ["float64"], methods=["rule"]),
                        oracle, progress=False)
    outcomes = {(r.impl, r.op): r.outcome for r in records}
    assert {op for impl, op in outcomes if impl == "wide:implementation"} == judged
    assert {op for (impl, op), o in outcomes.items() if o == "ok"
            and impl == "wide:implementation"} == judged
    assert {op for (impl, op), o in outcomes.items() if o == "mismatch"} == {
        "vjp", "jacrev", "transpose", "hvp", "hessian"}  # the ones that run its VJP or HVP
    assert any("jacrev Jacobian times v0" in r.message for r in records if r.op == "jacrev")


def test_a_full_matrix_no_worker_can_build_is_unsupported_not_an_error(plugins_on_path, oracle,
                                                                         monkeypatch):
    """A right implementation asked for a 200,000 x 200,000 Jacobian ran out
    of memory after 34 s, an ``error``; a matrix that does not fit a
    worker's memory cap four times is not asked (here wide's 80 x 80 under a
    cap of 100 kB)."""
    monkeypatch.setenv("ADJOINTBENCH_MEMORY_LIMIT_GB", str(1e5 / 2**30))
    records = run_sweep(plan_cells(["wide:implementation"], ["wide:problem"],
                                   ["jvp", "jacfwd", "jacrev", "hessian"], ["float64"],
                                   methods=["rule"]), oracle, progress=False)
    outcomes = {r.op: r for r in records}
    assert outcomes["jvp"].outcome == "ok"
    for op, shape in (("jacfwd", "80 x 80"), ("jacrev", "80 x 80"), ("hessian", "80 x 80")):
        assert outcomes[op].outcome == "unsupported", outcomes[op]
        assert outcomes[op].message.startswith(
            f"{op} of wide at size 80 is a {shape} matrix, 0.0 GiB in float64: more than a "
            "worker can build in its 0.0 GiB (its memory cap, ADJOINTBENCH_MEMORY_LIMIT_GB)")
