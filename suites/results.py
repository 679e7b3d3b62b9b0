"""The result record, one per cell, and its JSON Lines file."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

OUTCOMES = ("ok", "mismatch", "unsupported", "error", "timeout", "crashed", "ill_conditioned")
FAILURES = ("mismatch", "error", "timeout", "crashed")


@dataclass
class Record:
    problem: str
    impl: str
    op: str
    dtype: str
    device: str
    size: int
    seed: int
    outcome: str
    max_abs_err: float | None = None
    max_rel_err: float | None = None
    tol: float | None = None
    condition: float | None = None
    oracle_err: float | None = None
    message: str = ""
    seconds: float = 0.0
    # sensitivity cells (op "gradient"): the method, its gradient, the oracle's
    # (its projections <grad, v_k> at sizes without a full reference) and the
    # median time of one gradient
    method: str | None = None
    value: list | None = None
    reference: list | None = None
    time_s: float | None = None

    def to_json(self) -> dict:
        data = asdict(self)
        for key in ("max_abs_err", "max_rel_err", "tol", "condition", "oracle_err", "time_s"):
            if data[key] is not None and not _finite(data[key]):
                data[key] = str(data[key])  # JSON has no inf/nan
        for key in ("value", "reference"):
            if data[key] is not None:
                data[key] = [x if _finite(x) else str(x) for x in data[key]]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Record":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


class ResultsFile:
    """Appends records to ``DIR/results.jsonl``, flushed and synced one by one."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / "results.jsonl"

    def append(self, record: Record) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[Record]:
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                records.append(Record.from_json(json.loads(line)))
        return records
