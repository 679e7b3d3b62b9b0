"""The ``adjointbench`` command line.

    adjointbench list [--json]
    adjointbench check [--impl numpy,naive] [--problem linear_solve] [--op vjp]
                       [--method adjoint] [--dtype float32] [--size 8,16] [--device cpu]
                       [--quick] [--out DIR [--resume]] [--timeout S] [--in-process]
    adjointbench bench [the same filters] [--threads N] [--budget S] [--quick] [--out DIR]
    adjointbench report --results DIR [--out DIR] [--benchmark-json F] [--asv DIR]
    adjointbench run [--out results]      # check --quick, bench --quick, report

``check`` runs the correctness sweep (primitives' operations, and the gradient
methods of the sensitivity problems) and writes ``DIR/results.jsonl``, one
JSON object per cell, appended and synced as each cell finishes. Cells run in
a worker process under ``--timeout``: a hang becomes ``timeout``, a dead
worker ``crashed``, and the sweep goes on. ``--resume`` skips the cells
already in DIR (a truncated last line is dropped and reported). Each cell is
compared with its implementation's expected-outcome manifest
(``impls/expected/<impl>.json``, or a plug-in's ``expected_outcomes``).
Exit status: 0 when every cell did what was expected, 1 when one did not (a
new mismatch, error, timeout or crash, or a listed failure that now passes;
without a manifest, any failure), 2 for bad input (an unknown name, an
unwritable folder, existing results without --resume).

``bench`` times each operation against its primal (suites/timing.py) and
appends to the same table; ``report`` renders a results folder as
index.html, summary.md and plots; ``run`` is the main job.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import signal
import sys
import warnings
from pathlib import Path

from adjointbench.impls.protocol import DEVICES, DTYPES
from adjointbench.impls.registry import (MissingDependency, ProtocolError, available_implementations,
                            known_names, load_implementation)
from adjointbench.reference import DeclarationError, Oracle, UnknownNameError, problems
from adjointbench.reference.catalogue import origin
from adjointbench.suites.cells import ALL_OPS, DEFAULT_POINTS, plan_cells
from adjointbench.suites.environment import finish_environment, write_environment
from adjointbench.suites.expected import load_manifest, surprises
from adjointbench.suites.executors import LocalExecutor
from adjointbench.suites.isolation import DEFAULT_TIMEOUT_S, IsolatedRunner
from adjointbench.suites.results import FAILURES, OUTCOMES, ResultsFile, record_key
from adjointbench.suites.sweep import run_sweep
from adjointbench.suites.threads import DEFAULT_THREADS, limit_threads, thread_environment
from adjointbench.suites.timing import DEFAULT_BUDGET_S
from adjointbench.suites.tolerance import METHODS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input on the command line: reported with exit status 2."""


def _names(text: str | None) -> list[str] | None:
    return [t.strip() for t in text.split(",") if t.strip()] if text else None


def _sizes(text: str | None) -> list[int] | None:
    names = _names(text)
    if names is None:
        return None
    try:
        return [int(n) for n in names]
    except ValueError:
        raise UsageError(f"--size takes whole numbers separated by commas, got {text!r}") from None


