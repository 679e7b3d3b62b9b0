"""The catalogue: every problem, declared once, found by name.

Built-in problems live in this package: each module that defines
``PROBLEMS`` is a family, and adding a family file is all it takes to add its
problems. Third-party problems (declared with
:func:`adjointbench.declare_problem`) join by entry point (group
``adjointbench.problems``) or by ``module:object``, exactly as implementations
do; a problem named by ``module:object`` is remembered in
``$ADJOINTBENCH_PROBLEMS`` so that worker processes started afterwards find it
too.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pkgutil
import warnings
from functools import cache
from importlib.metadata import entry_points

from adjointbench import reference
from adjointbench.faults import described
from adjointbench.names import UnknownNameError, closest, file_path_hint  # noqa: F401 (re-exported)
from adjointbench.reference.declare import DeclarationError, check_declaration
from adjointbench.reference.problem import Problem

ENTRY_POINT_GROUP = "adjointbench.problems"
PROBLEMS_ENV = "ADJOINTBENCH_PROBLEMS"  # module:object specs, comma-separated


def _families() -> list:
    modules = [importlib.import_module(f"{reference.__name__}.{m.name}")
               for m in pkgutil.iter_modules(reference.__path__)]
    return [m for m in modules if "PROBLEMS" in vars(m)]


@cache
def built_in() -> dict[str, Problem]:
    """The built-in problems by name, imported on first use (their closed
    forms import sympy, which a check of your own function may not need)."""
    return {p.name: p for family in _families() for p in family.PROBLEMS}


def __getattr__(name: str):
    if name == "PROBLEMS":  # the built-in catalogue, loaded when first asked for
        return built_in()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_EXTERNAL: dict[str, Problem] = {}  # loaded from entry points and module:object specs
_ORIGINS: dict[str, str] = {}


def _import_object(spec: str):
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise DeclarationError(f"problem {spec!r}: expected 'module:object'")
    try:
        obj = importlib.import_module(module_name)
    except ImportError as e:
        raise DeclarationError(f"problem {spec!r}: cannot import module {module_name!r} ({e})."
                               + (file_path_hint(module_name) or " Install its package or put "
                                  "it on PYTHONPATH.")) from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise DeclarationError(f"problem {spec!r}: module {module_name!r} has no attribute "
                                   f"{attribute!r}; expected 'module:object'")
        obj = getattr(obj, part)
    return obj


def register(problem: Problem, origin: str) -> Problem:
    """Add a checked third-party problem; its name may not shadow another's."""
    check_declaration(problem, origin)
    known = built_in().get(problem.name) or _EXTERNAL.get(problem.name)
    if known is not None and known is not problem:
        where = _ORIGINS.get(problem.name, "the built-in catalogue")
        raise DeclarationError(f"{origin} declares problem {problem.name!r}, a name "
                               f"{where} already uses; give it another name")
    _EXTERNAL[problem.name] = problem
    _ORIGINS[problem.name] = origin
    return problem


def load_problem(spec: str) -> Problem:
    """The problem named by ``module:object``, checked and registered; the
    spec is remembered for worker processes."""
    problem = register(_import_object(spec), repr(spec))
    specs = [s for s in os.environ.get(PROBLEMS_ENV, "").split(",") if s]
    if spec not in specs:
        os.environ[PROBLEMS_ENV] = ",".join([*specs, spec])
    return problem


def _entry_point(name: str) -> Problem | None:
    entry = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}.get(name)
    if entry is None:
        return None
    origin = f"entry point {name!r} ({entry.value})"
    try:
        problem = entry.load()
    except Exception as e:  # noqa: BLE001 - a broken plug-in, reported as bad input
        raise DeclarationError(f"{origin} does not load: {described(e)}") from None
    if isinstance(problem, Problem) and problem.name != name:
        raise DeclarationError(f"{origin} declares a problem named {problem.name!r}; "
                               "the entry point's name must be the problem's name")
    return register(problem, origin)


def _from_environment(name: str) -> Problem | None:
    for spec in filter(None, os.environ.get(PROBLEMS_ENV, "").split(",")):
        problem = load_problem(spec)
        if problem.name == name:
            return problem
    return None


def get_problem(name: str) -> Problem:
    """A problem by name (built-in, loaded, or an entry point's), or by ``module:object``."""
    if ":" in name:
        return load_problem(name)
    found = (_EXTERNAL.get(name) or built_in().get(name) or _entry_point(name)
             or _from_environment(name))
    if found is None:
        names = list(dict.fromkeys([*built_in(), *_EXTERNAL,
                                    *(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))]))
        raise UnknownNameError(f"unknown problem {name!r}.{closest(name, names)} A third-party "
                               "problem can also be named as 'module:object'.")
    return found


def _plug_in_problems() -> list[Problem]:
    """Every entry point's problem; one that does not load is skipped, with a warning."""
    loaded = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded.append(get_problem(entry.name))
        except DeclarationError as e:
            warnings.warn(f"skipping a third-party problem: {e}", stacklevel=3)
    return loaded


def problems(kind: str | None = "primitive") -> list[Problem]:
    """The problems of one kind (``"primitive"``, ``"sensitivity"``), or all for
    None: the built-ins, then installed plug-ins' and those loaded by name."""
    every = {**built_in(), **{p.name: p for p in _plug_in_problems()}, **_EXTERNAL}
    return [p for p in every.values() if kind is None or p.kind == kind]


@contextlib.contextmanager
def temporarily(problem: Problem):
    """``problem`` registered for the duration (the testing API's own, whose
    unique names need no check against the catalogue)."""
    _EXTERNAL[problem.name] = problem
    try:
        yield problem
    finally:
        _EXTERNAL.pop(problem.name, None)


def origin(name: str) -> str:
    """Where a problem comes from: ``built-in``, or its entry point or spec."""
    return _ORIGINS.get(name, "built-in")
