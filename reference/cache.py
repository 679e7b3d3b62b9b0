"""The oracle's disk cache: one JSON file per reference, checked on read.

Each entry stores its key: the oracle version, a hash of the problem's
definition (its declaration and the source of its family file), a hash of the
inputs it was computed at, the size, seed and point, and a checksum of the
reference itself. On read the whole key must match and the checksum must
hold; a damaged, mismatched or edited entry is discarded with a warning and
recomputed. Only the trusted side (the process that compares) writes here.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from adjointbench.faults import HarnessFault
from adjointbench.reference.catalogue import get_problem
from adjointbench.reference.oracle import ORACLE_VERSION, Reference, compute_reference
from adjointbench.reference.problem import Problem, make_inputs
from adjointbench.reference.second_order import SecondOrder, compute_second_order

DEFAULT_CACHE_DIR = ".oracle-cache"


def default_cache_dir() -> Path:
    """``$ADJOINTBENCH_CACHE_DIR``, else ``.oracle-cache`` in the working folder."""
    return Path(os.environ.get("ADJOINTBENCH_CACHE_DIR", DEFAULT_CACHE_DIR))


def _sha(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


_DEFINITIONS: dict[int, str] = {}


def definition_hash(problem: Problem) -> str:
    """A hash of what defines the problem: its declared fields and the source
    of the module that declares it (generator, primal and closed form)."""
    if id(problem) not in _DEFINITIONS:
        _DEFINITIONS[id(problem)] = _definition_hash(problem)
    return _DEFINITIONS[id(problem)]


NOT_DEFINING = ("second_order",)  # planning flags: no reference depends on them


def _definition_hash(problem: Problem) -> str:
    fields = {k: v for k, v in vars(problem).items()
              if not callable(v) and k not in NOT_DEFINING}
    sources = sorted({_module_source(f) for f in vars(problem).values() if callable(f)})
    return _sha(json.dumps(fields, sort_keys=True, default=str) + "".join(sources))


def _module_source(function) -> str:
    """The source of the module defining ``function`` (unwrapped), else its repr."""
    function = inspect.unwrap(function)
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    try:
        return inspect.getsource(module) if module else repr(function)
    except (OSError, TypeError):
        return repr(function)


def inputs_hash(inputs: dict) -> str:
    digest = hashlib.sha256()
    for name in sorted(inputs):
        array = np.ascontiguousarray(inputs[name], dtype=np.float64)
        digest.update(f"{name}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def cache_key(problem: Problem, size: int, seed: int, point: int = 0) -> dict:
    return {"oracle_version": ORACLE_VERSION, "problem": problem.name,
            "definition": definition_hash(problem),
            "inputs": inputs_hash(make_inputs(problem, size, seed, point)),
            "size": size, "seed": seed, "point": point}


def _checksum(reference: dict) -> str:
    return _sha(json.dumps(reference, sort_keys=True))


# kind -> (decode, compute) of a cache entry
KINDS = {"first": (Reference.from_json, compute_reference),
         "second": (SecondOrder.from_json, compute_second_order)}


class Oracle:
    """Reference values, computed once and then read from the cache.

    >>> Oracle().reference("linear_solve", size=8).jvp.value.shape
    (8,)
    """

    def __init__(self, cache_dir: str | Path | None = None, use_cache: bool = True):
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.use_cache = use_cache
        self._memory: dict[tuple, Reference] = {}

    def path(self, problem: str, size: int, seed: int, point: int = 0,
             kind: str = "first") -> Path:
        suffix = "" if kind == "first" else f"-{kind}"
        return (self.cache_dir / f"oracle-v{ORACLE_VERSION}"
                / f"{problem}-n{size}-s{seed}-p{point}{suffix}.json")

    def reference(self, problem: str, size: int, seed: int = 0, point: int = 0) -> Reference:
        """Values and first derivatives (reference/oracle.py)."""
        return self._get("first", problem, size, seed, point)

    def second_order(self, problem: str, size: int, seed: int = 0,
                     point: int = 0) -> SecondOrder:
        """Second derivatives of <w, f> along the cell's probes (reference/second_order.py)."""
        return self._get("second", problem, size, seed, point)

    def _get(self, kind: str, problem: str, size: int, seed: int, point: int):
        key = (kind, problem, size, seed, point)
        if key not in self._memory:
            expected = {**cache_key(get_problem(problem), size, seed, point),
                        **({} if kind == "first" else {"kind": kind})}
            self._memory[key] = self._load(kind, expected) or self._compute(kind, expected)
        return self._memory[key]

    def _load(self, kind: str, key: dict):
        path = self.path(key["problem"], key["size"], key["seed"], key["point"], kind)
        if not (self.use_cache and path.exists()):
            return None
        try:
            entry = json.loads(path.read_text())
            if entry["key"] != key:
                raise ValueError("its key does not match this problem, size, seed, point, "
                                 "inputs and oracle version")
            if entry["checksum"] != _checksum(entry["reference"]):
                raise ValueError("its checksum does not match its contents")
            return KINDS[kind][0](entry["reference"])
        except (ValueError, KeyError, TypeError, OSError) as e:  # UnicodeDecodeError too
            warnings.warn(f"discarding the oracle cache entry {path}: {e}; recomputing it",
                          stacklevel=2)
            return None

    def _compute(self, kind: str, key: dict):
        reference = KINDS[kind][1](get_problem(key["problem"]), key["size"], key["seed"],
                                   point=key["point"])
        if self.use_cache:
            self._store(kind, key, reference)
        return reference

    def _store(self, kind: str, key: dict, reference) -> None:
        path = self.path(key["problem"], key["size"], key["seed"], key["point"], kind)
        data = reference.to_json()
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"key": key, "checksum": _checksum(data), "reference": data}))
            os.replace(tmp, path)
        except OSError as e:
            raise HarnessFault(
                f"cannot write the oracle cache {path.parent}: {e.strerror or e}. Make it "
                "writable or set ADJOINTBENCH_CACHE_DIR to a writable folder") from None
