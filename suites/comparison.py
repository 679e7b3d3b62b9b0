"""Two result sets side by side: what ``adjointbench compare OLD NEW`` reports.

Cells are matched by :func:`~adjointbench.suites.results.record_key`. For
each matched pair:

- an **outcome** change is a regression when the new outcome is a failure
  and the old one was not (ok -> mismatch), an improvement the other way
  round, and otherwise a plain change (ok -> unsupported);
- a **time** change (bench cells, ok in both) is judged on what a busy or
  different machine cannot fake: for an operation, its cost over the primal,
  sample by sample (the two were timed in alternation, so a machine that is
  slower for both cancels out); for a primal, its time over a fixed reference
  call timed in alternation with it (suites/timing.py's
  ``reference_workload``; records without one: over the machine's drift, the
  median new/old time of all primals, :func:`machine_drift`). It
  is a regression only when all five hold: that change exceeds the
  threshold, a Mann-Whitney U test on the two sets of stored samples rejects
  "same distribution" at ``ALPHA``, the new lower quartile lies above the
  old upper quartile, and the plain median time grew beyond the threshold
  too, both as measured and over the machine's drift (a primal or reference
  call that alone moved shifts the paired figure of an operation that did
  not; a machine whose arithmetic got quicker while its memory did not
  shifts a memory-bound primal's time over the reference call); the
  threshold is raised by the two runs' own noise, seen on the side a
  regression cannot reach (:func:`run_to_run_noise`: the cells that got
  quicker, at most 50 %), and again by how far apart the cell's own rounds
  put it within each run (:func:`round_spread`; a bench run times each cell
  in two rounds, a sweep apart, in fresh worker processes), two sources of
  noise that compound. Improvements mirror this. A time change of a
  cell during which the machine itself moved (its reference call, or the
  primal timed beside an operation, changed between the runs by more than
  DISTURBED times what the other cells' did: :func:`disturbances`) is
  "unsettled", listed to be rerun and never a regression; so is every time
  change when either run was timed on a busy machine (its environment.json
  says other processes kept its cores busy: :func:`machine_was_loaded`),
  where a hog slowed softmax's primal 2.4x over its reference call; and so
  is a change that the usual spread between the two rounds of the cells
  judged as it is (:func:`process_noise`) would cover in place of the
  cell's own: a cell's time can be bimodal across worker processes, and its
  two rounds in each run can fall in one mode by chance. So is a cell
  whose timed calls kept more cores busy in one run than in the other
  (:func:`cores_apart`): a JAX timed on 1.9 cores before its pool was sized
  to the run's threads was 2x "slower" on one, and no code had changed.
  Records without stored samples (older runs) are judged by the quartiles
  they carry alone. Two
  runs of the same code on this shared machine differ by 20 % in absolute
  time, which is why absolute times alone would not do.

Cells present on one side only are listed as new or vanished, except those
of an implementation the new run left out because it would not load
(environment.json's ``not_loaded``): each that ran before is a regression.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from adjointbench.suites.environment import machine_was_loaded, read_environment
from adjointbench.suites.results import FAILURES, Record, ResultsFile, record_key, without_duplicates
from adjointbench.suites.timing import CORES_MARGIN

DEFAULT_THRESHOLD = 1.10
ALPHA = 0.01
MAX_NOISE = 1.5  # the run-to-run allowance never exceeds 50 %
MIN_CELLS_FOR_NOISE = 10  # on the side it is estimated from
KINDS = ("regression", "improvement", "unsettled", "changed", "new", "vanished")
DISTURBED = 1.25  # a cell's yardstick moved this much more than the others': the machine moved


@dataclass(frozen=True)
class Change:
    """One cell that differs between the two result sets."""

    cell: str          # problem/impl/op, size, dtype, device, method
    kind: str          # one of KINDS
    what: str          # "outcome", "time" or "presence"
    old_outcome: str | None = None
    new_outcome: str | None = None
    old_median_s: float | None = None
    new_median_s: float | None = None
    ratio: float | None = None      # new over old median time
    p_value: float | None = None    # Mann-Whitney U, two-sided, on what is judged
    change: float | None = None     # what is judged: cost over the primal (drift for a primal)
    disturbed: float | None = None  # an unsettled cell's yardstick against the others' (disturbances)
    busy: str | None = None  # an unsettled cell's run(s) timed on a busy machine: "old", "new", "both"
    rounds: float | None = None  # an unsettled cell's change within its kind's round spread
    cores: tuple[float, float] | None = None  # an unsettled cell's cores, old and new (cores_apart)


class NoRecords(ValueError):
    """A results folder to compare holds no record."""


@dataclass(frozen=True)
class Comparison:
    old: str
    new: str
    threshold: float
    matched: int
    changes: tuple[Change, ...]
    machines: tuple[str | None, str | None]
    drift: float = 1.0  # the new run's machine over the old one's (machine_drift)
    noise: float = 1.0  # run_to_run_noise: a slowdown counts beyond threshold * noise
    noise_quicker: float = 1.0  # and a speed-up beyond threshold * noise_quicker
    busy: tuple[str | None, str | None] = (None, None)  # why each run's machine was busy, or None
    in_process: tuple[bool, bool] = (False, False)  # each run's rounds shared one process
    rounds: float = 1.0  # process_noise: the largest usual round spread of a kind of cell
    damaged: tuple[int, int] = (0, 0)  # lines of each run's results.jsonl that are no record
    not_loaded: dict = field(default_factory=dict)  # the new run's left-out implementations

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.kind == "regression"]

    def count(self, kind: str) -> int:
        return sum(c.kind == kind for c in self.changes)

    def to_json(self) -> dict:
        return {"old": self.old, "new": self.new, "threshold": self.threshold,
                "matched": self.matched, "machines": list(self.machines), "drift": self.drift,
                "noise": self.noise, "noise_quicker": self.noise_quicker,
                "busy": list(self.busy), "in_process": list(self.in_process),
                "rounds": self.rounds, "damaged": list(self.damaged),
                "not_loaded": dict(self.not_loaded),
                "summary": {k: self.count(k) for k in KINDS},
                "changes": [asdict(c) for c in self.changes]}


def cell_label(r: Record) -> str:
    method = f" by {r.method}" if r.method else ""
    device = "" if r.device == "cpu" else f" on {r.device}"
    return f"{r.suite} {r.problem}/{r.impl}/{r.op}{method} n={r.size} {r.dtype}{device}"


def _records(folder: Path, machine: str | None, side: str) -> tuple[dict[tuple, Record], int]:
    """Each cell's record, naming its machine (its own, else the folder's),
    and how many lines of the folder's results.jsonl are no record; raises
    NoRecords for a folder of none (``side``: OLD or NEW, for the message)."""
    records, damaged = ResultsFile(folder).read()
    if not records:
        raise NoRecords(f"{side} {str(folder)!r} holds no records ({damaged} damaged line(s) "
                        "in its results.jsonl): give the --out folder of a check, bench or "
                        "run that finished a cell")
    return {record_key(r): replace(r, machine=r.machine or machine)
            for r in without_duplicates(records)[0]}, damaged


def _where(old: Record | None, new: Record | None, several: bool) -> str:
    """The machine(s) of a cell, where the results span several."""
    machines = [r.machine for r in (old, new) if r is not None]
    if not several or not machines:
        return ""
    return f" [{machines[0]}]" if len(set(machines)) == 1 else f" [{machines[0]} -> {machines[1]}]"


def _machine(environment: dict) -> str | None:
    if environment.get("machine"):
        return str(environment["machine"])
    cpu, cores = environment.get("cpu"), environment.get("cpu_count")
    return f"{cpu}, {cores} cores" if cpu else None


def outcome_change(old: Record, new: Record) -> str | None:
    """"regression", "improvement", "changed", or None when the outcome holds."""
    if old.outcome == new.outcome:
        return None
    if new.outcome in FAILURES and old.outcome not in FAILURES:
        return "regression"
    if old.outcome in FAILURES and new.outcome not in FAILURES:
        return "improvement"
    return "changed"


def _quartiles(samples) -> tuple[float, float]:
    q1, q3 = np.percentile(samples, [25, 75])
    return float(q1), float(q3)


def _paired(samples, unit) -> list[float] | None:
    if samples and unit:
        return [s / u for s, u in zip(samples, unit) if u > 0]
    return None


def _judged_samples(r: Record, drift: float) -> list[float] | None:
    """What a time change is judged on, pair by pair: for an operation, its
    cost over the primal; for a primal, its time over the fixed reference call
    timed beside it (a machine slower for both cancels out). A primal recorded
    without the reference (older runs) falls back to its time over the run's
    drift."""
    if r.op != "primal":
        return _paired(r.samples_s, r.primal_samples_s)
    if r.reference_samples_s:
        return _paired(r.samples_s, r.reference_samples_s)
    return [t / drift for t in r.samples_s] if r.samples_s else None


def _carried_quartiles(r: Record, drift: float) -> tuple[float, float, float]:
    """(q1, median, q3) of what is judged, from the fields a record without
    stored samples carries."""
    if r.op != "primal":
        median = r.ratio_to_primal or 0.0
        return (r.ratio_q1 or median), median, (r.ratio_q3 or median)
    median, half = r.time_median_s / drift, (r.time_iqr_s or 0.0) / 2 / drift
    return median - half, median, median + half


@dataclass(frozen=True)
class TimeJudgement:
    """A timed cell in both runs: new/old median time, the judged change and
    its p-value, whether the two samples' quartiles no longer overlap, and
    the new/old median time over the machine's drift.

    A change counts only when every view agrees: the paired figure (immune
    to a machine that slowed down for everything), the plain time over the
    drift (immune to a primal, or a reference call, that alone moved while
    the operation did not) and the plain time as measured (immune to a
    drift or reference that moved with the machine's arithmetic while a
    memory-bound cell held: measured here, the reference call and most
    primals 24 % quicker in one run, a 1024 x 1024 matvec unchanged). A real
    change moves all three; a machine that got quicker by as much as a
    change hides it, which is the side this errs on."""

    ratio: float
    change: float
    p_value: float | None
    apart_slower: bool
    apart_faster: bool
    absolute: float = 1.0
    spread: float = 1.0  # round_spread: the larger of the two runs'
    round_spreads: tuple[float, ...] = ()  # each run's that timed the cell in rounds

    def kind(self, threshold: float, quicker_threshold: float | None = None) -> str | None:
        """"regression" beyond ``threshold``, "improvement" beyond
        ``quicker_threshold`` (default: the same), or None."""
        significant = self.p_value is None or self.p_value < ALPHA
        views = (self.change, self.absolute, self.ratio)
        if min(views) > threshold and significant and self.apart_slower:
            return "regression"
        if (max(views) < 1 / (quicker_threshold or threshold) and significant
                and self.apart_faster):
            return "improvement"
        return None


def judge_time(old: Record, new: Record, drift: float = 1.0) -> TimeJudgement:
    """Two ok bench records of one cell; ``drift`` (:func:`machine_drift`)
    applies only to primals without a reference call."""
    ratio = new.time_median_s / old.time_median_s
    before, after = _judged_samples(old, 1.0), _judged_samples(new, drift)
    if before and after:
        from scipy.stats import mannwhitneyu

        p = float(mannwhitneyu(after, before, alternative="two-sided").pvalue)
        change = float(np.median(after) / np.median(before))
        (old_q1, old_q3), (new_q1, new_q3) = _quartiles(before), _quartiles(after)
    else:  # records without samples (older runs): their quartiles alone
        p = None
        old_q1, old_median, old_q3 = _carried_quartiles(old, 1.0)
        new_q1, new_median, new_q3 = _carried_quartiles(new, drift)
        change = new_median / old_median if old_median else float("nan")
    spreads = tuple(round_spread(r, judged) for r, judged in ((old, before), (new, after))
                    if _in_rounds(r, judged))
    return TimeJudgement(ratio, change, p, new_q1 > old_q3, new_q3 < old_q1, ratio / drift,
                         max(spreads, default=1.0), spreads)


def _in_rounds(r: Record, judged: list[float] | None) -> bool:
    """Whether ``judged`` holds the samples of two or more rounds, as recorded."""
    counts = r.samples_per_round or []
    return len(counts) >= 2 and bool(judged) and sum(counts) == len(judged)


def round_spread(r: Record, judged: list[float] | None) -> float:
    """How far apart one run's rounds put the cell (suites/sweep.py's
    time_in_rounds): the largest over the smallest of their medians of what
    is judged; 1 for one round. The rounds ran the same code in the same
    run, so what separates them is noise that a change between runs must
    exceed: on this shared machine a cache-bound cell's speed drifts from
    minute to minute more than its samples within a round show."""
    if not _in_rounds(r, judged):
        return 1.0
    bounds = np.cumsum([0, *r.samples_per_round])
    medians = [float(np.median(judged[a:b])) for a, b in zip(bounds[:-1], bounds[1:])]
    return max(medians) / min(medians) if min(medians) > 0 else 1.0


def time_change(old: Record, new: Record, threshold: float,
                drift: float = 1.0) -> tuple[str | None, float, float, float | None]:
    """(kind or None, new/old median time, the judged change, p-value or None)."""
    judged = judge_time(old, new, drift)
    return judged.kind(threshold), judged.ratio, judged.change, judged.p_value


def run_to_run_noise(changes: list[float], side: str = "slower") -> float:
    """The factor by which the two runs' unchanged cells differ anyway, for
    judging changes to the ``side`` "slower" (regressions) or "quicker":
    the 90th percentile of |log change| over the timed cells that moved the
    other way, which a real regression (or improvement) cannot reach, so
    that many cells slowed for real do not pass for noise; at most
    MAX_NOISE, and 1 with fewer than MIN_CELLS_FOR_NOISE such cells. Two
    runs of the same code here differ by 3-5 % at that percentile on a good
    day and by 20 % on a bad one (README)."""
    finite = [c for c in changes if c > 0 and math.isfinite(c)]
    other_way = [c for c in finite if (c < 1 if side == "slower" else c > 1)]
    if len(other_way) < MIN_CELLS_FOR_NOISE:
        return 1.0
    logs = [abs(math.log(c)) for c in other_way]
    return min(math.exp(float(np.percentile(logs, 90))), MAX_NOISE)


def process_noise(judged: list[TimeJudgement | None], primal: list[bool]) -> list[float]:
    """For each cell, how far apart the rounds of one run usually put the
    cells judged as it is (primals over their reference call, operations
    over their primal; ``primal`` says which each is): the 90th percentile of
    those cells' round spreads, in either run (of every cell's where fewer
    than MIN_CELLS_FOR_NOISE such spreads exist); at most MAX_NOISE, and 1
    with fewer than MIN_CELLS_FOR_NOISE in all. Each run's rounds ran the
    same code, so no change between the runs can raise it. It is the floor
    of each cell's own spread: a primal and its reference call are separate
    calls, each of whose times can be bimodal across worker processes, and a
    cell's two rounds can fall in one mode by chance. Seen here between two
    runs of the same code: numpy's matmul primal at n = 8 took 1.42 and 1.45
    us in the two rounds of one run and 2.46 and 2.18 us in those of the next
    (1.27x over the reference call), while the primals' rounds were up to
    1.41x apart in each run, and the operations' (their cost over the primal
    timed beside them) mostly within 1.05x."""
    spreads = [(p, s) for j, p in zip(judged, primal) if j is not None for s in j.round_spreads]
    if len(spreads) < MIN_CELLS_FOR_NOISE:
        return [1.0] * len(judged)

    def floor(kind: bool) -> float:
        alike = [s for p, s in spreads if p == kind]
        pool = alike if len(alike) >= MIN_CELLS_FOR_NOISE else [s for _, s in spreads]
        return min(float(np.percentile(pool, 90)), MAX_NOISE)
    floors = {kind: floor(kind) for kind in (True, False)}
    return [floors[p] if j is not None else 1.0 for j, p in zip(judged, primal)]


def machine_drift(pairs: list[tuple[Record, Record]]) -> float:
    """How much slower the new run's machine was: the median new/old time of
    the primals both runs timed (1 with fewer than three of them, where one
    changed primal would pass for the machine)."""
    ratios = [new.time_median_s / old.time_median_s for old, new in pairs
              if new.op == "primal" and _timed(old) and _timed(new)]
    return float(np.median(ratios)) if len(ratios) >= 3 else 1.0


def _timed(r: Record) -> bool:
    return r.suite == "bench" and r.outcome == "ok" and bool(r.time_median_s)


def _yardstick(r: Record) -> float | None:
    """The fixed work timed beside a cell: a primal's reference call, an
    operation's primal (median seconds), or None."""
    samples = r.reference_samples_s if r.op == "primal" else r.primal_samples_s
    return float(np.median(samples)) if _timed(r) and samples else None


