"""Family discovery: the modules of a package that define a given table.

Each implementation family (naive, numpy, traceable) keeps one module per
catalogue family; adding a module is all it takes to add its rules, with no
hand-kept list of families to update.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def family_modules(package: ModuleType, table: str) -> list[ModuleType]:
    """The modules of ``package`` (not its subpackages) that define ``table``."""
    modules = [importlib.import_module(f"{package.__name__}.{m.name}")
               for m in pkgutil.iter_modules(package.__path__) if not m.ispkg]
    return [m for m in modules if hasattr(m, table)]


def merged(package: ModuleType, table: str) -> dict:
    """The union of ``table`` over the package's family modules."""
    return {name: value for module in family_modules(package, table)
            for name, value in getattr(module, table).items()}
