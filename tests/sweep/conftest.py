import pytest

from adjointbench.reference import Oracle


@pytest.fixture(scope="session")
def sweep_oracle():
    return Oracle()
