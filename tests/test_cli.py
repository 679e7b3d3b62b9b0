"""The command line: list, check, filters, results.jsonl and exit codes."""

import json

import pytest

from adjointbench.cli import main

FIELDS = {"problem", "impl", "op", "dtype", "device", "size", "outcome", "max_abs_err",
          "max_rel_err", "tol", "message"}


def test_list_json(capsys):
    assert main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    problems = {p["name"]: p for p in data["problems"]}
    assert problems["linear_solve"]["family"] == "linalg"
    assert problems["linear_solve"]["sizes"] == [2, 8, 16]
    assert {"naive", "numpy"} <= {i["name"] for i in data["implementations"] if i["available"]}
    assert "vjp" in data["operations"]


def test_list_says_which_implementations_are_plug_ins(capsys):
    """Built-ins as such; an installed plug-in (the example, which the test
    install has: examples/adjointbench-example/pyproject.toml) with its
    entry point and package."""
    assert main(["list", "--json"]) == 0
    origins = {i["name"]: i["origin"] for i in json.loads(capsys.readouterr().out)
               ["implementations"]}
    assert origins["numpy"] == origins["naive"] == origins["torch_implicit"] == "built-in"
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()
             if line.startswith("  ") and ("available" in line or "not installed" in line)}
    assert "[" not in lines["numpy"]
    if "example" not in origins:
        pytest.skip("the example plug-in is not installed here")
    example = "entry point adjointbench_example.rules:implementation (adjointbench-example)"
    assert origins["example"] == example
    assert lines["example"].endswith(f"[{example}]")


def test_check_writes_one_record_per_cell(tmp_path, capsys):
    code = main(["check", "--impl", "numpy,naive", "--problem", "matvec,softmax",
                 "--op", "vjp,jvp", "--dtype", "float32", "--size", "8,64", "--out",
                 str(tmp_path), "--quiet"])
    assert code == 0
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    # matvec has size 8, softmax 64: 2 problems x 2 impls x 2 ops
    assert len(records) == 8
    assert all(FIELDS <= set(r) for r in records)
    assert {(r["problem"], r["size"]) for r in records} == {("matvec", 8), ("softmax", 64)}
    assert {r["outcome"] for r in records} == {"ok"}
    assert all(r["max_rel_err"] <= r["tol"] for r in records)


