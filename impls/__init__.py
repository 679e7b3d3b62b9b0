"""Implementations behind one protocol, and the registry that finds them."""

from adjointbench.impls.protocol import DEVICES, DTYPES, OPERATIONS, Implementation, Prepared, Task
from adjointbench.impls.registry import (ENTRY_POINT_GROUP, MissingDependency, ProtocolError,
                            available_implementations, load_implementation)

__all__ = ["DEVICES", "DTYPES", "ENTRY_POINT_GROUP", "OPERATIONS", "Implementation",
           "MissingDependency", "Prepared", "ProtocolError", "Task",
           "available_implementations", "load_implementation"]
