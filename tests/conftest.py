import os
import sys
from pathlib import Path

import pytest

from adjointbench.reference import Oracle
from adjointbench.reference.cache import default_cache_dir
from adjointbench.suites.isolation import use_compilation_cache

# The pytest sweep runs its cells in this process: jax keeps its compilations
# in the harness's cache folder, as the isolated workers of the CLI do.
use_compilation_cache(default_cache_dir())

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(scope="session")
def oracle():
    """References a cold cache lacks computed one per core (as the CLI does)."""
    oracle = Oracle(processes=os.cpu_count() or 1)
    yield oracle
    oracle.close()


@pytest.fixture
def plugins_on_path(monkeypatch):
    """Put tests/plugins, a folder outside the project's packages, on sys.path."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield PLUGINS
    for name in [m for m in sys.modules if m.startswith(("wrong_rules", "third_party", "broken", "batch_norm", "misbehaving", "untrustworthy", "lifecycle", "drifting", "slow_cells", "threaded", "waiting"))]:
        del sys.modules[name]
