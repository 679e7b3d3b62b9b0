"""The commands of the ``adjointbench`` command line (adjointbench/cli.py
has the usage)."""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import signal
import sys
import time
import warnings
from pathlib import Path

from adjointbench.impls.protocol import (DEVICES, DTYPES, SECOND_ORDER_METHODS,
                                         SENSITIVITY_HVP_METHODS)
from adjointbench.impls.registry import (MissingDependency, ProtocolError, available_implementations,
                                         implementation_origin, known_entry, known_names,
                                         load_implementation, name_conflicts)
from adjointbench.reference import DeclarationError, Oracle, UnknownNameError, problems
from adjointbench.reference.catalogue import origin
from adjointbench.suites.cells import ALL_OPS, DEFAULT_BENCH_OPS, DEFAULT_POINTS, plan_cells
from adjointbench.suites.environment import cpu_mark, finish_environment, write_environment
from adjointbench.suites.expected import ManifestError, expected_outcome, load_manifest, surprises
from adjointbench.suites.executors import LocalExecutor, stops_told_as_errors
from adjointbench.suites.isolation import DEFAULT_TIMEOUT_S, IsolatedRunner, use_compilation_cache
from adjointbench import faults
from adjointbench.faults import HarnessFault
from adjointbench.suites.results import (FAILURES, OUTCOMES, RETRIED, ResultsFile, record_key,
                                         without_duplicates)
from adjointbench.suites.sweep import run_sweep, time_in_rounds
from adjointbench.suites.threads import (DEFAULT_THREADS, limit_threads, pools_sized_to,
                                         thread_environment)
from adjointbench.suites.timing import BENCH_ROUNDS, DEFAULT_BUDGET_S
from adjointbench.suites.tolerance import METHODS

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input on the command line: reported with exit status 2."""


def _name_list(text: str) -> list[str]:
    """An argparse type: comma-separated names, at least one."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing: give one or more names "
                                         "separated by commas, or leave the option out for all")
    return names


def _size_list(text: str) -> list[int]:
    """An argparse type: comma-separated positive whole numbers."""
    try:
        sizes = [int(n) for n in _name_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"takes whole numbers separated by commas, got {text!r}") from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError(f"sizes must be at least 1, got {text!r}")
    return sizes


DASK_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")
_ADDRESS = re.compile(r"(?:(?P<scheme>[A-Za-z]+)://)?(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/:\[\]]+)"
                      r":(?P<port>\d{1,5})/?")


def _scheduler_address(text: str) -> str:
    """An argparse type: a Dask scheduler's address, [SCHEME://]HOST:PORT
    (SCHEME one of Dask's network protocols, tcp if left out)."""
    match = _ADDRESS.fullmatch(text.strip())
    if (not match or (match["scheme"] or "tcp").lower() not in DASK_SCHEMES
            or not 0 < int(match["port"]) < 65536):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a scheduler address: give tcp://HOST:PORT as `dask scheduler` "
            f"prints it (such as tcp://10.0.0.5:8786; other protocols: {', '.join(DASK_SCHEMES)})")
    return text.strip()


