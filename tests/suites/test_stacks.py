"""Reading where a worker was from faulthandler's dump (suites/stacks.py)."""

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
