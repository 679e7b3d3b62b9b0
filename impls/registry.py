"""Finding implementations: built-ins by name, plug-ins by entry point
(group ``adjointbench.impls``) or as ``module:object``."""

from __future__ import annotations

import importlib
from functools import lru_cache
import re
from importlib.metadata import PackageNotFoundError, entry_points, version

from adjointbench.impls.protocol import Implementation
from adjointbench.names import UnknownNameError, closest, file_path_hint

ENTRY_POINT_GROUP = "adjointbench.impls"


class ProtocolError(TypeError):
    """An object that does not satisfy the implementation protocol."""


class MissingDependency(ImportError):
    """A built-in implementation whose framework is not installed."""


def _entry_points() -> dict:
    """Every registered implementation, built-ins included (this project
    declares its own in pyproject.toml), by name: a built-in's name always
    names the built-in, and a name two plug-ins declare names neither
    (:func:`name_conflicts`)."""
    return _resolved()[0]


def name_conflicts() -> dict[str, str]:
    """Per implementation name declared more than once (by different
    targets), what was declared and which one, if any, the name runs."""
    return _resolved()[1]


def _resolved() -> tuple[dict, dict[str, str]]:
    """(entry point per name, conflict per name). Which of two entry points
    of one name ``entry_points`` lists last depends on the order of
    ``sys.path``: a plug-in declaring ``numpy`` ran as numpy under
    ``python -m adjointbench`` in the checkout (the project's metadata first,
    the plug-in's last) and not under the console script, its records
    labelled numpy."""
    declared: dict[str, list] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        same = declared.setdefault(entry.name, [])
        if all(_target(e) != _target(entry) for e in same):  # one package seen twice
            same.append(entry)
    chosen, conflicts = {}, {}
    for name, entries in declared.items():
        built_in = [e for e in entries if _is_built_in(e)]  # the first, as imports go
        plug_ins = [e for e in entries if not _is_built_in(e)]
        if built_in or len(plug_ins) == 1:
            chosen[name] = (built_in or plug_ins)[0]
        if len(plug_ins) > 1 or (built_in and plug_ins):
            conflicts[name] = _conflict(name, plug_ins, bool(built_in))
    return chosen, conflicts


def _conflict(name: str, plug_ins: list, built_in: bool) -> str:
    declared = " and ".join(f"{_target(e)}{_package(e)}" for e in plug_ins)
    if built_in:
        return (f"the implementation name {name!r} is the built-in's; the plug-in entry "
                f"point {declared} that also declares it is not run under it: name it as "
                f"'{_target(plug_ins[0])}', and rename its entry point")
    return (f"the implementation name {name!r} is declared by {declared}, so it names "
            f"neither: name one as 'module:object' ('{_target(plug_ins[0])}')")


def _package(entry) -> str:
    return f" ({entry.dist.name})" if entry.dist is not None else ""


def known_names() -> list[str]:
    return list(_entry_points())


def _import_object(spec: str):
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if not (file_path_hint(module_name) and module_name.startswith(e.name or "")):
            raise  # a module the plug-in imports is missing: its own message
        raise ModuleNotFoundError(f"{e};{file_path_hint(module_name)}", name=e.name) from None
    try:
        obj = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UnknownNameError(f"module {module_name!r} has no attribute {attribute!r} "
                               f"(from {spec!r}); expected 'module:object'") from None
    return obj() if isinstance(obj, type) else obj


def validate(obj, origin: str) -> Implementation:
    """Check ``obj`` against the protocol; name everything that is missing."""
    missing = [m for m in ("devices", "supports", "prepare") if not callable(getattr(obj, m, None))]
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name.strip():
        missing.insert(0, "name (a str attribute)" if name is None else
                       f"name (a non-empty str attribute; it is {name!r})")
    if missing:
        raise ProtocolError(f"{origin} does not satisfy the implementation protocol: missing "
                            f"{', '.join(missing)}. See impls/protocol.py.")
    return obj


def known_entry(spec: str):
    """The entry point of a built-in or installed implementation's name,
    without importing it; UnknownNameError naming the valid names otherwise."""
    chosen, conflicts = _resolved()  # one look at the installed packages
    entry = chosen.get(spec)
    if entry is None and spec in conflicts:
        raise UnknownNameError(f"{conflicts[spec]}.")
    if entry is None:
        raise UnknownNameError(f"unknown implementation {spec!r}.{closest(spec, list(chosen))} "
                               "A plug-in can also be named as 'module:object'.")
    return entry


@lru_cache(maxsize=None)
def load_implementation(spec: str) -> Implementation:
    """An implementation by built-in name, entry-point name, or ``module:object``.

    >>> load_implementation("numpy").name
    'numpy'
    """
    if ":" in spec:
        return validate(_import_object(spec), repr(spec))
    entry = known_entry(spec)
    try:
        return validate(_import_object(entry.value.split()[0]), f"implementation {spec!r}")
    except ImportError as e:
        if entry.extras and e.name and e.name.split(".")[0] not in ("adjointbench",):
            extras = ",".join(entry.extras)
            dist = entry.dist.name if entry.dist else "its package"
            raise MissingDependency(f"implementation {spec!r} needs {e.name.split('.')[0]}, "
                                    f"which is not installed: pip install '{dist}[{extras}]'"
                                    ) from e
        raise


def _extras_installed(entry) -> bool:
    """Whether every requirement of the entry point's extras is installed,
    read from package metadata: nothing is imported."""
    if not entry.extras or entry.dist is None:
        return True
    for requirement in entry.dist.requires or ():
        name, _, marker = requirement.partition(";")
        if not any(f"extra == '{extra}'" in marker or f'extra == "{extra}"' in marker
                   for extra in entry.extras):
            continue
        package = re.split(r"[\s<>=!~\[;]", name.strip(), maxsplit=1)[0]
        try:
            version(package)
        except PackageNotFoundError:
            return False
    return True


def available_implementations() -> list[str]:
    """Names of the registered implementations whose extras are installed
    (checked in package metadata, so the frameworks are not imported here)."""
    return [name for name, entry in _entry_points().items() if _extras_installed(entry)]


def _target(entry) -> str:
    """An entry point's ``module:object`` (without its extras)."""
    return entry.value.split()[0]


def _is_built_in(entry) -> bool:
    """Whether an entry point is one of this package's own (into adjointbench.impls)."""
    return _target(entry).startswith("adjointbench.impls.")


def built_in_name(spec: str) -> str | None:
    """The built-in's name where ``spec`` is the ``module:object`` of a
    built-in's own entry point (``adjointbench.impls.torch:implementation``
    is torch), else None; read from the entry points, nothing imported."""
    for name, entry in _entry_points().items():
        if _target(entry) == spec and _is_built_in(entry):
            return name
    return None


def implementation_origin(name: str) -> str:
    """Where a registered implementation comes from: ``built-in``, or its
    entry point and the package that declares it."""
    entry = _entry_points()[name]
    if _is_built_in(entry):
        return "built-in"
    return f"entry point {_target(entry)}{_package(entry)}"


def built_in_implementations() -> list[str]:
    """The available implementations this package declares itself (the
    built-ins: pyproject.toml's entry points into adjointbench.impls), not
    plug-ins installed beside it."""
    built_in = {name for name, entry in _entry_points().items() if _is_built_in(entry)}
    return [name for name in available_implementations() if name in built_in]