def _number_in(low: float, high: float, kind=float, what: str = "a number"):
    """An argparse type: a finite ``kind`` with low < x <= high (low <= x for ints)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        inside = (low <= value <= high) if kind is int else (low < value <= high)
        if not inside or value != value:
            bound = f"from {low} up to {high}" if kind is int else f"above {low:g} up to {high:g}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: give {what} {bound}")
        return value
    return parse


SECONDS = _number_in(0.0, 7 * 86400.0, what="a number of seconds")
BUDGET = _number_in(0.0, 3600.0, what="a number of seconds")
THREADS = _number_in(1, 1024, int, "a whole number of threads")
WORKERS = _number_in(1, 256, int, "a whole number of workers")
SEED = _number_in(0, 2**32 - 1, int, "a whole-number seed")
POINTS = _number_in(1, 1000, int, "a whole number of input points")
ROUNDS = _number_in(1, 64, int, "a whole number of rounds")
RUN_BUDGET_S = 0.05  # the main job's quick bench: seconds of samples per operation


def _catalogue() -> dict:
    available = set(available_implementations())
    return {
        "problems": [{"name": p.name, "family": p.family, "sizes": list(p.sizes),
                      "inputs": list(p.inputs), "differentiable": list(p.differentiable),
                      "kind": p.kind, "description": p.description, "origin": origin(p.name)}
                     for p in problems(None)],
        "implementations": [{"name": n, "available": n in available,
                             "origin": implementation_origin(n)} for n in known_names()],
        "name_conflicts": name_conflicts(),
        "operations": list(ALL_OPS),
        "dtypes": list(DTYPES),
        "devices": list(DEVICES),
    }


def cmd_list(args) -> int:
    data = _catalogue()
    if args.json:
        print(json.dumps(data, indent=2))
        return EXIT_OK
    for kind, title in (("primitive", "problems (primitives):"),
                        ("sensitivity", "problems (adjoint sensitivity, operation gradient):")):
        print(title)
        for p in (p for p in data["problems"] if p["kind"] == kind):
            sizes = ",".join(map(str, p["sizes"]))
            where = "" if p["origin"] == "built-in" else f" [{p['origin']}]"
            print(f"  {p['name']:<29} {p['family']:<13} sizes {sizes:<18} {p['description']}{where}")
    print("implementations:")
    for i in data["implementations"]:
        where = "" if i["origin"] == "built-in" else f" [{i['origin']}]"
        print(f"  {i['name']:<16} {'available' if i['available'] else 'not installed'}{where}")
    for conflict in data["name_conflicts"].values():
        print(f"  warning: {conflict}")
    print(f"operations: {', '.join(data['operations'])}")
    print(f"dtypes: {', '.join(data['dtypes'])}")
    return EXIT_OK


def _writable_folder(path: str) -> Path:
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".adjointbench-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UsageError(f"cannot write to the output folder {str(folder)!r}: {e.strerror}. "
                         "Choose another folder with --out.") from None
    return folder


def _implementations(asked: list[str] | None) -> list[str]:
    """The implementations asked for, else every installed one. They are
    loaded later, each in its own worker (or here with --in-process)."""
    return asked or available_implementations()


def _describe_all(names: list[str], describe, start=lambda names: None,
                  named: bool = True) -> tuple[dict[str, dict], dict[str, str]]:
    """Each implementation's name, devices and expected outcomes, loaded where
    it will run (``start(names)`` loads them all at once first), and why each
    that did not load, or declares expected outcomes that are not rules,
    failed. One the user ``named`` (--impl) that will not load is bad input
    (exit 2); one taken as installed is left out, said at once, and the run
    goes on with the others."""
    for conflict in name_conflicts().values():
        print(f"adjointbench: warning: {conflict}", file=sys.stderr)
    try:
        for name in names:
            if ":" not in name:
                known_entry(name)  # a misspelt name is told here, before any worker starts
    except UnknownNameError as e:
        raise UsageError(str(e)) from None
    start(names)
    descriptions, not_loaded = {}, {}
    for name in names:
        try:
            with stops_told_as_errors():  # a plug-in loaded here (--in-process)
                descriptions[name] = describe(name)
            load_manifest(name, descriptions[name]["expected_outcomes"])  # before any cell runs
        except HarnessFault:
            raise
        except Exception as e:  # noqa: BLE001 - what the plug-in raised, reported
            descriptions.pop(name, None)
            not_loaded[name] = _why_not_loaded(name, e)
            if named:
                raise UsageError(f"{not_loaded[name]}.") from None
            print(f"adjointbench: warning: {not_loaded[name]}; left out of this run (it is "
                  f"the {implementation_origin(name)}: fix or uninstall that package, or name "
                  "the implementations to run with --impl)", file=sys.stderr)
    return descriptions, not_loaded


def _why_not_loaded(name: str, error: Exception) -> str:
    """What loading ``name`` raised, and where to look (no final period)."""
    if isinstance(error, (UnknownNameError, ProtocolError, MissingDependency, ManifestError)):
        return faults.said(error).rstrip(".")
    where = "the 'module:object' name and that its package is installed" if ":" in name \
        else "that its package is installed and imports"
    return f"implementation {name!r} cannot be loaded: {faults.said(error).rstrip('.')}. Check {where}"


def _unfinished(cells: list, results: ResultsFile, retry: bool) -> tuple[list, list]:
    """The planned cells still to run, and the records of those already run
    (counted in the exit status). With ``retry``, cells recorded as timeout,
    crashed or error are run again: their records are removed first, in one
    atomic rewrite, as are those of cells checked at fewer input points than
    they ask now. Damaged lines and duplicate records are dropped."""
    records, damaged = results.read()
    records, duplicates = without_duplicates(records)
    fewer = _fewer_points(records, cells)
    retried = [r for r in records if retry and r.outcome in RETRIED]
    records = [r for r in records
               if not (retry and r.outcome in RETRIED) and id(r) not in fewer]
    if damaged or duplicates or retried or fewer:
        results.rewrite(records)
    if fewer:
        print(f"{len(fewer)} cell(s) were checked at fewer input points than --points asks: "
              "run again", file=sys.stderr)
    for count, what in ((damaged, "damaged line(s) (a truncated write)"),
                        (duplicates, "duplicate record(s) of the same cell")):
        if count:
            print(f"dropped {count} {what} from {results.path}", file=sys.stderr)
    done = {record_key(r): r for r in records}
    planned = {record_key(c) for c in cells}
    remaining = [c for c in cells if record_key(c) not in done]
    earlier = [r for key, r in done.items() if key in planned]
    retry_note = f", {len(retried)} failed to run again" if retry else ""
    print(f"resuming: {len(cells) - len(remaining)} of {len(cells)} cells already "
          f"finished{retry_note}", file=sys.stderr)
    return remaining, earlier


def _fewer_points(records: list, cells: list) -> set[int]:
    """The ids of the check records made at fewer input points than their
    planned cells ask (--resume --points 3 after --points 1): not finished.
    A record of no recorded count (an older version's) is taken as finished."""
    asked = {record_key(c): c.points for c in cells if c.suite == "check"}
    return {id(r) for r in records
            if r.points is not None and r.points < asked.get(record_key(r), 0)}


def _on_present_devices(cells: list, descriptions: dict) -> list:
    """The cells whose device their implementation has here; the others are
    skipped, said on screen with the reason (a GPU cell on a machine without
    one is no failure). Bad input, exit 2, when nothing is left to run."""
    has = lambda c: c.device in descriptions[c.impl]["devices"]
    present = [c for c in cells if has(c)]
    skipped = collections.Counter((c.impl, c.device) for c in cells if not has(c))
    for (impl, device), count in sorted(skipped.items()):
        seen = ", ".join(descriptions[impl]["devices"]) or "none"
        print(f"skipping {count} {device} cell(s) of {impl}: it sees no {device} device here "
              f"(devices: {seen})", file=sys.stderr)
    if cells and not present:
        raise UsageError("no implementation has the device(s) asked for on this machine; "
                         "run where one is, or choose --device cpu")
    return present


def _results_file(args, suite: str) -> ResultsFile | None:
    """The results file to append to; refuses to mix into a finished sweep of
    the same suite unless --resume (check and bench share one table)."""
    results = ResultsFile(_writable_folder(args.out)) if args.out else None
    if (args.resume or args.retry) and not results:
        raise UsageError("--resume and --retry need --out, the folder whose results.jsonl "
                         "to continue")
    if results:
        results.lock()  # held until this process ends: one run per folder
    if results and not (args.resume or args.retry) and any(
            r.suite == suite for r in results.read()[0]):
        raise UsageError(f"{results.path} already holds {suite} results: pass --resume to "
                         "continue that sweep, or choose another --out")
    return results


def _run(args, impls: list[str], plan, suite: str) -> int:
    """Load the implementations (each in its worker unless --in-process), run
    the cells ``plan(impls)`` here or on a Dask cluster, append, summarise."""
    threads, workers = args.threads, _workers(args, suite)
    rounds = (args.rounds or BENCH_ROUNDS) if suite == "bench" else 1
    # the references a cold cache lacks are computed one per core at a time; on
    # Dask the cluster's processes write them, so none is foreign at the end
    oracle = Oracle(processes=0 if args.in_process else (os.cpu_count() or 1),
                    sweep=args.executor != "dask")
    since, written = cpu_mark(), []  # the mark before any worker starts: their CPU is ours
    with contextlib.ExitStack() as stack:
        stack.callback(oracle.close)
        results = _results_file(args, suite)
        if results:
            stack.callback(results.unlock)
            # last before the unlock, once the workers are closed and reaped
            stack.callback(lambda: written and _finish_environment(results, since, written[0]))
        if args.in_process:
            limit_threads(threads)
            use_compilation_cache(oracle.cache_dir)
            describe = lambda name: _load_here(name, threads)
            start, runner = (lambda names: None), None
        else:
            unanswered: dict = {}  # supports() questions that hung, asked once a run
            isolated = [stack.enter_context(IsolatedRunner(
                args.timeout, environment=thread_environment(threads), oracle=oracle,
                unanswered=unanswered)) for _ in range(1 if args.executor == "dask" else workers)]
            describe, runner = isolated[0].describe, [i.run for i in isolated]
            start = isolated[0].start  # every implementation loads at once
        descriptions, not_loaded = _describe_all(impls, describe, start, named=bool(args.impl))
        impls = [name for name in impls if name in descriptions]
        cluster = {}
        if args.executor == "dask":
            runner, cluster = _dask_cells(args, stack, workers, isolated[0], descriptions)
        cells, earlier = _on_present_devices(plan(impls), descriptions), []
        if results and (args.resume or args.retry):
            cells, earlier = _unfinished(cells, results, args.retry)
        if results:
            written.append(write_environment(results.path.parent, threads, workers, cluster,
                                             isolated=not args.in_process,
                                             not_loaded=not_loaded))
        verb = "checking" if suite == "check" else "timing"
        print(f"{verb} {len(cells)} cells", file=sys.stderr)
        if rounds > 1:
            # fresh worker processes for each round (in-process: the same process)
            restart = (lambda cells: None) if args.in_process else (
                lambda cells: _restart(isolated, cells))
            records = time_in_rounds(cells, rounds, oracle, results, not args.quiet, runner,
                                     restart, threads)
        else:
            records = run_sweep(cells, oracle, results, progress=not args.quiet, runner=runner,
                                threads=threads)
    status = max(_summarise(earlier + records, results, descriptions), _left_out(not_loaded))
    return max(status, _altered_files(oracle.altered + (results.altered if results else [])))


def _left_out(not_loaded: dict[str, str]) -> int:
    """The installed implementations that did not load, told again after the
    summary: a failure of the run (exit 1), though the others' cells ran."""
    for reason in not_loaded.values():
        print(f"  not loaded: {reason}")
    return EXIT_FAILED if not_loaded else EXIT_OK


def _load_here(name: str, threads: int | None) -> dict:
    """``name`` loaded in this process (--in-process), its pools sized to
    ``threads``; its description."""
    with pools_sized_to(threads):
        return LocalExecutor(load_implementation(name)).describe()


def _restart(isolated: list, cells: list) -> None:
    """Fresh worker processes for the next pass over ``cells``: the old ones
    stopped, the first runner's loaded at once (before any cell is timed)."""
    for runner in isolated:
        runner.close()
    isolated[0].start(c.impl for c in cells)


def _finish_environment(results: ResultsFile, since: dict, written: dict) -> None:
    """environment.json as the harness wrote it, finished; a change another
    process made to it is dropped and said."""
    if finish_environment(results.path.parent, since, written):
        results.altered.append(f"{results.path.parent / 'environment.json'} was changed by "
                               "another process during the run; the harness's was put back")


def _altered_files(altered: list[str]) -> int:
    """Files of the harness that another process changed during the run (the
    harness put its own content back): said last, and a failed run."""
    for what in altered:
        print(f"altered: {what}")
    if altered:
        print("an implementation's code wrote to the harness's files: its records may not be "
              "the only thing it got wrong; the records and references above are the harness's")
    return EXIT_FAILED if altered else EXIT_OK


def _dask_cells(args, stack, workers: int, isolated, descriptions: dict):
    """The cluster's cell runner and its description; the devices of its GPU
    workers join each implementation's devices (their cells go there)."""
    from adjointbench.suites import distributed

    try:
        client = stack.enter_context(distributed.dask_client(args.scheduler, workers))
    except (distributed.MissingExtra, ConnectionError) as e:
        raise UsageError(str(e)) from None
    cells = distributed.DaskCells(client, args.timeout, thread_environment(args.threads),
                                  distributed.declined_by(isolated), isolated.oracle)
    for name, devices in distributed.gpu_worker_devices(client, list(descriptions),
                                                        cells).items():
        descriptions[name]["devices"] = tuple(dict.fromkeys(
            [*descriptions[name]["devices"], *devices]))
    cluster = distributed.cluster_summary(client)
    where = cluster["dashboard"] or "no dashboard (pip install bokeh for one)"
    print(f"Dask cluster {cluster['scheduler']}: {len(cluster['dask_workers'])} worker(s); "
          f"progress: {where}", file=sys.stderr)
    return cells, {"executor": "dask", **cluster}


def _workers(args, suite: str) -> int:
    """Cells run at once: --workers, else the core count for check and one for
    bench (timings must not share cores); always one with --in-process. With
    --executor dask, the workers of the local cluster."""
    if args.scheduler and args.executor != "dask":
        raise UsageError("--scheduler is the address of a Dask cluster: add --executor dask")
    if args.executor == "dask" and args.in_process:
        raise UsageError("--in-process runs cells in this process, --executor dask on a "
                         "cluster: drop one of them")
    if args.scheduler and args.workers is not None:
        raise UsageError("with --scheduler the cluster's own `dask worker` processes run the "
                         "cells: drop --workers (it sizes a local cluster)")
    if args.in_process:
        if args.workers not in (None, 1):
            raise UsageError("--in-process runs one cell at a time: drop --workers, or drop "
                             "--in-process to run cells in parallel workers")
        return 1
    if args.workers is not None:
        if suite == "bench" and args.workers > 1 and args.executor != "dask":
            print(f"adjointbench: warning: {args.workers} bench cells at once share the "
                  "machine's cores: their timings disturb each other (recorded in "
                  "environment.json)", file=sys.stderr)
        return args.workers
    return 1 if suite == "bench" else max(1, os.cpu_count() or 1)


def _selects_something(args, plan, suite: str) -> None:
    """Bad names, and filters that together select no cell, exit 2 before
    any implementation loads; the message says what each filter offers."""
    if plan(["?"]):
        return
    given = {"problem": args.problem, "op": args.op, "method": args.method,
             "dtype": args.dtype, "size": args.size, "device": args.device}
    named = " ".join(f"--{k} {','.join(map(str, v))}" for k, v in given.items() if v)
    named += " --quick" * bool(args.quick)
    why = [f"No {suite} cell matches {named}."]
    if args.problem:
        offered = plan_cells(["?"], args.problem, list(ALL_OPS), quick=args.quick, suite=suite)
        verb = "offers" if len(args.problem) == 1 else "offer"
        why.append(f"{', '.join(args.problem)} {verb} {_operations(offered)}"
                   + (f" (bench times {', '.join(DEFAULT_BENCH_OPS)} unless --op names "
                      "others)" if suite == "bench" and not args.op else "") + ".")
    if args.op or args.method:
        offered = plan_cells(["?"], None, args.op, methods=args.method, quick=args.quick,
                             suite=suite)
        problems_offering = ", ".join(dict.fromkeys(c.problem for c in offered)) or "no problem"
        what = " ".join(f"--{k} {','.join(given[k])}" for k in ("op", "method") if given[k])
        why.append(f"{what} is offered by {problems_offering}.")
    raise UsageError(" ".join(why) + " `adjointbench list` names every problem.")


def _operations(cells) -> str:
    """'primal, jvp, gradient (fd_forward, adjoint)': the operations of these
    cells, each with its methods."""
    methods = collections.defaultdict(dict)
    for c in cells:
        methods[c.op][c.method] = None
    return ", ".join(op + (f" ({', '.join(m)})" if None not in m else "")
                     for op, m in methods.items())


def cmd_check(args) -> int:
    def plan(impls):
        return plan_cells(impls, args.problem, args.op, args.dtype, args.size, args.device,
                          args.seed, args.method, quick=args.quick, points=args.points)
    _selects_something(args, plan, "check")
    return _run(args, _implementations(args.impl), plan, "check")


def cmd_bench(args) -> int:
    def plan(impls):
        return plan_cells(impls, args.problem, args.op, args.dtype, args.size, args.device,
                          args.seed, args.method, args.quick, suite="bench", budget_s=args.budget)
    _selects_something(args, plan, "bench")
    return _run(args, _implementations(args.impl), plan, "bench")


def cmd_report(args) -> int:
    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"--results {str(results)!r} is not a folder; give the --out folder "
                         "of a check or bench run")
    for option, path in (("--benchmark-json", args.benchmark_json), ("--asv", args.asv)):
        if path and not Path(path).exists():
            raise UsageError(f"{option} {path!r} does not exist")
    if not (args.benchmark_json or args.asv):  # else a report of those results alone
        _results_folder(args.results, "--results")
    from adjointbench.reports.load import load
    from adjointbench.reports.render import render

    against = args.against and _results_folder(args.against, "--against")
    out = _writable_folder(args.out or str(results / "report"))
    loaded = load(results, args.benchmark_json and Path(args.benchmark_json),
                  args.asv and Path(args.asv), against)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    page = render(loaded, out)
    print(f"report: {page.resolve()}")
    return EXIT_OK


