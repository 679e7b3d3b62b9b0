"""Implementations stand on their own: nothing under impls/ imports the
catalogue or the harness, and every rule table names catalogue problems only
(a typo would otherwise turn silently into ``unsupported``)."""

import ast
from pathlib import Path

import pytest

from adjointbench.impls import naive, numpy, traceable
from adjointbench.reference import PROBLEMS

IMPLS = Path(__file__).parents[2] / "impls"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(IMPLS.rglob("*.py")), ids=lambda p: str(p.relative_to(IMPLS)))
def test_no_implementation_imports_the_reference_or_the_suites(path):
    forbidden = [m for m in _imports(path)
                 if m.split(".")[:2] in (["adjointbench", "reference"], ["adjointbench", "suites"])
                 or m.split(".")[0] in ("reference", "suites")]
    assert forbidden == []


TABLES = {
    "naive rules": naive.NaiveImplementation.rules,
    "numpy rules": numpy.NumpyImplementation.rules,
    "numpy gradients": numpy.NumpyImplementation.gradients,
    **{f"traceable {t}": getattr(traceable, t)
       for t in ("PRIMALS", "LOSSES", "RESIDUALS", "IMPLICIT", "ADJOINTS", "ADJOINT")},
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_rule_table_key_is_a_catalogue_problem(table):
    assert TABLES[table], f"{table} is empty"
    unknown = sorted(set(TABLES[table]) - set(PROBLEMS))
    assert unknown == [], f"{table} names problems the catalogue lacks: {unknown}"