def _catalogue() -> dict:
    available = set(available_implementations())
    return {
        "problems": [{"name": p.name, "family": p.family, "sizes": list(p.sizes),
                      "inputs": list(p.inputs), "differentiable": list(p.differentiable),
                      "kind": p.kind, "description": p.description, "origin": origin(p.name)}
                     for p in problems(None)],
        "implementations": [{"name": n, "available": n in available} for n in known_names()],
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
        print(f"  {i['name']:<16} {'available' if i['available'] else 'not installed'}")
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


def _describe_all(names: list[str], describe) -> dict[str, dict]:
    """Each implementation's name, devices and expected outcomes, loaded where
    it will run; one that will not load is bad input (exit 2), with the reason."""
    descriptions = {}
    for name in names:
        try:
            descriptions[name] = describe(name)
        except (UnknownNameError, ProtocolError, MissingDependency) as e:
            raise UsageError(str(e)) from None
        except Exception as e:  # noqa: BLE001 - what the plug-in raised, reported
            raise UsageError(f"implementation {name!r} cannot be loaded: {e}. Check the "
                             "'module:object' name and that its package is installed.") from None
    return descriptions


def _unfinished(cells: list, results: ResultsFile) -> list:
    dropped = results.repair()
    if dropped:
        print(f"ignored {dropped} damaged line(s) in {results.path} (a truncated last write)",
              file=sys.stderr)
    done = {record_key(r) for r in results.read()[0]}
    remaining = [c for c in cells if record_key(c) not in done]
    print(f"resuming: {len(cells) - len(remaining)} of {len(cells)} cells already finished",
          file=sys.stderr)
    return remaining


def _results_file(args, suite: str) -> ResultsFile | None:
    """The results file to append to; refuses to mix into a finished sweep of
    the same suite unless --resume (check and bench share one table)."""
    results = ResultsFile(_writable_folder(args.out)) if args.out else None
    if args.resume and not results:
        raise UsageError("--resume needs --out, the folder whose results.jsonl to continue")
    if results and not args.resume and any(r.suite == suite for r in results.read()[0]):
        raise UsageError(f"{results.path} already holds {suite} results: pass --resume to "
                         "continue that sweep, or choose another --out")
    return results


def _run(args, impls: list[str], plan, suite: str) -> int:
    """Load the implementations (each in its worker unless --in-process), run
    the cells ``plan(impls)``, append, summarise."""
    threads = args.threads
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    oracle = Oracle()
    with contextlib.ExitStack() as stack:
        if args.in_process:
            limit_threads(threads)
            describe = lambda name: LocalExecutor(load_implementation(name)).describe()
            runner = None
        else:
            isolated = stack.enter_context(IsolatedRunner(
                args.timeout, environment=thread_environment(threads), oracle=oracle))
            describe, runner = isolated.describe, isolated.run
        descriptions = _describe_all(impls, describe)
        cells = plan(impls)
        results = _results_file(args, suite)
        if results and args.resume:
            cells = _unfinished(cells, results)
        if results:
            write_environment(results.path.parent, threads)
        verb = "checking" if suite == "check" else "timing"
        print(f"{verb} {len(cells)} cells", file=sys.stderr)
        records = run_sweep(cells, oracle, results, progress=not args.quiet, runner=runner)
        if results:
            finish_environment(results.path.parent)
    return _summarise(records, results, descriptions)


def cmd_check(args) -> int:
    def plan(impls):
        return plan_cells(impls, _names(args.problem), _names(args.op), _names(args.dtype),
                          _sizes(args.size), _names(args.device), args.seed,
                          _names(args.method), quick=args.quick, points=args.points)
    plan([])  # bad names exit 2 before any implementation loads
    return _run(args, _implementations(_names(args.impl)), plan, "check")


def cmd_bench(args) -> int:
    if args.budget <= 0:
        raise UsageError(f"--budget must be a positive number of seconds, got {args.budget}")
    def plan(impls):
        return plan_cells(impls, _names(args.problem), _names(args.op), _names(args.dtype),
                          _sizes(args.size), _names(args.device), args.seed,
                          _names(args.method), args.quick, suite="bench", budget_s=args.budget)
    plan([])
    return _run(args, _implementations(_names(args.impl)), plan, "bench")


def cmd_report(args) -> int:
    results = Path(args.results)
    if not results.is_dir():
        raise UsageError(f"--results {str(results)!r} is not a folder; give the --out folder "
                         "of a check or bench run")
    for option, path in (("--benchmark-json", args.benchmark_json), ("--asv", args.asv)):
        if path and not Path(path).exists():
            raise UsageError(f"{option} {path!r} does not exist")
    from adjointbench.reports.load import load
    from adjointbench.reports.render import render

    out = _writable_folder(args.out or str(results / "report"))
    loaded = load(results, args.benchmark_json and Path(args.benchmark_json),
                  args.asv and Path(args.asv))
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    page = render(loaded, out)
    print(f"report: {page.resolve()}")
    return EXIT_OK


def cmd_run(args) -> int:
    """The main job: a quick check, a quick bench, and the report."""
    parser = build_parser()
    common = ["--out", args.out, "--timeout", str(args.timeout), "--threads", str(args.threads)]
    common += ["--impl", args.impl] if args.impl else []
    common += ["--resume"] if args.resume else []
    common += ["--quiet"] if args.quiet else []
    status = EXIT_OK
    for argv in (["check", "--quick", *common], ["bench", "--quick", "--budget", "0.05", *common]):
        print(f"== adjointbench {' '.join(argv)}", file=sys.stderr)
        sub = parser.parse_args(argv)
        status = max(status, sub.func(sub))
    report = parser.parse_args(["report", "--results", args.out])
    cmd_report(report)
    return status


def _summarise(records: list, results: ResultsFile | None, descriptions: dict) -> int:
    counts = collections.Counter(r.outcome for r in records)
    summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
    print(f"{len(records)} cells: {summary}")
    for r in records:
        if r.outcome in FAILURES:
            what = f"{r.op}/{r.method}" if r.method else r.op
            print(f"  {r.outcome:<9} {what:<9} {r.impl}-{r.problem}-n{r.size}-{r.dtype}-{r.device}: "
                  f"{r.message}")
    if results:
        print(f"results: {results.path}")
    unexpected = _surprises(records, descriptions)
    bench_failed = any(r.outcome in FAILURES for r in records if r.suite == "bench")
    return EXIT_FAILED if unexpected or bench_failed else EXIT_OK


def _surprises(records: list, descriptions: dict) -> list:
    """Check cells whose outcome differs from their implementation's manifest
    (suites/expected.py), printed; both directions count."""
    manifests = {name: load_manifest(name, d["expected_outcomes"])
                 for name, d in descriptions.items()}
    found = surprises(records, manifests)
    for record, expected in found:
        what = f"{record.op}/{record.method}" if record.method else record.op
        verb = "now passes" if record.outcome == "ok" else f"is {record.outcome}"
        print(f"  unexpected: {what} {record.impl}-{record.problem}-n{record.size}-"
              f"{record.dtype} {verb}, its manifest expects {expected}")
    if found:
        print(f"{len(found)} cell(s) differ from the expected outcomes; update "
              "impls/expected/<impl>.json (or the plug-in's expected_outcomes) if intended")
    return found


def _sweep_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="folder for results.jsonl (created if needed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--resume", action="store_true",
                        help="skip the cells already in --out's results.jsonl")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds per cell before it is killed (default {DEFAULT_TIMEOUT_S:g})")
    parser.add_argument("--in-process", action="store_true",
                        help="run cells in this process: faster, but a hang or a crash "
                        "stops the sweep")
    _threads_option(parser)