def _results_folder(path: str, option: str) -> Path:
    folder = Path(path)
    if not (folder / "results.jsonl").is_file():
        raise UsageError(f"{option} {path!r} holds no results.jsonl; give the --out folder of "
                         "a check, bench or run")
    return folder


def cmd_compare(args) -> int:
    from adjointbench.suites.comparison import NoRecords, compare_folders, to_markdown, to_text

    if not (args.threshold > 1 and args.threshold < float("inf")):
        raise UsageError(f"--threshold must be a finite factor above 1 (1.10 flags 10% "
                         f"slower), got {args.threshold}")
    try:
        comparison = compare_folders(_results_folder(args.old, "OLD"),
                                     _results_folder(args.new, "NEW"), args.threshold)
    except NoRecords as e:
        raise UsageError(str(e)) from None
    if args.json:
        print(json.dumps(comparison.to_json(), indent=1))
    else:
        print(to_markdown(comparison) if args.markdown else to_text(comparison))
    return EXIT_FAILED if comparison.regressions else EXIT_OK


def _as(first: str, second: str) -> str:
    return f" (as {first!r})" if first != second else ""


def cmd_merge(args) -> int:
    from adjointbench.suites.merge import merge_folders, write_merged

    folders = [_results_folder(d, "DIR") for d in args.dirs]
    named: dict[Path, str] = {}  # each folder, as it was first given
    for given, folder in zip(args.dirs, folders):
        where = folder.resolve()
        if where in named:
            raise UsageError(f"DIR {given!r} is given twice{_as(named[where], given)}: each of "
                             "its cells would be a conflict with itself; name each folder once")
        named[where] = given
    out = Path(args.out)
    if out.resolve() in {f.resolve() for f in folders}:
        raise UsageError(f"OUT {args.out!r} is one of the folders to merge: choose a new folder")
    if (out / "results.jsonl").exists():
        raise UsageError(f"OUT {args.out!r} already holds results.jsonl: choose a new folder "
                         "(merge never overwrites results)")
    results = ResultsFile(_writable_folder(args.out))
    results.lock()
    try:
        merged = merge_folders(folders)
        write_merged(out, merged, folders, results)
    finally:
        results.unlock()
    for conflict in merged.conflicts:
        print(f"conflict: {conflict}", file=sys.stderr)
    if merged.damaged:
        print(f"dropped {merged.damaged} damaged line(s) of the folders' results", file=sys.stderr)
    print(f"merged {len(merged.records)} cells from {len(folders)} folders "
          f"({len(merged.machines)} machine(s): {', '.join(merged.machines)}) into "
          f"{results.path}; {len(merged.conflicts)} conflict(s)")
    return EXIT_OK


