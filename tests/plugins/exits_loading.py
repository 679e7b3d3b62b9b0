"""A plug-in that ends its worker while loading, with the status the harness
reads as "the parent's script starts a sweep on import" (adjointbench/faults.py)."""

import os

from adjointbench.faults import STARTED_ON_IMPORT_STATUS

os._exit(STARTED_ON_IMPORT_STATUS)