def _threads_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="BLAS/OpenMP/torch/XLA threads of the workers (default "
                        f"{DEFAULT_THREADS}: on a shared machine multithreaded calls stall; "
                        "recorded in environment.json)")


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--impl", help="implementations, comma-separated: a built-in name, "
                        "an entry-point name or module:object (default: every installed one)")
    parser.add_argument("--problem", help="problems, comma-separated: a catalogue name, an "
                        "entry-point name or module:object (default: all)")
    parser.add_argument("--op", help=f"operations, comma-separated, of {', '.join(ALL_OPS)}")
    parser.add_argument("--method", help="gradient methods of sensitivity problems, "
                        f"comma-separated, of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--dtype", help=f"dtypes, comma-separated, of {', '.join(DTYPES)}")
    parser.add_argument("--size", help="sizes, comma-separated (default: each problem's own)")
    parser.add_argument("--device", help=f"devices, comma-separated, of {', '.join(DEVICES)} "
                        "(default: cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of inputs and probes (0)")


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
    p_check.add_argument("--points", type=int, default=DEFAULT_POINTS,
                         help="input points per cell: the seeded one, then points spread over "
                         f"the problem's domain (default {DEFAULT_POINTS})")
    p_check.set_defaults(func=cmd_check)
    p_bench = sub.add_parser("bench", help="throughput: each operation timed against its primal")
    _filters(p_bench)
    _sweep_options(p_bench)
    p_bench.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                         help=f"seconds of timed samples per operation (default {DEFAULT_BUDGET_S:g})")
    p_bench.add_argument("--quick", action="store_true",
                         help="each problem at its smallest, middle and largest scaling size")
    p_bench.set_defaults(func=cmd_bench)
    p_report = sub.add_parser("report", help="HTML page, Markdown summary and plots of results")
    p_report.add_argument("--results", required=True,
                          help="folder holding results.jsonl (and environment.json)")
    p_report.add_argument("--out", help="folder for index.html, summary.md and plots/ "
                          "(default: RESULTS/report)")
    p_report.add_argument("--benchmark-json", help="pytest-benchmark JSON to include")
    p_report.add_argument("--asv", help="asv results folder to include (e.g. .asv/results)")
    p_report.set_defaults(func=cmd_report)
    p_run = sub.add_parser("run", help="the main job: quick check, quick bench, report")
    p_run.add_argument("--out", default="results", help="folder for results and report/ "
                       "(default: results)")
    p_run.add_argument("--impl", help="implementations, comma-separated (default: every "
                       "installed one)")
    p_run.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p_run.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                       help=f"seconds per cell (default {DEFAULT_TIMEOUT_S:g})")
    p_run.add_argument("--quiet", action="store_true", help="no progress bar")
    _threads_option(p_run)
    p_run.set_defaults(func=cmd_run)
    return parser


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"adjointbench: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    warnings.formatwarning = _warning_line  # one readable line, no source excerpt
    # SIGTERM unwinds like Ctrl-C: the workers are stopped, the records kept
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, UnknownNameError, ProtocolError, MissingDependency, DeclarationError) as e:
        print(f"adjointbench: error: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