def _run_folder(args) -> str:
    """``--out``, or a new timestamped folder beside it when it already holds
    results and neither --resume nor --retry was asked: a rerun never fails
    on, or mixes into, the last run."""
    out = Path(args.out)
    if args.resume or args.retry or not (out / "results.jsonl").exists():
        return args.out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    fresh = out.with_name(f"{out.name}-{stamp}")
    print(f"{out} already holds a run: writing this one to {fresh} "
          f"(pass --resume to continue the earlier run instead)", file=sys.stderr)
    return str(fresh)


def cmd_run(args) -> int:
    """The main job: a quick check, a quick bench, and the report."""
    parser = build_parser()
    args.out = _run_folder(args)
    common = ["--out", args.out, "--timeout", str(args.timeout), "--threads", str(args.threads)]
    common += ["--impl", ",".join(args.impl)] if args.impl else []
    common += ["--resume"] if args.resume else []
    common += ["--retry"] if args.retry else []
    common += ["--quiet"] if args.quiet else []
    common += ["--executor", args.executor]
    common += ["--scheduler", args.scheduler] if args.scheduler else []
    workers = ["--workers", str(args.workers)] if args.workers else []
    status = EXIT_OK
    for argv in (["check", "--quick", *common, *workers],
                 ["bench", "--quick", "--budget", str(args.budget), *common]):  # one cell at a time
        print(f"== adjointbench {' '.join(argv)}", file=sys.stderr)
        sub = parser.parse_args(argv)
        status = max(status, sub.func(sub))
    report = parser.parse_args(["report", "--results", args.out])
    cmd_report(report)
    return status


