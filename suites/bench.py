"""The throughput suite: every operation of every implementation, timed by the
one timing core against its own primal, over each problem's scaling sizes.

A bench cell times the operation and its primal in one process, their
samples alternating on the same inputs (suites/timing.py's
:func:`sample_paired`), so that ``ratio_to_primal`` (the median of the paired
ratios, with its quartiles) compares like with like at the same moment. The
primal is prepared once per worker for all operations of the same inputs. Its record
(``suite == "bench"``) carries the timing fields of :mod:`suites.results`.
A timed result of the wrong form, not finite or not reentrant makes the cell
a ``mismatch`` rather than a number; the harness also judges the last
timed call's result against the oracle, at every size where it holds or
computes the reference (:func:`references_computed_for`, suites/runner.py's
``judges`` and ``judge_timed_result``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import numpy as np

from adjointbench.impls.protocol import Implementation, Task, prepare, supports
from adjointbench.reference import Problem, get_problem, make_inputs, make_probes
from adjointbench.reference.problem import Probes
from adjointbench.suites.cells import Cell
from adjointbench.suites.compare import cotangents_of, validate
from adjointbench.suites.isolation import refuse_beyond_memory
from adjointbench.suites.purity import check_reentrant, copy_arrays, leaves_of, same_arrays
from adjointbench.suites.results import Record
from adjointbench.suites.threads import blas_threads, confined_to, requested_threads
from adjointbench.suites.timing import (CONVERSIONS, CORES_MARGIN, IDLE_BELOW, TIMING_KINDS,
                                        KeepingLast, Paired, WarmCall, converted,
                                        paired_from_samples, reference_workload, sample_paired,
                                        warm_up)
from adjointbench.suites.wire import measurements

# Operations whose run() includes the forward pass: never cheaper than the primal
INCLUDES_FORWARD = ("vjp", "jacfwd", "jacrev", "batched_jacobian", "hvp", "hessian", "gradient")
# ... but calls of equal cost pair a few percent either side of 1: jax's VJP
# of linear_solve at n = 1024, which runs the forward's LU and two more
# triangular solves, paired at 0.99 (quartiles 0.976-0.992), its l2_loss VJP
# at n = 100 at 0.98. Only an upper quartile below this is cheaper than the forward.
CHEAPER_THAN_FORWARD = 0.95
FULL_MATRICES = ("jacfwd", "jacrev", "hessian")  # asked only where a worker can hold them
SPREAD_WARNING = 0.25  # an IQR above this fraction of the median is flagged
# On the CPU, to_numpy costs at most a copy of the result, which run() itself
# had to write: one that takes this many times a timed call, and at least
# DEFERRED_FLOOR_S, holds work that the timing missed.
DEFERRED_FACTOR = 3.0
DEFERRED_FLOOR_S = 1e-4


def _task(cell: Cell, problem: Problem, op: str, inputs: dict, **kw) -> Task:
    return Task(problem.name, op, inputs, problem.differentiable, cell.dtype, cell.device,
                method=cell.method, **kw)


def operation_probes(op: str, probes: Probes) -> dict:
    """The probes an operation's task carries (impls/protocol.py's Task)."""
    return {"jvp": {"tangent": probes.tangent}, "vjp": {"cotangent": probes.cotangent},
            "hvp": {"tangent": probes.tangent, "cotangent": probes.cotangent},
            "hessian": {"cotangent": probes.cotangent}}.get(op, {})


def _operation_task(cell: Cell, problem: Problem, primal: "_Primal") -> Task:
    probes = operation_probes(cell.op, primal.probes(problem, cell))
    return _task(cell, problem, cell.op, copy_arrays(primal.inputs), **copy_arrays(probes))


# Operations whose timed result the harness judges against the oracle (a bench
# cell's inputs and probes are those of the check's input point 0 at its
# size): each is checked with one call of the task the bench timed
# (suites/runner.py's judge_timed_result).
JUDGED_OPS = ("primal", "jvp", "vjp", "jacfwd", "jacrev", "batched_jacobian", "hvp", "hessian")


def references_computed_for(cell: Cell) -> bool:
    """Whether a bench computes the references it judges the cell's timed
    result by (an operation of JUDGED_OPS), where the oracle lacks them: at
    sizes up to the problem's
    largest checked one, where they cost no more than the check's own (the
    main job's elementwise cells at n = 100, its batched ones at B = 1).
    Beyond, it judges by those the oracle holds (computed through its Python
    API, ``Oracle().reference(problem, size)``): a 1024 x 1024 matmul's would
    take mpmath hours, softmax's at n = 100,000 about a minute."""
    return cell.op in JUDGED_OPS and cell.size <= max(get_problem(cell.problem).sizes)


