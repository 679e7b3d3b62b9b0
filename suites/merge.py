"""``adjointbench merge OUT DIR...``: the results of several machines in one folder.

Each record keeps the machine that ran it (its own ``machine``, else its
folder's environment.json ``machine``); each folder's environment is kept
under ``machines`` in OUT/environment.json. A cell found in two folders is
kept once, from the first folder given, and the conflict is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from adjointbench.suites.comparison import cell_label
from adjointbench.suites.environment import read_environment
from adjointbench.suites.results import Record, ResultsFile, record_key, without_duplicates


@dataclass
class Merged:
    records: list[Record] = field(default_factory=list)
    machines: dict[str, dict] = field(default_factory=dict)  # name -> its environment
    conflicts: list[str] = field(default_factory=list)  # one line per cell found twice
    damaged: int = 0


def _machine_name(folder: Path, environment: dict, taken: dict) -> str:
    """The folder's machine, made unique: two folders from one machine with
    different environments (two commits, two setups) stay apart."""
    name = str(environment.get("machine") or folder.resolve().name)
    if name in taken and taken[name] != environment:
        name = f"{name} ({folder.name})"
    return name


def merge_folders(folders: list[Path]) -> Merged:
    """Every record of ``folders``, each cell once, with its machine."""
    merged, seen = Merged(), {}
    for folder in folders:
        environment = read_environment(folder)
        name = _machine_name(folder, environment, merged.machines)
        if environment.get("machines"):  # a merged folder: its machines as they were
            merged.machines.update(environment["machines"])
        else:
            merged.machines[name] = environment
        records, damaged = ResultsFile(folder).read()
        merged.damaged += damaged
        for record in without_duplicates(records)[0]:
            record = replace(record, machine=record.machine or name)
            key = record_key(record)
            if key in seen:
                kept = seen[key]
                differ = ("" if kept.outcome == record.outcome
                          else f"; outcomes differ: {kept.outcome} there, {record.outcome} here")
                merged.conflicts.append(f"{cell_label(record)}: in {folder} ({record.machine}) "
                                        f"and already from {kept.machine}; kept the first"
                                        f"{differ}")
                continue
            seen[key] = record
            merged.records.append(record)
    return merged


def write_merged(out: Path, merged: Merged, folders: list[Path],
                 results: ResultsFile | None = None) -> None:
    """OUT/results.jsonl (through ``results``, the locked file, if given) and
    OUT/environment.json (its machines, the folders merged and the
    conflicts); the first machine's description stays at the top level,
    where a single run's is."""
    results = results or ResultsFile(out)
    results.rewrite(merged.records)
    first = next(iter(merged.machines.values()), {})
    environment = {**first, "machine": " + ".join(merged.machines), "machines": merged.machines,
                   "merged_from": [str(f) for f in folders], "merge_conflicts": merged.conflicts}
    (out / "environment.json").write_text(json.dumps(environment, indent=2) + "\n",
                                          encoding="utf-8")


__all__ = ["Merged", "merge_folders", "write_merged"]