def disturbances(pairs: list[tuple[Record, Record]]) -> list[float]:
    """For each pair, how far the machine moved while that cell was timed,
    in one run or the other (1 = not at all): the new/old time of the fixed
    work timed beside it (:func:`_yardstick`) over the median of that ratio
    across all the cells, either way round. The yardstick is the same work in
    both runs, and a machine uniformly slower in one run moves every cell's
    alike; one cell's yardstick moving alone means the machine changed speed
    during that cell (a neighbour, a frequency step), which moved the cell
    too, and no statistic within the cell can see it."""
    ratios = []
    for old, new in pairs:
        before, after = _yardstick(old), _yardstick(new)
        ratios.append(after / before if before and after else None)
    known = [r for r in ratios if r]
    if len(known) < 3:
        return [1.0] * len(pairs)
    usual = float(np.median(known))
    return [max(r / usual, usual / r) if r else 1.0 for r in ratios]


def cores_apart(old: Record, new: Record) -> tuple[float, float] | None:
    """The cores the two records' timed calls kept busy (suites/timing.py's
    Cores), where both are known and more than CORES_MARGIN apart: one run
    timed the cell on more cores than the other (another --threads, a pool
    that ignored it, an implementation's own threads), so its times are not
    like for like; else None. CPU cells only (off it a host thread may spin)."""
    if old.device != "cpu" or old.cores is None or new.cores is None:
        return None
    return (old.cores, new.cores) if abs(new.cores - old.cores) > CORES_MARGIN else None


