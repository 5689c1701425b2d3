"""Shared test setup. `tests/` is on sys.path (pyproject's pytest `pythonpath`), so test
modules import the reference helpers as `from reference import ...`."""

import os
import sys
from pathlib import Path
from typing import Any

import pytest

_TESTS = str(Path(__file__).parent)
if _TESTS not in sys.path:  # e.g. when run with a config that lacks `pythonpath`
    sys.path.insert(0, _TESTS)

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n 2` each worker gets one core's worth of torch threads, so two
    # workers do not oversubscribe the two cores CI has.
    import torch

    torch.set_num_threads(1)


# The torch backend's tests (test_torch_*.py) share these; torch is imported when one is
# used, so that the tests of what runs without torch still import none.


@pytest.fixture(scope="module")
def resnet18() -> Any:
    """resnet18 with 10 classes, seeded, in eval mode."""
    import torch

    import archdsl

    torch.manual_seed(0)
    return archdsl.load("resnet18", num_classes=10).eval()


@pytest.fixture(scope="module")
def x64() -> Any:
    """A batch of two images at torchnets.RES (resnet18 keeps a 2 x 2 map at layer4)."""
    import torch

    from torchnets import RES

    return torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(1))
