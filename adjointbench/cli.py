"""The ``adjointbench`` command line.

    adjointbench list [--json]
    adjointbench check [--impl numpy,naive] [--problem linear_solve] [--op vjp]
                       [--method adjoint] [--dtype float32] [--size 8,16] [--device cpu]
                       [--quick] [--out DIR [--resume | --retry]] [--timeout S]
                       [--threads 1] [--in-process] [--workers N]
                       [--executor dask [--scheduler tcp://HOST:PORT]]
    adjointbench bench [the same filters] [--threads 1] [--budget S] [--quick] [--out DIR]
    adjointbench report --results DIR [--against OLD] [--out DIR] [--benchmark-json F] [--asv DIR]
    adjointbench compare OLD NEW [--threshold 1.10] [--markdown | --json]
    adjointbench merge OUT DIR...  # results of several machines in one folder
    adjointbench run [--out results] [--resume | --retry] [--budget 0.05]  # check --quick,
                                                                # bench --quick, report

``check`` runs the correctness sweep (primitives' operations, and the gradient
methods of the sensitivity problems) and writes ``DIR/results.jsonl``, one
JSON object per cell, appended and synced as each cell finishes. Cells run in
a worker process under ``--timeout``: a hang becomes ``timeout``, a dead
worker ``crashed``, and the sweep goes on. ``--resume`` skips the cells
already in DIR (damaged lines and duplicates are dropped and reported);
``--retry`` also runs the timeout, crashed and error cells again. One run
holds a results folder at a time (README: Reliability). Each cell is
compared with its implementation's expected-outcome manifest
(``impls/expected/<impl>.json``, or a plug-in's ``expected_outcomes``).
Exit status: 0 when every cell did what was expected, 1 when one did not (a
new mismatch, error, timeout or crash, or a listed failure that now passes;
without a manifest, any failure; with --resume, earlier cells count too), 2
for bad input or a harness fault (an unknown name, a value out of range, an
unwritable folder, a folder in use, existing results without --resume), 130
when interrupted.

``bench`` times each operation against its primal (suites/timing.py) and
appends to the same table; ``report`` renders a results folder as
index.html, summary.md and plots (with ``--against OLD``, a comparison
section too); ``compare`` lists what changed between two results folders
(suites/comparison.py) and exits 1 when a cell regressed (a new failure, or
significantly slower than ``--threshold``); ``merge`` combines the folders of
several machines (suites/merge.py); ``run`` is the main job. ``--workers N``
runs N cells at once; ``--executor dask`` runs them as tasks of a Dask
cluster (suites/distributed.py).
"""

# This module stays light on purpose: every isolated worker process (started
# by multiprocessing's spawn) re-imports the parent's main module, which is
# this one or the console script that imports it. The commands, and the
# oracle, sweep and report modules they need, load in the parent only.

import sys


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status (see above). Without ``argv`` this
    is the program (the console script, ``python -m adjointbench``): the
    process then adopts what its workers leave behind
    (adjointbench.lifetime's adopt_orphans)."""
    from adjointbench.faults import exit_if_importing_parents_script

    exit_if_importing_parents_script()  # before the command takes a folder or starts anything
    if argv is None:
        from adjointbench.lifetime import adopt_orphans
        adopt_orphans()
    from adjointbench.commands import main as run

    return run(argv)


def __getattr__(name: str):
    """The commands module's names (``build_parser``), imported when asked for."""
    if name.startswith("__"):  # the import system's questions (``__path__``): not a package
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from adjointbench import commands

    return getattr(commands, name)


if __name__ == "__main__":
    sys.exit(main())