def compare_pair(old: Record, new: Record, threshold: float,
                 judged: TimeJudgement | None = None, where: str = "",
                 quicker_threshold: float | None = None, disturbed: float = 1.0,
                 busy: str | None = None, rounds: float = 1.0) -> Change | None:
    """The change of one matched cell, or None; ``judged`` is its time
    judgement when both records are timed, ``threshold`` the slowdown that
    counts and ``quicker_threshold`` the speed-up (noise allowances and the
    cell's own round spread included; default the same), ``where`` its
    machines. A time change of a cell ``disturbed`` beyond DISTURBED
    (:func:`disturbances`), of a comparison whose ``busy`` run(s) ("old",
    "new", "both") were timed on a busy machine, one that the ``rounds``
    spread (:func:`process_noise`, the usual spread of the cells judged as
    it is) would cover in place of the cell's own, or one timed on more
    cores in one run than in the other (:func:`cores_apart`) is
    "unsettled": reported, to be rerun, never a regression."""
    label = cell_label(new) + where
    kind = outcome_change(old, new)
    if kind:
        return Change(label, kind, "outcome", old.outcome, new.outcome)
    if judged is not None and (kind := judged.kind(threshold, quicker_threshold)):
        moved = disturbed > DISTURBED
        widen = max(rounds / judged.spread, 1.0)
        modal = widen > 1.0 and judged.kind(threshold * widen,
                                             (quicker_threshold or threshold) * widen) is None
        cores = cores_apart(old, new)
        return Change(label, "unsettled" if moved or busy or modal or cores else kind, "time",
                      old.outcome, new.outcome, old.time_median_s, new.time_median_s,
                      judged.ratio, judged.p_value, judged.change, disturbed if moved else None,
                      busy, rounds if modal else None, cores)
    return None


