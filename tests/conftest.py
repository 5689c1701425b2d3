"""Shared test setup. `tests/` is on sys.path (pyproject's pytest `pythonpath`), so test
modules import the reference helpers as `from reference import ...`."""

import os
import sys
from pathlib import Path

_TESTS = str(Path(__file__).parent)
if _TESTS not in sys.path:  # e.g. when run with a config that lacks `pythonpath`
    sys.path.insert(0, _TESTS)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n 2` each worker gets one core's worth of torch threads, so two
    # workers do not oversubscribe the two cores CI has.
    import torch

    torch.set_num_threads(1)