def _cell_name(r) -> str:
    what = f"{r.op}/{r.method}" if r.method else r.op
    return f"{what:<9} {r.impl}-{r.problem}-n{r.size}-{r.dtype}-{r.device}"


def _summarise(records: list, results: ResultsFile | None, descriptions: dict) -> int:
    """Counts, then each failed or surprising cell once; the exit status."""
    counts = collections.Counter(r.outcome for r in records)
    summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
    print(f"{len(records)} cells: {summary}")
    manifests = {name: load_manifest(name, d["expected_outcomes"])
                 for name, d in descriptions.items()}
    found = {id(r): expected for r, expected in surprises(records, manifests)}
    for r in records:
        if id(r) in found and manifests.get(r.impl) is not None:
            verb = "now passes" if r.outcome == "ok" else f"is {r.outcome}"
            print(f"  unexpected: {_cell_name(r)} {verb}, its manifest expects {found[id(r)]}"
                  + (f": {r.message}" if r.outcome != "ok" else ""))
        elif r.outcome in FAILURES:  # expected: a cell its manifest lists
            tag = " (expected)" if _expected_failure(r, manifests) else ""
            print(f"  {r.outcome:<9} {_cell_name(r)}{tag}: {r.message}")
    _say_judged(records)
    if results:
        print(f"results: {results.path}")
    if records and counts["unsupported"] == len(records):
        print("adjointbench: warning: nothing was checked or timed: every cell is unsupported "
              f"({records[0].message}{', ...' if len(records) > 1 else ''}); name the "
              "implementations that offer these problems with --impl (adjointbench list "
              "shows every installed one)", file=sys.stderr)
    with_manifest = sorted({r.impl for r in records if id(r) in found
                            and manifests.get(r.impl) is not None})
    if with_manifest:
        print(f"cells differ from the expected outcomes of {', '.join(with_manifest)}; update "
              "impls/expected/<impl>.json (or the plug-in's expected_outcomes) if intended")
    bench_failed = any(r.outcome in FAILURES and not _expected_failure(r, manifests)
                       for r in records if r.suite == "bench")
    return EXIT_FAILED if found or bench_failed else EXIT_OK


