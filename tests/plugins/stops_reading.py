"""An implementation whose worker stops itself (SIGSTOP) once it has
answered and waits for the next request, and a declared problem whose
requests (200,000 float64 inputs, 1.6 MB) are larger than the pipe holds:
the harness's send of the next one cannot finish (tests/suites/test_robustness.py)."""

import multiprocessing
import os
import signal
import sys
import threading
import time

import numpy as np

from adjointbench import declare_problem
from adjointbench.impls.numpy import NumpyImplementation
from adjointbench.impls.numpy.elementwise import diagonal_rule

problem = declare_problem("wide_sin", inputs=("x",), sizes=(200_000,), dtypes=("float64",),
                          generate=lambda size, rng: {"x": rng.uniform(-2.0, 2.0, size)},
                          float64_primal=np.sin, description="sin x, 200,000 entries (test)")


def _stop_once_waiting(main: int) -> None:
    """SIGSTOP this process once its main thread waits on the pipe (in
    multiprocessing's _recv), that is, after it answered."""
    while True:
        frame = sys._current_frames().get(main)
        if frame is not None and frame.f_code.co_name == "_recv":
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        time.sleep(0.001)


class StopsReading(NumpyImplementation):
    name = "stops_reading"
    rules = {**NumpyImplementation.rules,
             "wide_sin": diagonal_rule(np.sin, lambda x, y: np.cos(x), lambda x, y: -y)}
    watching = False

    def prepare(self, task):
        # only in a worker (a spawned process): loaded in-process, it would stop
        # whatever process loaded it when that waits on a pipe
        if not StopsReading.watching and multiprocessing.parent_process() is not None:
            StopsReading.watching = True
            threading.Thread(target=_stop_once_waiting, args=(threading.main_thread().ident,),
                             daemon=True).start()
        return super().prepare(task)


implementation = StopsReading()
