"""Processes the harness starts end with it (adjointbench/lifetime.py)."""

import subprocess
import sys
import time

import pytest

posix = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX parent and its child")

# B: started by A, which exits at once; B looks for its parent only after A is gone
STARTS_LATE = """
import os, sys, time
from adjointbench.lifetime import end_with_parent
time.sleep(1.0)
def say(what):
    with open(sys.argv[1] + ".part", "w") as f:
        f.write(what)
    os.replace(sys.argv[1] + ".part", sys.argv[1])  # whole, or not there
def end():
    say("ended")
    os._exit(7)
end_with_parent(end, int(sys.argv[2]), kernel=False)
time.sleep(60)
say("outlived its parent")
"""
STARTER = """
import os, subprocess, sys
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], str(os.getpid())])
"""


@posix
def test_a_process_whose_parent_died_while_it_started_ends_at_once(tmp_path):
    """The parent it is told of is gone before it looks: it has a new parent
    already, and it ends rather than wait for that one to die too."""
    said = tmp_path / "said"
    subprocess.run([sys.executable, "-c", STARTER, STARTS_LATE, str(said)], check=True,
                   timeout=30)
    deadline = time.time() + 20
    while time.time() < deadline and not said.exists():
        time.sleep(0.05)
    assert said.read_text() == "ended"


def test_reaping_what_was_ended_never_waits_on_one_that_lives_on():
    """A process the kill could not end (a set-user-ID one) is waited for at
    most REAP_S, not for ever; one that ended is collected, no zombie left."""
    import os
    import signal

    from adjointbench.lifetime import REAP_S, _reap

    living = subprocess.Popen(["sleep", "30"])
    ended = subprocess.Popen(["sleep", "30"])
    os.kill(ended.pid, signal.SIGKILL)
    try:
        start = time.monotonic()
        _reap([living.pid, ended.pid])
        assert time.monotonic() - start < REAP_S + 1.0
        assert living.poll() is None  # still running, still this process's child
        with pytest.raises(ChildProcessError):
            os.waitpid(ended.pid, os.WNOHANG)  # already collected
    finally:
        living.kill()
        living.wait()
        ended.wait()  # its status was taken above: Popen settles for none
