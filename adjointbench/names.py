"""Unknown names, and the closest valid ones: shared by the catalogue, the
registry and the command line."""

from __future__ import annotations

import difflib


class UnknownNameError(LookupError):
    """An unknown problem, implementation, operation or dtype name."""


def closest(name: str, valid) -> str:
    """`` Did you mean 'a'? Valid names: a, b.`` for an error message."""
    valid = list(valid)
    near = difflib.get_close_matches(name, valid, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(n) for n in near)}?" if near else ""
    return f"{hint} Valid names: {', '.join(valid)}."
