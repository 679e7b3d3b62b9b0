import sys
from pathlib import Path

import pytest

from adjointbench.reference import Oracle

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(scope="session")
def oracle():
    return Oracle()


@pytest.fixture
def plugins_on_path(monkeypatch):
    """Put tests/plugins, a folder outside the project's packages, on sys.path."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield PLUGINS
    for name in [m for m in sys.modules if m.startswith(("wrong_rules", "third_party", "broken", "batch_norm", "misbehaving", "untrustworthy", "lifecycle", "drifting"))]:
        del sys.modules[name]
