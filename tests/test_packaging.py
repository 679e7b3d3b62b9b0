"""What pip installs: one import package, adjointbench, with its data files
and without the test modules; and user modules with generic names beside it
do not shadow any of its parts."""

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from adjointbench.suites.results import Record, ResultsFile

ROOT = Path(__file__).parents[1]


def _run(argv, cwd, **env):
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                  "--no-index", "-w", str(out), str(ROOT)], cwd=out)
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("adjointbench-*.whl")
    return path


def test_wheel_has_one_top_level_package_and_its_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if ".dist-info/" not in n}
    assert top == {"adjointbench"}
    assert "adjointbench/impls/expected/numpy.json" in names
    assert "adjointbench/reference/oracle.py" in names
    shipped_tests = [n for n in names if Path(n).name.startswith("test_") or
                     Path(n).name == "conftest.py"]
    assert shipped_tests == []


def test_wheel_installed_in_a_fresh_venv_runs_a_check(wheel, tmp_path):
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path).returncode == 0
    python = venv / "bin" / "python"
    installed = _run([sys.executable, "-m", "pip", "--python", str(python), "install",
                      "--no-deps", "--no-index", str(wheel)], tmp_path)
    assert installed.returncode == 0, installed.stderr
    # the dependencies come from the test environment's site-packages (a plain
    # path entry: its .pth files, the editable install's finder among them,
    # are not processed), so nothing is downloaded
    site = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp_path).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")

    where = _run([str(python), "-c", "import adjointbench.reference, adjointbench.suites.expected "
                  "as e; print(adjointbench.reference.__file__); "
                  "print(e.load_manifest('numpy') is not None)"], tmp_path)
    assert where.returncode == 0, where.stderr
    location, manifest = where.stdout.split()
    assert Path(location).is_relative_to(site)
    assert manifest == "True"  # the manifest check is active in the installed package

    check = _run([str(venv / "bin" / "adjointbench"), "check", "--impl", "numpy", "--problem",
                  "softmax", "--quick", "--out", "out", "--quiet"], tmp_path,
                 ADJOINTBENCH_CACHE_DIR=str(tmp_path / "cache"))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "cells:" in check.stdout and "mismatch" not in check.stdout


def test_user_modules_named_like_the_layout_do_not_shadow_it(tmp_path):
    for name in ("reference", "impls", "suites"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('the user\\'s own')\n")
    (tmp_path / "reports.py").write_text("raise ImportError('the user\\'s own')\n")
    imported = _run([sys.executable, "-c", "import adjointbench; from adjointbench.reports "
                     "import render"], tmp_path)
    assert imported.returncode == 0, imported.stderr
    listed = _run([sys.executable, "-m", "adjointbench", "list"], tmp_path)
    assert listed.returncode == 0 and "softmax" in listed.stdout, listed.stderr
    (tmp_path / "results").mkdir()
    ResultsFile(tmp_path / "results").append(
        Record("matmul", "numpy", "vjp", "float64", "cpu", 8, 0, "ok", max_rel_err=1e-16))
    report = _run([sys.executable, "-m", "adjointbench", "report", "--results", "results"],
                  tmp_path)
    assert report.returncode == 0, report.stderr
