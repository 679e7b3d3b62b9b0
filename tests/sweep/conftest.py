import os

import pytest

from adjointbench.reference import Oracle


@pytest.fixture(scope="session")
def sweep_oracle():
    oracle = Oracle(processes=os.cpu_count() or 1)
    yield oracle
    oracle.close()
