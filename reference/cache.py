"""The oracle's disk cache: one JSON file per problem, size, seed and version."""

from __future__ import annotations

import json
import os
from pathlib import Path

from adjointbench.reference.catalogue import get_problem
from adjointbench.reference.oracle import ORACLE_VERSION, Reference, compute_reference

DEFAULT_CACHE_DIR = ".oracle-cache"


def default_cache_dir() -> Path:
    """``$ADJOINTBENCH_CACHE_DIR``, else ``.oracle-cache`` in the working folder."""
    return Path(os.environ.get("ADJOINTBENCH_CACHE_DIR", DEFAULT_CACHE_DIR))


class Oracle:
    """Reference values, computed once and then read from the cache.

    >>> Oracle().reference("linear_solve", size=8).jvp.value.shape
    (8,)
    """

    def __init__(self, cache_dir: str | Path | None = None, use_cache: bool = True):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache
        self._memory: dict[tuple, Reference] = {}

    def path(self, problem: str, size: int, seed: int) -> Path:
        return self.cache_dir / f"oracle-v{ORACLE_VERSION}" / f"{problem}-n{size}-s{seed}.json"

    def reference(self, problem: str, size: int, seed: int = 0) -> Reference:
        key = (problem, size, seed)
        if key not in self._memory:
            self._memory[key] = self._load(*key) or self._compute(*key)
        return self._memory[key]

    def _load(self, problem: str, size: int, seed: int) -> Reference | None:
        path = self.path(problem, size, seed)
        if not (self.use_cache and path.exists()):
            return None
        try:
            return Reference.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            return None  # a damaged entry is recomputed and rewritten

    def _compute(self, problem: str, size: int, seed: int) -> Reference:
        reference = compute_reference(get_problem(problem), size, seed)
        if self.use_cache:
            path = self.path(problem, size, seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(reference.to_json()))
            os.replace(tmp, path)
        return reference
