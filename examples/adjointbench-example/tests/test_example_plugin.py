"""The example installed as a plug-in: its problems in the catalogue, its rule
table through the command line and through the pytest plugin."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("adjointbench_example",
                    reason="install the example: pip install -e examples/adjointbench-example")

HERE = Path(__file__).resolve().parents[1]


def _run(*args, cwd=HERE):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_list_shows_the_entry_point_problems():
    done = _run("-m", "adjointbench.cli", "list", "--json")
    assert done.returncode == 0, done.stderr
    names = {p["name"]: p for p in json.loads(done.stdout)["problems"]}
    assert {"example_logsumexp", "example_tridiagonal_solve"} <= set(names)
    assert "entry point" in names["example_logsumexp"]["origin"]


def test_check_from_the_command_line(tmp_path):
    done = _run("-m", "adjointbench.cli", "check", "--quiet",
                "--problem", "adjointbench_example.problems:tridiagonal_solve",
                "--impl", "adjointbench_example.rules:implementation", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    judged = [r for r in records if r["dtype"] == "float64" and r["method"] is None]
    assert judged and {r["outcome"] for r in judged} == {"ok"}
    second_order = [r for r in records if r["op"] in ("hvp", "hessian", "symmetry")]
    assert {r["outcome"] for r in second_order} == {"unsupported"}  # the rules have none
    assert {r["level"] for r in judged} == {"fd"}  # the high-precision primal's
    # declared in float64 only: its float32 cells say so instead of passing
    assert {r["outcome"] for r in records if r["dtype"] == "float32"} == {"unsupported"}


def test_the_pytest_plugin_runs_the_sweep_of_the_rule_table():
    done = _run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "adjointbench",
                "--adjointbench-impl", "example", "tests/test_example_rules.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "example_logsumexp-vjp-n4-float64" in _run(
        "-m", "pytest", "--co", "-q", "-p", "no:cacheprovider", "--adjointbench-impl", "example",
        "tests/test_example_rules.py").stdout
    assert " passed" in done.stdout and "failed" not in done.stdout