def compare_folders(old: str | Path, new: str | Path,
                    threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Every difference between two result folders, regressions first."""
    old, new = Path(old), Path(new)
    environments = (read_environment(old), read_environment(new))
    machines = tuple(_machine(e) for e in environments)
    (before, damaged_old), (after, damaged_new) = (_records(old, machines[0], "OLD"),
                                                   _records(new, machines[1], "NEW"))
    pairs = [(before[k], after[k]) for k in before if k in after]
    drift = machine_drift(pairs)
    disturbed = disturbances(pairs)
    judged = [judge_time(a, b, drift) if _timed(a) and _timed(b) else None for a, b in pairs]
    timed_changes = [j.change for j in judged if j is not None]
    noise = run_to_run_noise(timed_changes, "slower")
    noise_quicker = run_to_run_noise(timed_changes, "quicker")
    floors = process_noise(judged, [a.op == "primal" for a, _ in pairs])
    several = len({r.machine for r in [*before.values(), *after.values()]}) > 1
    spread = lambda j: j.spread if j is not None else 1.0
    busy = tuple(machine_was_loaded(e) for e in environments)
    which = _busy_runs(busy)
    changes = [compare_pair(a, b, threshold * noise * spread(j), j, _where(a, b, several),
                            threshold * noise_quicker * spread(j), d, which, f)
               for (a, b), j, d, f in zip(pairs, judged, disturbed, floors)]
    changes += [Change(cell_label(after[k]) + _where(None, after[k], several), "new",
                       "presence", new_outcome=after[k].outcome)
                for k in after if k not in before]
    unloaded = environments[1].get("not_loaded") or {}
    changes += [_vanished(before[k], _where(before[k], None, several), unloaded)
                for k in before if k not in after]
    ordered = sorted((c for c in changes if c), key=lambda c: (KINDS.index(c.kind), c.cell))
    return Comparison(str(old), str(new), threshold, len(pairs), tuple(ordered),
                      machines, drift, noise, noise_quicker, busy,
                      tuple(e.get("isolated") is False for e in environments),  # --in-process
                      max(floors, default=1.0), (damaged_old, damaged_new),
                      {name: reason for name, reason in unloaded.items()
                       if any(r.impl == name for r in before.values())})


def _vanished(old: Record, where: str, unloaded: dict) -> Change:
    """A cell of the old run only: a regression where its implementation
    would not load in the new run and the cell had run (it vanished, told
    as no failure, when a plug-in broke at import); else vanished."""
    if old.impl in unloaded and old.outcome != "unsupported":
        return Change(cell_label(old) + where, "regression", "outcome", old_outcome=old.outcome,
                      new_outcome="not loaded")
    return Change(cell_label(old) + where, "vanished", "presence", old_outcome=old.outcome)


def _busy_runs(busy: tuple[str | None, str | None]) -> str | None:
    """"old", "new" or "both": the runs timed on a busy machine; None when neither."""
    old, new = (reason is not None for reason in busy)
    return "both" if old and new else "old" if old else "new" if new else None


# --- output ---

def describe_change(c: Change) -> str:
    if c.what == "time":
        p = "" if c.p_value is None else f", p={c.p_value:.1g}"
        judged = ("time over the reference call" if c.cell.split()[1].endswith("/primal")
                  else "cost over the primal")
        moved = ("" if c.disturbed is None else f"; the machine moved while it was timed "
                 f"(its {'reference call' if judged.startswith('time') else 'primal'} "
                 f"moved {c.disturbed:.2f}x more than the other cells'): rerun it to judge")
        if c.rounds:
            moved += (f"; within the usual spread between one run's two rounds for the cells "
                      f"judged as it is ({c.rounds:.2f}x): its rounds may have fallen in one "
                      "mode of a time that differs between processes; rerun it to judge")
        if c.busy:
            moved += (f"; {'both runs were' if c.busy == 'both' else f'the {c.busy} run was'} "
                      "timed on a busy machine: rerun on a quiet one to judge")
        if c.cores:
            moved += (f"; its timed calls kept {c.cores[0]:.2f} cores busy in the old run and "
                      f"{c.cores[1]:.2f} in the new: not like for like; rerun both with the "
                      "same --threads to judge")
        return (f"{c.ratio:.2f}x time ({format_seconds(c.old_median_s)} -> "
                f"{format_seconds(c.new_median_s)}); {judged} {c.change:.2f}x{p}{moved}")
    if c.what == "outcome":
        return f"{c.old_outcome} -> {c.new_outcome}"
    return c.new_outcome or c.old_outcome or ""


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def summary_line(comparison: Comparison) -> str:
    counts = ", ".join(f"{comparison.count(k)} {k}" for k in KINDS)
    return (f"{comparison.matched} cells in both; {counts} "
            f"(a slowdown counts beyond {comparison.threshold:.2f}x times the runs' own "
            f"noise {comparison.noise:.2f}x, a speed-up beyond {comparison.threshold:.2f}x "
            f"times {comparison.noise_quicker:.2f}x, each also times the cell's own spread "
            f"between its rounds, at p < {ALPHA}; one within the usual spread of the rounds of "
            f"the cells judged as it is, up to {comparison.rounds:.2f}x, is unsettled; machine "
            f"drift {comparison.drift:.2f}x)")


def notes(comparison: Comparison) -> list[str]:
    """What the reader must know before believing the time changes: runs from
    different machines, runs timed on a busy one, runs whose bench rounds
    shared one process."""
    found = []
    old, new = comparison.machines
    if old and new and old != new:
        found.append(f"the two runs come from different machines ({old} and {new}): times "
                     "differ by machine too")
    for side, reason in zip(("old", "new"), comparison.busy):
        if reason:
            found.append(f"the {side} run: {reason}; its time changes are listed as unsettled, "
                         "never as regressions")
    for name, reason in comparison.not_loaded.items():
        found.append(f"{name} did not load in the new run ({reason}): each of its cells that "
                     "ran in the old one is a regression")
    for side, damaged in zip(("old", "new"), comparison.damaged):
        if damaged:
            found.append(f"the {side} run's results.jsonl has {damaged} damaged line(s) (cut "
                         "short, or not a record), left out: their cells, if any, count as "
                         f"{'vanished' if side == 'old' else 'new'}")
    for side, one_process in zip(("old", "new"), comparison.in_process):
        if one_process:
            found.append(f"the {side} run timed its rounds in one process (--in-process), so "
                         "they hide the noise between processes: a change of a microsecond "
                         "cell may be that; bench without --in-process to judge")
    return found


def to_text(comparison: Comparison) -> str:
    lines = [f"compare {comparison.old} -> {comparison.new}", summary_line(comparison)]
    lines += [f"note: {note}" for note in notes(comparison)]
    width = max((len(c.cell) for c in comparison.changes), default=0)
    for c in comparison.changes:
        lines.append(f"  {c.kind:<11} {c.cell:<{width}}  {describe_change(c)}")
    return "\n".join(lines)


def to_markdown(comparison: Comparison) -> str:
    """A pull-request comment: the summary, then one table row per change."""
    verdict = (f"**{len(comparison.regressions)} regression(s)**" if comparison.regressions
               else "**no regression**")
    lines = [f"### adjointbench: {verdict}", "", summary_line(comparison), ""]
    for note in notes(comparison):
        lines += [f"> {note}", ""]
    if comparison.changes:
        lines += ["| change | cell | what | old -> new |", "|---|---|---|---|"]
        lines += [f"| {c.kind} | `{c.cell}` | {c.what} | {describe_change(c)} |"
                  for c in comparison.changes]
    return "\n".join(lines) + "\n"


__all__ = ["ALPHA", "Change", "Comparison", "DEFAULT_THRESHOLD", "NoRecords", "compare_folders",
           "to_markdown", "to_text"]
