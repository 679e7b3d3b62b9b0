"""Finding implementations: built-ins, entry points, module:object."""

import pytest

from adjointbench.impls.registry import ProtocolError, load_implementation
from adjointbench.reference import Oracle, UnknownNameError
from adjointbench.suites.cells import Cell, plan_cells
from adjointbench.suites.executors import LocalExecutor
from adjointbench.suites.sweep import run_sweep


@pytest.fixture(autouse=True)
def fresh_registry():
    load_implementation.cache_clear()
    yield
    load_implementation.cache_clear()


@pytest.mark.parametrize("name", ["naive", "numpy"])
def test_builtins_load_by_name(name):
    assert load_implementation(name).name == name


def test_the_built_ins_are_the_implementations_with_a_built_in_manifest():
    """What the harness's own benchmarks sweep ("every built-in"): each
    implementation this package declares, every one of which ships its
    expected outcomes, and no plug-in installed beside them (the example's)."""
    from adjointbench.impls.registry import available_implementations, built_in_implementations
    from adjointbench.suites.expected import MANIFESTS
    from adjointbench.suites.harness import built_in

    manifests = {entry.name.removesuffix(".json") for entry in MANIFESTS.iterdir()
                 if entry.name.endswith(".json")}
    built_ins = built_in_implementations()
    assert set(built_ins) == manifests & set(available_implementations())
    assert {"naive", "numpy"} <= set(built_ins)
    assert built_in().split(",") == built_ins
    plug_ins = set(available_implementations()) - set(built_ins)
    assert all(load_implementation(name).__module__.split(".")[0] != "adjointbench"
               for name in plug_ins)


def test_unknown_implementation_names_the_closest():
    with pytest.raises(UnknownNameError, match="Did you mean 'numpy'"):
        load_implementation("nunpy")


def test_module_object_plugin_runs_through_the_sweep(plugins_on_path, oracle):
    cells = plan_cells(["third_party:implementation"], ["scalar_mul", "matvec"],
                       ["primal", "jvp", "vjp", "transpose"])
    records = run_sweep(cells, oracle, progress=False)
    outcomes = {(r.problem, r.op): r.outcome for r in records if r.dtype == "float64"}
    assert outcomes[("scalar_mul", "vjp")] == "ok"
    assert outcomes[("scalar_mul", "transpose")] == "ok"
    assert outcomes[("matvec", "primal")] == "unsupported"
    assert {r.outcome for r in records} == {"ok", "unsupported"}


def test_entry_point_plugin_is_found_by_name(plugins_on_path, tmp_path, monkeypatch):
    dist = tmp_path / "adjointbench_thirdparty-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: adjointbench-thirdparty\n"
                                   "Version: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[adjointbench.impls]\nthirdparty = third_party:implementation\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    records = run_sweep(plan_cells(["thirdparty"], ["scalar_mul"], ["jvp"]), Oracle(),
                        progress=False)
    assert [r.outcome for r in records] == ["ok", "ok"]


def _declare(folder, package: str, entries: str) -> None:
    """An installed package (its metadata only) declaring ``entries``."""
    dist = folder / f"{package}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[adjointbench.impls]\n{entries}\n")


@pytest.mark.parametrize("how", ["module", "console script"])
def test_a_plug_in_cannot_pass_for_a_built_in_by_its_name(plugins_on_path, tmp_path, how):
    """A package declaring its wrong rules as ``numpy`` ran as numpy, its
    records labelled numpy, when its path came after the project's in
    sys.path (python -m in the checkout) and not before (the console
    script): the name is
    the built-in's wherever it comes, and the plug-in is named, with the way
    to run it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from adjointbench.suites.results import ResultsFile

    _declare(tmp_path, "impostor", "numpy = wrong_rules:implementation")
    script = Path(sys.executable).parent / "adjointbench"
    if how == "console script" and not script.exists():
        pytest.skip("no adjointbench console script beside this Python")
    command = [str(script)] if how == "console script" else [sys.executable, "-m", "adjointbench"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins_on_path), str(tmp_path)])}
    done = subprocess.run([*command, "check", "--impl", "numpy", "--problem", "softmax", "--op",
                           "vjp", "--size", "4", "--dtype", "float64", "--points", "1", "--quiet",
                           "--out", str(tmp_path / "r")], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    (record,), _ = ResultsFile(tmp_path / "r").read()
    assert record.impl == "numpy" and record.outcome == "ok"  # the built-in's right rule
    assert ("the implementation name 'numpy' is the built-in's; the plug-in entry point "
            "wrong_rules:implementation (impostor)") in done.stderr
    assert "name it as 'wrong_rules:implementation'" in done.stderr


def test_a_name_two_plug_ins_declare_names_neither(plugins_on_path, tmp_path, monkeypatch, capsys):
    from adjointbench.cli import main
    from adjointbench.impls.registry import name_conflicts

    _declare(tmp_path, "first", "rules = wrong_rules:implementation")
    _declare(tmp_path, "second", "rules = third_party:implementation")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["check", "--impl", "rules", "--problem", "softmax", "--quiet",
                 "--out", str(tmp_path / "r")]) == 2
    told = capsys.readouterr().err
    assert "'rules' is declared by" in told and "so it names neither" in told
    assert "wrong_rules:implementation" in told and "third_party:implementation" in told
    assert "rules" in name_conflicts() and not (tmp_path / "r" / "results.jsonl").exists()
    assert main(["list"]) == 0 and "warning: the implementation name 'rules'" in \
        capsys.readouterr().out


def test_missing_methods_are_named(plugins_on_path):
    with pytest.raises(ProtocolError, match="missing prepare"):
        load_implementation("broken:NoPrepare")
    with pytest.raises(ProtocolError, match=r"name \(a str attribute\), devices, supports, prepare"):
        load_implementation("broken:nameless")
    from adjointbench.impls.registry import validate
    from third_party import implementation

    for name in (42, ""):
        numbered = type("Numbered", (type(implementation),), {"name": name})()
        with pytest.raises(ProtocolError, match=rf"name \(a non-empty str attribute; it is "
                           rf"{name!r}\)"):
            validate(numbered, "a plug-in")


def test_missing_attribute_is_explained(plugins_on_path):
    with pytest.raises(UnknownNameError, match="has no attribute 'nothing'"):
        load_implementation("third_party:nothing")


def test_a_prepare_that_returns_no_prepared_is_an_error_naming_the_fix(plugins_on_path, oracle):
    [record] = run_sweep([Cell("softmax", "broken:bare_function", "primal", 4, points=1)],
                         oracle, progress=False)
    assert record.outcome == "error"
    assert "bare_function.prepare returned a function, which has no callable" in record.message
    assert "Prepared(run=...)" in record.message


def test_devices_that_are_not_a_tuple_of_names_are_refused_naming_the_fix(plugins_on_path):
    executor = LocalExecutor(load_implementation("broken:devices_as_a_string"))
    with pytest.raises(TypeError, match=r"devices_as_a_string.devices\(\) returned 'cpu': "
                                        r"return a tuple of device names, such as \('cpu',\)"):
        executor.describe()
    assert LocalExecutor(load_implementation("broken:bare_function")).describe()["devices"] \
        == ("cpu",)
