"""Reading where a worker was from faulthandler's dump (suites/stacks.py)."""

import os
from pathlib import Path

import adjointbench.suites.stacks as stacks_module
from adjointbench.suites.stacks import where

SUITES = Path(stacks_module.__file__).parent


def test_the_serving_threads_innermost_frames_outside_the_harness_are_named():
    dump = f"""Fatal Python error: Segmentation fault

Thread 0x00007f0000000001 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 324 in wait
  File "/usr/lib/python3.11/threading.py", line 1002 in _bootstrap

Current thread 0x00007f0000000002 (most recent call first):
  File "{SUITES / "timing.py"}", line 60 in call
  File "/site/plug/rules.py", line 7 in inner
  File "/site/plug/__init__.py", line 30 in run
  File "/site/plug/rules.py", line 3 in outer
  File "/site/plug/rules.py", line 1 in outermost
  File "{SUITES / "executors.py"}", line 60 in execute
  File "{SUITES / "isolation.py"}", line 130 in _serve
"""
    assert where(dump) == ("inner (rules.py:7), called from run (plug/__init__.py:30), "
                           "called from outer (rules.py:3)")


def test_no_frame_of_the_implementation_names_nothing():
    assert where("") == ""
    assert where("Thread 0x1 (most recent call first):\n  <no Python frame>\n") == ""


def _files_a_worker_holds(stacks_descriptor, output_descriptor, answer) -> None:
    """In a spawned process: take the two files as a worker does, write to
    each, and say whether a process it starts would inherit the stack file."""
    import os

    from adjointbench.suites.relay import capture_output_to
    from adjointbench.suites.stacks import write_stacks_to

    write_stacks_to(stacks_descriptor)
    capture_output_to(output_descriptor)
    print("printed by the worker")
    os.write(stacks_descriptor, b"a stack line\n")
    answer.send(os.get_inheritable(stacks_descriptor))


def test_a_worker_gets_its_files_by_descriptor_and_keeps_the_stack_file_to_itself():
    """The files cross to the worker with no name; what it writes reaches the
    harness's side; a process it starts (code under test, os.system) does
    not inherit the stack file."""
    import io
    import multiprocessing

    from adjointbench.suites.relay import OutputRelay
    from adjointbench.suites.stacks import StackFile

    context = multiprocessing.get_context("spawn")
    stacks, output = StackFile(), OutputRelay("probe")
    ours, theirs = context.Pipe()
    process = context.Process(target=_files_a_worker_holds,
                              args=(stacks.descriptor, output.descriptor, theirs))
    process.start()
    try:
        inheritable = ours.recv()
        process.join(30)
        assert process.exitcode == 0
        assert stacks.read() == "a stack line\n"
        shown = io.StringIO()
        output.relay(shown)
        assert shown.getvalue() == "[probe] printed by the worker\n"
        assert inheritable is False
    finally:
        stacks.close()
        output.close()


def test_a_calls_output_is_relayed_as_its_lines_end_and_capped_across_relays():
    """While a call runs, complete lines only; after it, the rest and how much
    was held back; the cap counts the call's lines, however many relays."""
    import io

    from adjointbench.suites.relay import RELAYED_LINES, OutputRelay

    output = OutputRelay("probe")
    written = []

    def write(text):  # as the worker does, at the file's end
        written.append(text)
        os.write(output._file.fileno(), text.encode())

    try:
        shown = io.StringIO()
        write("one\ntw")
        output.relay_so_far(shown)
        assert shown.getvalue() == "[probe] one\n"
        write("o\n" + "".join(f"line {i}\n" for i in range(RELAYED_LINES)) + "unended")
        output.relay_so_far(shown)
        output.relay(shown)
        lines = shown.getvalue().splitlines()
        assert lines[:RELAYED_LINES] == ["[probe] one", "[probe] two"] + [
            f"[probe] line {i}" for i in range(RELAYED_LINES - 2)]
        size = len("".join(written).encode())
        assert lines[RELAYED_LINES:] == [f"[probe] ... its output went on: {size} bytes in all, "
                                         f"of which the first {RELAYED_LINES} lines are shown"]
        after = io.StringIO()  # the next call starts afresh
        write("again\n")
        output.relay(after)
        assert after.getvalue() == "[probe] again\n"
    finally:
        output.close()
