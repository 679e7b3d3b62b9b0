"""Results into pandas: the results table, pytest-benchmark JSON and asv results.

Every reader tolerates partial input (a truncated last line, a missing file,
columns an older version did not write) and says what it skipped.
"""

from __future__ import annotations

import ast
import itertools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from adjointbench.suites.comparison import Comparison, NoRecords, compare_folders
from adjointbench.suites.environment import machine_was_loaded
from adjointbench.suites.results import Record, ResultsFile, without_duplicates

SAMPLES = ("samples_s", "primal_samples_s", "reference_samples_s",  # per-sample lists:
           "samples_per_round")  # compare's, not the tables'
COLUMNS = [f.name for f in fields(Record) if f.name not in SAMPLES]
NUMERIC = ("max_abs_err", "max_rel_err", "tol", "condition", "oracle_err", "seconds",
           "time_median_s", "time_iqr_s", "primal_median_s", "ratio_to_primal", "ratio_q1",
           "ratio_q3", "compile_s")


@dataclass
class Loaded:
    """What a report is made of, and what could not be read."""

    results: pd.DataFrame
    environment: dict = field(default_factory=dict)
    benchmarks: pd.DataFrame = field(default_factory=pd.DataFrame)
    asv: pd.DataFrame = field(default_factory=pd.DataFrame)
    warnings: list[str] = field(default_factory=list)
    comparison: Comparison | None = None  # against an older results folder


def _numeric(frame: pd.DataFrame) -> pd.DataFrame:
    for column in NUMERIC:
        if column in frame:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")  # "inf" -> inf
    return frame


def read_results(folder: Path) -> tuple[pd.DataFrame, list[str]]:
    """``folder/results.jsonl`` as one row per cell (an empty table if absent)."""
    warnings = []
    path = Path(folder) / "results.jsonl"
    if not path.exists():
        warnings.append(f"{path} does not exist: no cells to report")
        return pd.DataFrame(columns=COLUMNS), warnings
    records, damaged = ResultsFile(folder).read()
    records, duplicates = without_duplicates(records)
    if damaged:
        warnings.append(f"skipped {damaged} damaged line(s) of {path}: cut short, not a JSON "
                        "object of a record, or not UTF-8")
    if duplicates:
        warnings.append(f"dropped {duplicates} duplicate record(s) of cells already in {path} "
                        "(two runs appended to one folder); each cell is counted once")
    frame = pd.DataFrame([r.to_json() for r in records], columns=COLUMNS)
    return _numeric(frame), warnings


def read_environment(folder: Path) -> tuple[dict, list[str]]:
    path = Path(folder) / "environment.json"
    try:
        return json.loads(path.read_text(encoding="utf-8")), []
    except FileNotFoundError:
        return {}, [f"{path} does not exist: the environment is unknown"]
    except json.JSONDecodeError as e:
        return {}, [f"{path} is not valid JSON ({e}); environment left out"]


def read_pytest_benchmark(path: Path) -> pd.DataFrame:
    """pytest-benchmark's ``--benchmark-json`` output, one row per benchmark."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = []
    for bench in data.get("benchmarks", []):
        info, stats = bench.get("extra_info", {}), bench.get("stats", {})
        rows.append({**{k: info.get(k) for k in ("problem", "impl", "op", "size", "dtype",
                                                 "device", "ratio_to_primal", "ratio_q1",
                                                 "ratio_q3", "timing_warning", "compile_s",
                                                 "primal_median_s", "threads", "cores",
                                                 "least_cores")},
                     "group": bench.get("group"), "name": bench.get("name"),
                     "time_median_s": stats.get("median"), "time_iqr_s": stats.get("iqr"),
                     "rounds": stats.get("rounds")})
    return _numeric(pd.DataFrame(rows))


def _param(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def read_asv(results_dir: Path) -> pd.DataFrame:
    """asv's result files (``.asv/results/<machine>/<commit>-<env>.json``),
    one row per benchmark and parameter combination."""
    rows = []
    for path in sorted(Path(results_dir).glob("*/*.json")):
        if path.name == "machine.json":
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        columns = data.get("result_columns", [])
        for name, entry in data.get("results", {}).items():
            named = dict(zip(columns, entry))
            combos = itertools.product(*named.get("params") or [[]])
            for combo, value in zip(combos, named.get("result") or []):
                rows.append({"benchmark": name, "machine": path.parent.name,
                             "commit": data.get("commit_hash", "")[:8],
                             "params": ", ".join(str(_param(c)) for c in combo),
                             "value": value})
    frame = pd.DataFrame(rows, columns=["benchmark", "machine", "commit", "params", "value"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    return frame


def _timing_notes(frame: pd.DataFrame, environment: dict) -> list[str]:
    """Warnings about the timings as a whole: a busy machine, flagged cells."""
    notes = [busy] if (busy := machine_was_loaded(environment)) else []
    flagged = int(frame["timing_warning"].notna().sum()) if "timing_warning" in frame else 0
    if flagged:
        notes.append(f"{flagged} timed cell(s) have timings not to be believed as they stand: "
                     "see Timing warnings")
    return notes


def _not_loaded_notes(environment: dict) -> list[str]:
    """The installed implementations the last run left out (they would not
    load): absent from every table and figure, so said at the top."""
    left_out = environment.get("not_loaded")
    return [f"{reason}: left out of these results" for reason in left_out.values()
            if isinstance(reason, str)] if isinstance(left_out, dict) else []


def load(results: Path, benchmark_json: Path | None = None, asv_dir: Path | None = None,
         against: Path | None = None) -> Loaded:
    frame, warnings = read_results(results)
    environment, more = read_environment(results)
    frame["machine"] = frame["machine"].fillna(environment.get("machine") or "this machine")
    loaded = Loaded(frame, environment, warnings=warnings + more + _not_loaded_notes(environment)
                    + _timing_notes(frame, environment))
    if benchmark_json is not None:
        loaded.benchmarks = read_pytest_benchmark(benchmark_json)
    if asv_dir is not None:
        loaded.asv = read_asv(asv_dir)
    if against is not None:
        try:
            loaded.comparison = compare_folders(against, results)
        except NoRecords as e:  # the report still shows what there is
            loaded.warnings.append(f"no comparison with {str(against)!r}: {e}")
    return loaded