COTANGENT_OPS = ("vjp", "gradient", "hvp")  # one array per differentiable input


def expected_shapes(cell: Cell, problem: Problem, inputs: dict,
                    output_shape: tuple) -> list[tuple]:
    """The shape of each array the cell's operation must return (the
    protocol's canonical results, impls/protocol.py)."""
    outputs, n = int(np.prod(output_shape)), sum(np.size(inputs[k]) for k in problem.differentiable)
    if cell.op in ("primal", "jvp"):
        return [tuple(output_shape)]
    if cell.op in COTANGENT_OPS:
        return [np.shape(inputs[k]) for k in problem.differentiable]
    if cell.op == "hessian":
        return [(n, n)]
    if cell.op == "batched_jacobian":
        x = inputs[problem.batch_input]
        return [(outputs // x.shape[-1], x[..., 0].size, x.shape[-1])]
    return [(outputs, n)]


def validate_result(result, shapes: list[tuple], dtype: str, op: str,
                    names: tuple[str, ...]) -> None:
    """A timed result must be what the operation returns, as check judges it:
    one array per differentiable input (``names``) for the operations that
    return cotangents, else one array; the right shapes and dtype, all
    finite (else the timing measured something else); raises WrongResult
    (a ``mismatch``)."""
    parts = cotangents_of(result, names, op) if op in COTANGENT_OPS else [result]
    for k, (part, shape) in enumerate(zip(parts, shapes)):
        validate(part, shape, dtype, f"{op} result {k}" if len(shapes) > 1 else f"{op} result")


@dataclass
class _Primal:
    """A primal warmed up in this process: its call, the shape of its output,
    and the cell's inputs and probes, made once for all the operations timed
    beside it (each prepare gets a copy: code under test may write to what
    it is given). Made per operation instead (a 1024 x 1024 matmul's probes
    take 0.13 s), the quick bench took 124.5 s against 118.0 s."""

    warm: WarmCall
    output_shape: tuple
    inputs: dict
    _probes: Probes | None = None

    def probes(self, problem: Problem, cell: Cell) -> Probes:
        if self._probes is None:
            self._probes = make_probes(problem, cell.size, self.inputs, self.output_shape,
                                       cell.seed)
        return self._probes


# The primal per (impl, problem, size, dtype, device, seed), shared by the
# operations of one worker process: compiled once. Entries of other problems
# keep their compiled call, not their probes (a 1024 x 1024 matmul's: 72 MB).
_PRIMALS: dict[tuple, _Primal] = {}


def _primal_key(cell: Cell) -> tuple:
    return (cell.impl, cell.problem, cell.size, cell.dtype, cell.device, cell.seed)


def _warm_primal(cell: Cell, impl: Implementation, problem: Problem) -> _Primal:
    key = _primal_key(cell)
    if key not in _PRIMALS:
        if not supports(impl, cell.problem, "primal", cell.method):
            raise NotImplementedError(f"{cell.impl} offers no primal of {cell.problem}: every "
                                      "bench figure is a ratio to the primal, timed beside it")
        inputs = make_inputs(problem, cell.size, cell.seed)
        task = _task(cell, problem, "primal", copy_arrays(inputs))
        warm = warm_up(lambda: prepare(impl, task), cell.budget_s)
        for other_key, other in _PRIMALS.items():
            if other_key[:2] != key[:2]:  # another implementation's or problem's
                other._probes = None
        _PRIMALS[key] = _Primal(warm, np.shape(warm.prepared.to_numpy(warm.result)), inputs)
    return _PRIMALS[key]


def warm_pair(cell: Cell, impl: Implementation) -> tuple[WarmCall, WarmCall]:
    """The primal and the cell's operation, prepared on the same inputs (probes
    shaped by the primal's output) and warmed up, ready for
    :func:`~adjointbench.suites.timing.sample_paired`."""
    problem = get_problem(cell.problem)
    primal = _warm_primal(cell, impl, problem)
    if cell.op == "primal":
        return primal.warm, primal.warm
    if cell.op in FULL_MATRICES:
        (rows, columns), = expected_shapes(cell, problem, primal.inputs, primal.output_shape)
        refuse_beyond_memory(f"{cell.op} of {cell.problem} at size {cell.size}", rows, columns,
                             cell.dtype)
    task = _operation_task(cell, problem, primal)
    return primal.warm, warm_up(lambda: prepare(impl, task), cell.budget_s)


def kept_results(cell: Cell, primal: WarmCall, operation: WarmCall) -> int:
    """Of the primal and the operation (one call for a primal cell), those
    whose second warm-up call returned the very objects its first did, none
    of them equal to an array they were given (the VJP of x + y hands back
    its cotangent, rightly): a result cached in prepare() or at the first
    call, which the timed calls only look up."""
    repeated = [w for w in {id(primal): primal, id(operation): operation}.values()
                if w.repeated]
    if not repeated:
        return 0
    problem, made = get_problem(cell.problem), _PRIMALS[_primal_key(cell)]
    probes = made.probes(problem, cell)
    given = [np.asarray(a) for a in leaves_of((made.inputs, probes.tangent, probes.cotangent))]
    return sum(not any(same_arrays(leaf, array) for leaf in leaves_of(w.prepared.to_numpy(w.result))
                       for array in given) for w in repeated)


STORED_SAMPLES = 200  # per record: enough for a rank test, a few kB per line


def stored_samples(samples) -> list[float]:
    """Per-call times kept in the record (4 significant digits), for
    ``adjointbench compare``'s significance test: evenly spaced over the run
    when there are more than STORED_SAMPLES."""
    samples = list(samples)
    if len(samples) > STORED_SAMPLES:
        step = len(samples) / STORED_SAMPLES
        samples = [samples[int(k * step)] for k in range(STORED_SAMPLES)]
    return [float(f"{s:.4g}") for s in samples]


def paired_fields(paired: Paired, op: str, compile_s: float, number: int,
                  early_waits: int = 0, to_numpy_s: float | None = None,
                  threads: int | None = None, kept: int = 0) -> dict:
    """The record fields (suites/results.py) of an operation timed against its
    primal, with a warning where the figures should not be believed
    (``threads``: those it was timed with, :func:`timing_warning`; ``kept``:
    :func:`kept_results`)."""
    fields = {"early_waits": early_waits, "kept_results": kept, "to_numpy_s": to_numpy_s,
              "cores": paired.cores, "least_cores": paired.least_cores,
              "time_median_s": paired.median_s, "time_iqr_s": paired.iqr_s,
              "primal_median_s": paired.primal_median_s, "ratio_to_primal": paired.ratio,
              "ratio_q1": paired.ratio_q1, "ratio_q3": paired.ratio_q3, "rounds": paired.pairs,
              "number": number, "compile_s": compile_s,
              "samples_s": stored_samples(paired.samples_s),
              "primal_samples_s": stored_samples(paired.primal_samples_s)}
    if op == "primal":  # 1 by definition, not by measurement; paired with the reference call
        fields.update(ratio_to_primal=1.0, ratio_q1=1.0, ratio_q3=1.0,
                      primal_median_s=paired.median_s, primal_samples_s=None,
                      reference_samples_s=fields["primal_samples_s"])
    return {**fields, "timing_warning": timing_warning(fields, op, threads)}


def timing_warning(fields: dict, op: str, threads: int | None = None) -> str | None:
    """Why a bench record's figures are suspect, or None.

    An operation that includes the forward pass (:data:`INCLUDES_FORWARD`)
    costs at least its primal when it runs that pass: three quarters of the
    pairs below CHEAPER_THAN_FORWARD (0.95, beyond the pairs' resolution)
    mean the timing missed work (residuals computed in
    ``prepare``, a cached result), or a compiler dropped forward computations
    the result does not need (jit's dead-code elimination: the VJP of
    l2_loss, w (y - y_ref), needs no sum; jax at n = 10^5 times it at 0.74x
    its primal).
    A spread of more than :data:`SPREAD_WARNING` of the median means
    the machine was busy or the call's cost varies. Either is told after
    an implementation's ``wait`` that returned too early (``early_waits``),
    after a ``to_numpy`` that holds work the timing missed
    (:func:`deferred_warning`), when the calls kept more cores busy than
    the run's ``threads`` (:func:`cores_warning`; None: the record's own),
    and when they kept one busy less than half the time (:func:`idle_warning`).
    """
    what = op if op == "primal" else f"{op} or its primal"
    told = _call_warnings(fields, what, threads) + [w for w in [_figures_warning(fields, op)]
                                                    if w]
    return "; ".join(told) or None


def call_warning(fields: dict, what: str, threads: int | None = None) -> str | None:
    """Why the timing of a call without a primal beside it (a gradient
    method's, ``what``) is suspect: its wait, its to_numpy, its cores; or None."""
    return "; ".join(_call_warnings(fields, what, threads)) or None


def _call_warnings(fields: dict, what: str, threads: int | None) -> list[str]:
    early, kept = fields.get("early_waits"), fields.get("kept_results")
    told = [f"wait() returned before the result was computed ({early} warm-up call(s) of "
            f"{what}): timed with the harness's own wait instead (block_until_ready, CUDA "
            "synchronize); make wait() block on every array run() returns"] if early else []
    told += [f"run() returned the very arrays it had returned before ({what}: {kept} of the "
             "two): a result cached in prepare() or at the first call, so the timed calls "
             "only looked it up; compute it in every call"] if kept else []
    found = [deferred_warning(fields), cores_warning(fields, what, threads),
             idle_warning(fields, what)]
    return told + [w for w in found if w]


def too_many_cores(fields, threads: int | None = None) -> bool:
    """Whether the timed calls of a CPU cell kept more than ``threads`` (the
    run's; None: the record's ``threads``) plus CORES_MARGIN cores busy (off
    the CPU a host thread may spin while it waits for the device).
    ``fields``: a record's, as a dict or a row of the report's frame."""
    if fields.get("device", "cpu") != "cpu":
        return False
    cores, threads = fields.get("cores"), threads or fields.get("threads")
    return bool(_number(cores) and _number(threads) and cores > threads + CORES_MARGIN)


def _number(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def cores_warning(fields, what: str, threads: int | None = None) -> str | None:
    """Calls that kept more than ``threads`` (the run's; None: the record's
    ``threads``) plus CORES_MARGIN cores busy while timed: threads the
    implementation started, or a pool sized without the run's setting. Such
    a time is not comparable with single-core figures beside it."""
    if not too_many_cores(fields, threads):
        return None
    cores, threads = fields["cores"], threads or fields["threads"]
    return (f"{what} kept {cores:.2f} cores busy while timed with {threads} thread(s): its "
            "time is not comparable with the other cells'; size its thread pools from the "
            "run's --threads (OMP_NUM_THREADS) and start no threads of its own")


def _least_cores(fields) -> float | None:
    """The fewer of the cores a bench cell's operation and its primal kept
    busy (``least_cores``), else the one call's (``cores``: a gradient cell)."""
    least = fields.get("least_cores")
    least = least if _number(least) else fields.get("cores")
    return least if _number(least) else None


def waited(fields) -> bool:
    """Whether the timed calls of a CPU cell (:func:`_least_cores`) kept less
    than IDLE_BELOW of a core busy: most of the time they were timed they
    waited, and a time that counts waiting is no measure of the work (a
    primal that sleeps makes every ratio to it look cheap)."""
    least = _least_cores(fields)
    return fields.get("device", "cpu") == "cpu" and least is not None and least < IDLE_BELOW


def idle_warning(fields, what: str) -> str | None:
    """:func:`waited`, told: what the time holds besides work, and the fix."""
    if not waited(fields):
        return None
    return (f"{what} kept a CPU busy only {_least_cores(fields):.0%} of the time it was "
            "timed: the time is mostly waiting (a sleep, a lock, I/O, a process that is not "
            "the worker's child) or the machine was busy; compute in the call, and rerun on "
            "a quiet machine")


def deferred_warning(fields) -> str | None:
    """A CPU cell whose to_numpy took DEFERRED_FACTOR times a timed call, and
    at least DEFERRED_FLOOR_S: run() returned before the work was done (a
    thunk, a lazy array) and to_numpy, which is not timed, did it. Such an
    implementation's 1024 x 1024 matmul was timed at 0.45 us."""
    if not deferred_work(fields):
        return None
    converting, call = fields["to_numpy_s"], fields["time_median_s"]
    return (f"to_numpy() took {_seconds(converting)} against {_seconds(call)} per timed call: "
            "the work is done in to_numpy, which is not timed, so these figures miss it; "
            "compute the result in run() and only convert it in to_numpy")


def deferred_work(fields) -> bool:
    """Whether to_numpy did work the timing missed (:func:`deferred_warning`)."""
    converting = fields.get("to_numpy_s")
    return _number(converting) and converting >= max(DEFERRED_FACTOR * fields["time_median_s"],
                                                     DEFERRED_FLOOR_S)


def _cheaper_than_forward(fields, op: str) -> bool:
    return op in INCLUDES_FORWARD and fields["ratio_q3"] < CHEAPER_THAN_FORWARD


def missed_work(fields, op: str) -> bool:
    """Whether a bench record's figures leave out work the operation does
    (done in to_numpy, cached, or cheaper than the forward pass it
    includes): such a figure is no one's fastest (reports/tables.py).
    ``fields``: a record's fields, as a dict or a row of the report's frame."""
    kept = fields.get("kept_results")
    return deferred_work(fields) or (_number(kept) and kept > 0) or _cheaper_than_forward(
        fields, op)


def _seconds(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s >= 1e-3 else f"{s * 1e6:.3g} us"


def _figures_warning(fields: dict, op: str) -> str | None:
    if _cheaper_than_forward(fields, op):
        return (f"{op} timed at {fields['ratio_to_primal']:.2f}x its primal, although it "
                "includes the forward pass: either work done in prepare() or cached between "
                "calls is not in the timing, or a compiler dropped forward computations "
                "that the result does not need")
    spreads = {"time": fields["time_iqr_s"] / fields["time_median_s"],
               "ratio": (fields["ratio_q3"] - fields["ratio_q1"]) / fields["ratio_to_primal"]}
    noisy = {k: v for k, v in spreads.items() if v > SPREAD_WARNING}
    if not noisy:
        return None
    what = ", ".join(f"{k} IQR {v:.0%} of its median" for k, v in noisy.items())
    drift = round_drift(fields.get("samples_s"), fields.get("samples_per_round"))
    if "time" in noisy and drift is not None and drift - 1 > SPREAD_WARNING:
        return (f"noisy: {what}, its rounds' median times {drift:.2f}x apart: the machine's "
                "speed drifted between rounds (the ratio to the primal is paired within each)")
    return f"noisy: {what}; rerun on a quiet machine or with a larger --budget"


def round_drift(samples: list[float] | None, per_round: list[int] | None) -> float | None:
    """The largest over the smallest of the rounds' median times (``samples``
    stored round by round, ``per_round`` of them in each), or None for one
    round. In the main job's two-round bench on a slow hour, the rounds'
    medians of a cell were 1.27x apart (median over 411 cells) while the
    samples of one round spread by 12 % of their median: pooled, 28 %."""
    if not samples or not per_round or len(per_round) < 2:
        return None
    bounds = np.cumsum([0, *per_round])
    medians = [float(np.median(samples[a:b])) for a, b in zip(bounds, bounds[1:]) if b > a]
    return max(medians) / min(medians) if len(medians) > 1 and min(medians) > 0 else None


def timed_on_run_cpus(cell: Cell):
    """Where a cell's timed samples run, in ``adjointbench bench``,
    pytest-benchmark and asv alike: a CPU cell's, with the run's threads in
    this process's environment (the workers'), confined to that many CPUs
    (threads.confined_to); otherwise on any."""
    return confined_to(requested_threads(os.environ) if cell.device == "cpu" else None)


def time_cell(cell: Cell, impl: Implementation, record: Record,
              hand_back: bool = False) -> tuple[Record, object]:
    """The timing fields of one bench cell, run in this process, and what its
    last timed call returned where the harness judges it (``hand_back``),
    else None."""
    record = replace(record, threads=blas_threads())
    primal, operation = warm_pair(cell, impl)
    result = copy_arrays(operation.prepared.to_numpy(operation.result))
    made = _PRIMALS[_primal_key(cell)]  # the inputs and output shape the primal was made on
    problem = get_problem(cell.problem)
    shapes = expected_shapes(cell, problem, made.inputs, made.output_shape)
    validate_result(result, shapes, cell.dtype, cell.op, problem.differentiable)
    if cell.op == "primal":  # beside the fixed reference call: the unit compare judges it in
        primal = warm_up(reference_workload, cell.budget_s)
    timed = replace(operation, call=KeepingLast(operation.call))
    with timed_on_run_cpus(cell):
        paired = sample_paired(primal, timed, cell.budget_s)
    early = operation.early_waits + (primal.early_waits if primal is not operation else 0)
    # what the last timed call returned: the timed calls' results are right (no
    # extra call: one per round of a 0.15 s matmul JVP, 5 s of the main job's bench);
    # on the CPU its conversion is timed too (off it, a copy to the host may cost more)
    on_cpu = cell.device == "cpu"
    last, to_numpy_s = converted(operation.prepared.to_numpy, timed.call.last,
                                 CONVERSIONS if on_cpu else 1)
    record = replace(record, outcome="ok", **paired_fields(
        paired, cell.op, operation.compile_s, operation.number, early,
        to_numpy_s if on_cpu else None, kept=kept_results(cell, made.warm, operation)))
    check_reentrant(cell, cell.op, result, last)
    return record, copy_arrays(last) if hand_back else None


# What a bench cell's worker measures: the only fields of its record it supplies
MEASURED_KINDS = {**TIMING_KINDS, "primal_median_s": float, "kept_results": int,
                  "least_cores": float, "ratio_to_primal": float, "ratio_q1": float,
                  "ratio_q3": float, "threads": int, "samples_s": list,
                  "primal_samples_s": list, "reference_samples_s": list}


def bench_record(cell: Cell, measured: dict, threads: int | None = None) -> Record:
    """The record of a bench cell that ran to the end: the cell's own key
    fields, ``ok``, the measurements of :func:`time_cell` (run where the
    implementation runs, perhaps a worker) and the warning judged here, so
    that a worker can neither relabel its record nor drop its warning;
    ``threads``: the run's, which its workers were started with."""
    fields = measurements(measured, MEASURED_KINDS)
    fields["timing_warning"] = timing_warning({**fields, "device": cell.device}, cell.op,
                                              threads)
    return replace(Record.for_cell(cell, "ok"), **fields)


def merge_rounds(records: list[Record], threads: int | None = None) -> Record:
    """One record of a bench cell timed in several rounds (suites/sweep.py's
    time_in_rounds, each in fresh worker processes, with its share of the
    budget): the samples of all, pooled, and ``samples_per_round``, so that
    ``adjointbench compare`` sees how much the cell's figure moves from one
    round to the next. A cell that was not ok in a round keeps that round's
    record; rounds from different hosts (a Dask cluster) are not pooled.
    ``threads``: the run's (:func:`timing_warning`)."""
    first = records[0]
    failed = [r for r in records if r.outcome != "ok"]
    if failed or len(records) == 1 or len({r.machine for r in records}) > 1:
        return failed[0] if failed else first
    beside = "reference_samples_s" if first.op == "primal" else "primal_samples_s"
    samples = [s for r in records for s in r.samples_s]
    paired = [s for r in records for s in getattr(r, beside)]
    conversions = [r.to_numpy_s for r in records if r.to_numpy_s is not None]
    cores = max((r.cores for r in records if r.cores is not None), default=None)
    least = min((r.least_cores for r in records if r.least_cores is not None), default=None)
    fields = paired_fields(replace(paired_from_samples(samples, paired), cores=cores,
                                   least_cores=least),
                           first.op, first.compile_s,
                           first.number, sum(r.early_waits or 0 for r in records),
                           min(conversions) if conversions else None,
                           kept=sum(r.kept_results or 0 for r in records))
    fields.update({"samples_s": samples, beside: paired},  # as stored, round by round
                  rounds=sum(r.rounds for r in records),
                  samples_per_round=[len(r.samples_s) for r in records],
                  seconds=sum(r.seconds or 0.0 for r in records))
    fields["timing_warning"] = timing_warning(  # now with the rounds
        {**fields, "threads": first.threads, "device": first.device}, first.op, threads)
    return replace(first, **fields)