def test_a_sweep_where_nothing_is_supported_says_so(plugins_on_path, tmp_path, capsys):
    """A plug-in's problem with a built-in that does not know it: every cell
    unsupported, "84 cells: 84 unsupported" and exit 0 was all it said."""
    assert main(["check", "--problem", "failing_problem:problem", "--impl", "numpy",
                 "--size", "4", "--dtype", "float64", "--op", "jvp,vjp", "--quiet",
                 "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert ("nothing was checked or timed: every cell is unsupported (numpy does not support "
            "jvp of fails_above_4, ...); name the implementations") in err


def test_a_name_given_twice_runs_its_cells_once(tmp_path):
    """--impl numpy,numpy ran every cell twice, two records of one key."""
    assert main(["check", "--impl", "numpy,naive,numpy", "--problem", "matvec,matvec",
                 "--op", "primal,primal", "--dtype", "float64", "--size", "8,8", "--points", "1",
                 "--out", str(tmp_path), "--quiet"]) == 0
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["impl"] for r in records) == ["naive", "numpy"]
    from adjointbench.suites.cells import plan_cells
    assert plan_cells(["numpy", "numpy"], ["matvec"], ["primal"], sizes=[8, 8]) == \
        plan_cells(["numpy"], ["matvec"], ["primal"], sizes=[8])


def test_check_exits_1_on_mismatch(plugins_on_path, tmp_path, capsys):
    code = main(["check", "--impl", "wrong_rules:implementation", "--problem", "softmax",
                 "--op", "vjp", "--size", "4", "--out", str(tmp_path), "--quiet"])
    assert code == 1
    assert "mismatch" in capsys.readouterr().out


@pytest.mark.parametrize("args, hint", [
    (["--problem", "sofmax"], "Did you mean 'softmax'"),
    (["--impl", "nump"], "Did you mean 'numpy'"),
    (["--op", "vjpp"], "Did you mean 'vjp'"),
    (["--dtype", "float16"], "Valid names: float64, float32"),
    (["--size", "7"], "Valid sizes:"),
    (["--size", "big"], "whole numbers"),
])
def test_bad_input_exits_2_with_the_closest_names(args, hint, capsys):
    assert main(["check", "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert hint in err
    assert "cannot be loaded" not in err and ".." not in err  # told plainly, before any worker


@pytest.mark.parametrize("command, args, told", [
    ("check", ["--problem", "softmax", "--op", "gradient"],
     ["No check cell matches --problem softmax --op gradient.", "softmax offers primal, jvp",
      "--op gradient is offered by forced_oscillator_terminal,", "linear_system"]),
    ("check", ["--problem", "softmax", "--method", "adjoint"],
     ["softmax offers primal", "--method adjoint is offered by", "diffusion"]),
    ("bench", ["--problem", "linear_system"],
     ["No bench cell matches --problem linear_system.", "gradient (fd_forward,",
      "unless --op names others"]),
])
def test_filters_that_select_no_cell_exit_2_saying_what_each_offers(tmp_path, capsys, command,
                                                                    args, told):
    assert main([command, "--impl", "numpy", *args, "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert all(words in err for words in told), err
    assert not (tmp_path / "results.jsonl").exists()  # nothing ran, nothing written


def test_a_method_alone_selects_only_its_cells_and_named_operations_still_run():
    from adjointbench.suites.cells import plan_cells

    alone = plan_cells(["numpy"], methods=["adjoint"])
    assert alone and {(c.op, c.method) for c in alone} == {("gradient", "adjoint")}
    with_ops = plan_cells(["numpy"], ["softmax", "linear_system"], ["jvp", "gradient"],
                          ["float64"], methods=["adjoint"])
    assert {(c.problem, c.op, c.method) for c in with_ops} == {
        ("softmax", "jvp", None), ("linear_system", "gradient", "adjoint")}

def test_unwritable_output_folder_is_reported_before_any_work(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["check", "--problem", "softmax", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert "cannot write to the output folder" in err and "checking" not in err


# --- third-party problems by module:object ---

PROBLEM_MODULE = '''
import numpy as np
from adjointbench import declare_problem
cube = declare_problem("cli_cube", inputs=("x",), sizes=(3, 6),
                       generate=lambda n, rng: {"x": rng.standard_normal(n)},
                       primal=lambda xp, x: x * x * x)
shadow = declare_problem("softmax", inputs={"x": np.ones(3)}, float64_primal=np.sin)
not_a_problem = np.sin
'''
IMPL_MODULE = '''
import numpy as np
from adjointbench.impls.rules import Rule, RuleImplementation
class Cube(RuleImplementation):
    name = "cube_rules"
    rules = {"cli_cube": Rule(primal=lambda x: x**3, forward=lambda x: (x**3, x),
                              jvp=lambda x, t: 3 * x**2 * t, vjp=lambda x, w: (3 * x**2 * w,))}
implementation = Cube()
'''


@pytest.fixture
def problem_modules(tmp_path, monkeypatch):
    (tmp_path / "cli_problems.py").write_text(PROBLEM_MODULE)
    (tmp_path / "cli_cube_rules.py").write_text(IMPL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.delenv("ADJOINTBENCH_PROBLEMS", raising=False)
    return tmp_path


def test_check_a_problem_and_implementation_named_by_module(problem_modules, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["check", "--problem", "cli_problems:cube", "--impl", "cli_cube_rules:implementation",
                   "--quiet", "--out", str(out), "--points", "2"])
    assert status == 0, capsys.readouterr()
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert {r["problem"] for r in records} == {"cli_cube"}
    first_order = [r for r in records if r["dtype"] == "float64" and r["method"] is None]
    assert {r["outcome"] for r in first_order} == {"ok"}
    second_order = [r for r in records if r["op"] in ("hvp", "hessian", "symmetry")]
    assert second_order and {r["outcome"] for r in second_order} == {"unsupported"}  # no rules
    assert {r["level"] for r in records if r["op"] == "vjp"} == {"fd"}


@pytest.mark.parametrize("spec, expected", [
    ("cli_problems:not_a_problem", "not a problem declaration"),
    ("cli_problems:missing", "has no attribute 'missing'"),
    ("no_such_module_here:x", "cannot import module 'no_such_module_here'"),
    ("cli_problems:shadow", "already uses; give it another name"),
])
def test_a_bad_problem_spec_exits_2_naming_the_problem(problem_modules, spec, expected, capsys):
    assert main(["check", "--problem", spec, "--impl", "numpy", "--quiet"]) == 2
    assert expected in capsys.readouterr().err
