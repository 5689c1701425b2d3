"""Networks written as a user would write them, for networks archdsl does not bundle.

Each spec in ``tests/data/user_nets/`` follows a torchvision or timm model (MobileNetV3,
ConvNeXt and RegNetY under timm's names, Xception, ResNet-D, EfficientNet-Lite with compound
scaling), with the blocks a reader of the paper and the library's code would write. Their
records (``make_records.py`` there, from the libraries themselves) give the state_dict keys
and shapes, the parameter count and golden logits under the reference fill: the language must be able to say these networks exactly, and the
``.py`` output must compute what the compiled module computes, for specs its own tests
were not written around.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import archdsl
from emitted import assert_py_computes_the_same
from reference import fill, golden_input

USER_NETS = Path(__file__).parent / "data" / "user_nets"
NAMES = sorted(p.stem for p in USER_NETS.glob("*.arch"))
GOLDEN_RTOL = 1e-6  # of max |golden logit|, as for the bundled networks


def record(name: str) -> dict:
    return json.loads((USER_NETS / f"{name}.json").read_text())


def test_every_user_spec_has_a_record() -> None:
    assert len(NAMES) == 6
    assert sorted(p.stem for p in USER_NETS.glob("*.json")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_user_spec_is_the_library_network(name: str) -> None:
    """Keys in the library's order, shapes, parameter count and golden logits."""
    ref = record(name)
    model = archdsl.compile_file(USER_NETS / f"{name}.arch")
    sd = model.state_dict()
    assert list(sd) == list(ref["state_dict"])
    assert {k: list(v.shape) for k, v in sd.items()} == ref["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == ref["params"]
    model = fill(model).double().eval()
    with torch.no_grad():
        out = model(golden_input(ref["resolution"]))
    golden = torch.tensor(ref["golden_logits"], dtype=torch.float64)
    err = (out - golden).abs().max().item()
    assert err <= GOLDEN_RTOL * golden.abs().max().item(), f"max |error| {err:.3g}"


@pytest.mark.parametrize("name", NAMES)
def test_user_spec_as_python_source(name: str, tmp_path: Path) -> None:
    """The ``.py`` output takes the compiled module's weights strictly and computes the
    same outputs, in eval and training mode."""
    model = fill(archdsl.compile_file(USER_NETS / f"{name}.arch"))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert_py_computes_the_same(model, x, tmp_path)