def _say_judged(records: list) -> None:
    """How many timed results were judged against the oracle (suites/runner.py's
    judge_timed_result), and why not the others."""
    timed = [r for r in records if r.suite == "bench" and r.outcome == "ok"]
    judged = sum(r.max_rel_err is not None for r in timed)
    if timed:
        print(f"timed results judged against the oracle: {judged} of {len(timed)} ok cells"
              + ("" if judged == len(timed) else " (the others at sizes beyond the problems' "
                 "checked ones, where the bench computes no reference and the oracle's cache "
                 "holds none, or where the oracle gives no verdict)"))


def _expected_failure(record, manifests: dict) -> bool:
    """A failed cell its implementation's manifest lists: a check cell, or a
    bench cell whose timed result is the listed wrong rule's (a mismatch; a
    bench cell that could not be timed is a failure whatever is listed)."""
    rules = manifests.get(record.impl)
    if rules is None or (record.suite == "bench" and record.outcome != "mismatch"):
        return False
    return expected_outcome(record, rules) == record.outcome


def _sweep_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="folder for results.jsonl (created if needed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--resume", action="store_true",
                        help="skip the cells already in --out's results.jsonl; the exit "
                        "status counts their failures too")
    parser.add_argument("--retry", action="store_true",
                        help="resume, and run again the cells recorded as timeout, crashed "
                        "or error (their old records are replaced)")
    parser.add_argument("--timeout", type=SECONDS, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per cell before it is killed (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--in-process", action="store_true",
                        help="run cells in this process: faster, but a hang or a crash "
                        "stops the sweep")
    _workers_option(parser)
    _threads_option(parser)


def _workers_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=WORKERS, default=None,
                        help="cells run at once, each implementation in worker processes of "
                        "its own (default: the core count for check, 1 for bench, whose "
                        "timings must not share cores); with --executor dask and no "
                        "--scheduler, the local cluster's worker processes")
    parser.add_argument("--executor", choices=("local", "dask"), default="local",
                        help="where cells run: here (local, default) or as tasks of a Dask "
                        "cluster (dask; needs the [dask] extra; README: Running on a cluster)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT", type=_scheduler_address,
                        help="with --executor dask: the running cluster's scheduler "
                        "(default: a local cluster of --workers processes)")


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=THREADS, default=DEFAULT_THREADS,
                        help="BLAS/OpenMP/torch/XLA threads of the workers (default "
                        f"{DEFAULT_THREADS}: on a shared machine multithreaded calls stall; "
                        "recorded in environment.json)")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", type=_name_list, help="implementations, comma-separated: a built-in name, "
                        "an entry-point name or module:object (default: every installed one)")
    parser.add_argument("--problem", type=_name_list, help="problems, comma-separated: a "
                        "catalogue name, a family name (all of its problems, see list), an "
                        "entry-point name or module:object (default: all)")
    parser.add_argument("--op", type=_name_list, help=f"operations, comma-separated, of {', '.join(ALL_OPS)}")
    parser.add_argument("--method", type=_name_list, help="gradient methods of sensitivity "
                        f"problems ({', '.join(METHODS)}) and second-order methods "
                        f"({', '.join(SECOND_ORDER_METHODS)}; sensitivity problems' HVPs: "
                        f"{', '.join(SENSITIVITY_HVP_METHODS)}), comma-separated (default: all); "
                        "without --op, only the cells of these methods run")
    parser.add_argument("--dtype", type=_name_list, help=f"dtypes, comma-separated, of {', '.join(DTYPES)}")
    parser.add_argument("--size", type=_size_list, help="sizes, comma-separated (default: each problem's own)")
    parser.add_argument("--device", type=_name_list, help=f"devices, comma-separated, of {', '.join(DEVICES)} "
                        "(default: cpu)")
    parser.add_argument("--seed", type=SEED, default=0, help="seed of inputs and probes (0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adjointbench",
        description="Verify and benchmark JVP/VJP rules against a high-precision oracle.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="problems, implementations and operations")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_list.set_defaults(func=cmd_list)
    p_check = sub.add_parser("check", help="the correctness sweep against the oracle")
    _filters(p_check)
    _sweep_options(p_check)
    p_check.add_argument("--quick", action="store_true",
                         help="float64 only, each problem at its two smallest sizes")
    p_check.add_argument("--points", type=POINTS, default=DEFAULT_POINTS,
                         help="input points per cell: the seeded one, then points spread over "
                         f"the problem's domain (default {DEFAULT_POINTS})")
    p_check.set_defaults(func=cmd_check)
    p_bench = sub.add_parser("bench", help="throughput: each operation timed against its primal")
    _filters(p_bench)
    _sweep_options(p_bench)
    p_bench.add_argument("--budget", type=BUDGET, default=DEFAULT_BUDGET_S,
                         help=f"seconds of timed samples per operation (default {DEFAULT_BUDGET_S:g})")
    p_bench.add_argument("--quick", action="store_true",
                         help="each problem at its smallest and largest scaling size")
    p_bench.add_argument("--rounds", type=ROUNDS, default=None,
                         help="passes over the cells, each in fresh worker processes, the budget "
                         f"shared and the samples pooled (default {BENCH_ROUNDS}, as asv's "
                         "processes): a cell's speed drifts from minute to minute, which "
                         "compare must see")
    p_bench.set_defaults(func=cmd_bench)
    p_report = sub.add_parser("report", help="HTML page, Markdown summary and plots of results")
    p_report.add_argument("--results", required=True,
                          help="folder holding results.jsonl (and environment.json)")
    p_report.add_argument("--out", help="folder for index.html, summary.md and plots/ "
                          "(default: RESULTS/report)")
    p_report.add_argument("--benchmark-json", help="pytest-benchmark JSON to include")
    p_report.add_argument("--asv", help="asv results folder to include (e.g. .asv/results)")
    p_report.add_argument("--against", help="an older results folder: adds a section "
                          "comparing the two (as adjointbench compare)")
    p_report.set_defaults(func=cmd_report)
    p_compare = sub.add_parser(
        "compare", help="what changed between two results folders; exit 1 on a regression",
        description="Match the cells of two results folders (two commits, machines or "
        "plug-in versions). An outcome that becomes a failure is a regression. A bench cell "
        "is a regression when what a busy machine cannot fake grew beyond --threshold "
        "(raised by the two runs' own noise, seen in the cells that got quicker, at most 50%): "
        "an operation's cost over its "
        "primal, a primal's time over the reference call timed beside it, sample by sample; "
        "a Mann-Whitney test on the stored samples must agree at p < 0.01, the two "
        "samples' quartiles no longer overlap, and the plain time grow beyond the threshold "
        "too, as measured and over the machine's drift. Exit 1 when anything regressed.")
    p_compare.add_argument("old", help="the baseline results folder")
    p_compare.add_argument("new", help="the results folder to judge")
    p_compare.add_argument("--threshold", type=float, default=1.10,
                           help="slowdown factor that counts (default: 1.10)")
    form = p_compare.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="a pull-request comment")
    form.add_argument("--json", action="store_true", help="every change as JSON")
    p_compare.set_defaults(func=cmd_compare)
    p_merge = sub.add_parser(
        "merge", help="combine results folders from several machines",
        description="Combine the results folders of several machines (or runs) into OUT. "
        "Each record keeps its machine, each machine its environment (OUT/environment.json, "
        "under machines); a cell in two folders is kept once, from the first folder given, "
        "and the conflict reported.")
    p_merge.add_argument("out", help="a new folder for the merged results")
    p_merge.add_argument("dirs", nargs="+", metavar="DIR", help="results folders to merge")
    p_merge.set_defaults(func=cmd_merge)
    p_run = sub.add_parser("run", help="the main job: quick check, quick bench, report")
    p_run.add_argument("--out", default="results", help="folder for results and report/ "
                       "(default: results)")
    p_run.add_argument("--impl", type=_name_list, help="implementations, comma-separated (default: every "
                       "installed one)")
    p_run.add_argument("--resume", action="store_true", help="continue an interrupted run "
                       "(without it, a folder that holds a run gets a timestamped sibling)")
    p_run.add_argument("--retry", action="store_true", help="continue, running again the "
                       "cells recorded as timeout, crashed or error")
    p_run.add_argument("--timeout", type=SECONDS, default=DEFAULT_TIMEOUT_S,
                       help=f"seconds per cell (default {DEFAULT_TIMEOUT_S:g})")
    p_run.add_argument("--quiet", action="store_true", help="no progress bar")
    p_run.add_argument("--budget", type=BUDGET, default=RUN_BUDGET_S,
                       help="seconds of timed samples per operation in the quick bench "
                       f"(default {RUN_BUDGET_S:g}; a noisy cell's warning asks for more)")
    _workers_option(p_run)
    _threads_option(p_run)
    p_run.set_defaults(func=cmd_run)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"adjointbench: warning: {message}\n"


def _terminate(signum, frame):
    raise faults.Terminated(128 + signum)


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _warning_line  # one readable line, no source excerpt
    # SIGTERM unwinds like Ctrl-C: the workers are stopped, the records kept
    signal.signal(signal.SIGTERM, _terminate)
    with faults.interrupts_never_swallowed():
        return _dispatch(argv)


def _dispatch(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: bad input (2) or --help (0), already printed
        return int(e.code or 0)
    try:
        return args.func(args)
    except (UsageError, UnknownNameError, ProtocolError, MissingDependency, DeclarationError,
            HarnessFault) as e:
        print(f"adjointbench: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(_interrupted(args, argv), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `adjointbench list --json | head`: the reader left
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def _interrupted(args, argv: list[str] | None) -> str:
    """One line: what was kept, and the command that continues."""
    out = getattr(args, "out", None)
    if not out:
        return "adjointbench: interrupted"
    kept = len(ResultsFile(out).read()[0])
    words = list(sys.argv[1:] if argv is None else argv)
    again = " ".join(["adjointbench", *words, *([] if "--resume" in words else ["--resume"])])
    return f"adjointbench: interrupted; {kept} records kept in {out}. Continue with: {again}"
