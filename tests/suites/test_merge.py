"""adjointbench merge: results of several machines in one folder, each cell
once, each machine's environment kept; report and compare show the machine."""

import json

from adjointbench.cli import main
from adjointbench.suites.results import ResultsFile, record_key

CHECK = ["check", "--impl", "numpy", "--quick", "--quiet", "--in-process"]


def _run_on(folder, machine, *argv):
    """A check run, as if on ``machine`` (its environment.json says so)."""
    assert main([*CHECK, *argv, "--out", str(folder)]) == 0
    path = folder / "environment.json"
    environment = json.loads(path.read_text())
    path.write_text(json.dumps({**environment, "machine": machine, "cpu": f"{machine} cpu"}))
    return {record_key(r): r for r in ResultsFile(folder).read()[0]}


def test_merge_keeps_each_cell_once_and_each_machine(tmp_path, capsys):
    a = _run_on(tmp_path / "a", "laptop", "--problem", "scalar_mul,softmax")
    b = _run_on(tmp_path / "b", "gpu-box", "--problem", "softmax,matvec")
    capsys.readouterr()
    assert main(["merge", str(tmp_path / "out"), str(tmp_path / "a"), str(tmp_path / "b")]) == 0
    said = capsys.readouterr()
    both = a.keys() & b.keys()
    assert both and said.err.count("conflict:") == len(both)  # each shared cell reported
    merged = {record_key(r): r for r in ResultsFile(tmp_path / "out").read()[0]}
    assert len(merged) == len(ResultsFile(tmp_path / "out").read()[0])  # once each
    assert merged.keys() == a.keys() | b.keys()
    assert {k: r.machine for k, r in merged.items()} == {
        k: "laptop" if k in a else "gpu-box" for k in merged}  # the first folder wins
    environment = json.loads((tmp_path / "out" / "environment.json").read_text())
    assert {m: e["cpu"] for m, e in environment["machines"].items()} == {
        "laptop": "laptop cpu", "gpu-box": "gpu-box cpu"}
    assert len(environment["merge_conflicts"]) == len(both)

    assert main(["report", "--results", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "report" / "index.html").read_text()
    assert 'id="machines"' in page and "gpu-box cpu" in page and "laptop cpu" in page

    capsys.readouterr()
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "[gpu-box]" in out and "new" in out  # b's cells, by machine


def test_merge_refuses_to_overwrite_or_to_guess(tmp_path, capsys):
    _run_on(tmp_path / "a", "laptop", "--problem", "scalar_mul")
    assert main(["merge", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert main(["merge", str(tmp_path / "out"), str(tmp_path / "missing")]) == 2
    assert main(["merge", str(tmp_path / "out"), str(tmp_path / "a")]) == 0
    assert main(["merge", str(tmp_path / "out"), str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "is one of the folders to merge" in err and "holds no results.jsonl" in err
    assert "already holds results.jsonl" in err
    # one folder twice: every cell a conflict with itself, one stderr line each, exit 0
    assert main(["merge", str(tmp_path / "twice"), str(tmp_path / "a"),
                 str(tmp_path / "a") + "/"]) == 2
    assert f"DIR '{tmp_path / 'a'}/' is given twice (as '{tmp_path / 'a'}')" in \
        capsys.readouterr().err
    assert not (tmp_path / "twice").exists()
