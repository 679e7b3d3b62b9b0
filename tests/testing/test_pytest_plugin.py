"""The pytest plugin: a plug-in's correctness sweep in the user's own test run."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).parents[1] / "plugins"
LISTS_A_PASSING_CELL = '''
from third_party import ScalarOnly
class ListsAPassingCell(ScalarOnly):
    expected_outcomes = [{"problem": "scalar_mul", "op": "vjp", "outcome": "mismatch"}]
implementation = ListsAPassingCell()
'''


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    (folder / "test_own.py").write_text("def test_own():\n    assert True\n")
    environment = {**os.environ, "PYTHONPATH": f"{PLUGINS}{os.pathsep}{folder}"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rxXfs",
                           *args], cwd=folder, env=environment, capture_output=True, text=True,
                          timeout=600)


def test_one_test_per_cell_with_readable_ids(tmp_path):
    done = _pytest(tmp_path, "--adjointbench-impl", "third_party:implementation", "-v")
    assert done.returncode == 0, done.stdout
    for cell in ("scalar_mul-primal-n1-float64", "scalar_mul-vjp-n1-float64",
                 "scalar_mul-transpose-n1-float64", "scalar_mul-linearity-n1-float64"):
        assert f"{cell} PASSED" in done.stdout
    assert "test_own PASSED" in done.stdout  # the user's own tests still run


def test_the_ini_option_adds_the_sweep(tmp_path):
    (tmp_path / "pytest.ini").write_text("[pytest]\nadjointbench_impl = third_party:implementation\n")
    done = _pytest(tmp_path, "-m", "adjointbench")
    assert done.returncode == 0, done.stdout
    assert "5 passed" in done.stdout


def test_expected_failures_are_xfail_and_new_ones_fail(tmp_path):
    selected = ["-k", "scalar_add or scalar_mul"]
    declared = _pytest(tmp_path, "--adjointbench-impl", "misbehaving:ExpectsItsFailures", *selected)
    assert declared.returncode == 0, declared.stdout
    assert "2 xfailed" in declared.stdout
    undeclared = _pytest(tmp_path, "--adjointbench-impl", "misbehaving:ExpectsOneFailure", *selected)
    assert undeclared.returncode == 1
    assert "mismatch (expected ok)" in undeclared.stdout and "1 xfailed" in undeclared.stdout


UNLISTED = '''
from adjointbench.impls.numpy import NumpyImplementation
class Unlisted(NumpyImplementation):
    expected_outcomes = []  # not even the triple root's ill-conditioning
implementation = Unlisted()
'''


def test_an_ill_conditioned_cell_is_skipped_unless_listed(tmp_path):
    """No verdict either way: skipped with the reason where the list expects
    ok (an input point can land where the problem is ill-conditioned), xfail
    where the list names it."""
    (tmp_path / "unlisted.py").write_text(UNLISTED)
    selected = ["-k", "nonlinear_system and (adjoint or forward_sensitivity)"]
    unlisted = _pytest(tmp_path, "--adjointbench-impl", "unlisted:implementation", *selected)
    assert unlisted.returncode == 0, unlisted.stdout
    assert "2 skipped" in unlisted.stdout and "ill-conditioned at these inputs" in unlisted.stdout
    listed = _pytest(tmp_path, "--adjointbench-impl", "numpy", *selected)
    assert listed.returncode == 0 and "2 xfailed" in listed.stdout, listed.stdout


def test_a_listed_failure_that_passes_fails_the_run(tmp_path):
    (tmp_path / "lists_passing.py").write_text(LISTS_A_PASSING_CELL)
    done = _pytest(tmp_path, "--adjointbench-impl", "lists_passing:implementation")
    assert done.returncode == 1
    assert "scalar_mul-vjp-n1-float64 now passes" in done.stdout


def test_wrong_rules_fail_their_cells(tmp_path):
    done = _pytest(tmp_path, "--adjointbench-impl", "wrong_rules:implementation",
                   "-k", "softmax-vjp")
    assert done.returncode == 1
    assert "FAILED" in done.stdout and "mismatch" in done.stdout


@pytest.mark.parametrize("spec", ["no_such_module:x", "third_party:nothing"])
def test_an_implementation_that_does_not_load_is_a_usage_error(tmp_path, spec):
    done = _pytest(tmp_path, "--adjointbench-impl", spec)
    assert done.returncode == 4  # pytest's usage error
    assert f"--adjointbench-impl {spec!r}" in done.stderr


def test_a_crash_or_a_hang_fails_its_test_and_the_run_goes_on(tmp_path):
    """Cells run in the implementation's own worker, as in `adjointbench
    check`: a segfault killed the whole pytest session, a hang stopped it."""
    done = _pytest(tmp_path, "--adjointbench-impl", "misbehaving:implementation",
                   "--adjointbench-timeout", "3", "-k", "matmul or matvec or softmax or own")
    assert done.returncode == 1, done.stdout + done.stderr
    for cell, outcome in (("matmul", "crashed"), ("matvec", "timeout"), ("softmax", "crashed")):
        assert f"{cell}-primal-n" in done.stdout and f"{outcome} (expected ok)" in done.stdout
    assert "6 failed, 1 passed" in done.stdout  # two sizes each; the user's own test ran too


def test_code_under_test_cannot_approve_its_own_cells(tmp_path):
    """A result that patches the comparisons when converted: converted in its
    worker, it reaches no verdict; in the pytest process (as before, or with
    --adjointbench-in-process) its wrong primal passed."""
    selected = ["--adjointbench-impl", "untrustworthy:smuggler", "-k", "scalar_sin-primal"]
    isolated = _pytest(tmp_path, *selected)
    assert isolated.returncode == 1 and "mismatch (expected ok)" in isolated.stdout
    in_process = _pytest(tmp_path, *selected, "--adjointbench-in-process")
    assert in_process.returncode == 0, in_process.stdout  # the debugging mode trusts the code


def test_a_bad_timeout_is_a_usage_error(tmp_path):
    done = _pytest(tmp_path, "--adjointbench-impl", "numpy", "--adjointbench-timeout", "0")
    assert done.returncode == 4 and "--adjointbench-timeout must be" in done.stderr
