"""RegNet, whose stage widths and depths the bundled spec computes from the design space's
parameters (``specs/lib/regnet.arch``), against torchvision away from its fifteen published
settings, whose records ``test_specs.py`` checks: the networks of
``tests/data/regnet_space/`` (bottleneck multipliers other than 1, a group wider than its
stage, one stage or many) must have torchvision's every key and shape. Then what the
records do not show: torchvision's init, the ``.py`` output of names like ``block1-0``, and
the error for parameters outside the design space.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from archdsl.elaborate.loader import bundled_spec_root
from archdsl.ir import Graph
from emitted import assert_py_computes_the_same
from reference import fill

SPACE = json.loads(
    (Path(__file__).parent / "data" / "regnet_space" / "regnet_space.json").read_text()
)
LIB = bundled_spec_root() / "lib" / "regnet.arch"


def regnet_graph(**args: object) -> Graph:
    return archdsl.check_file(LIB, network="regnet", params=args)


@pytest.mark.parametrize("entry", SPACE, ids=lambda e: "-".join(map(str, e["args"].values())))
def test_design_space_is_torchvisions(entry: dict) -> None:
    model = archdsl.build(regnet_graph(**entry["args"]), device="meta")
    got = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert got == entry["state_dict"]


def test_design_space_sample_covers_the_edges() -> None:
    """The sample holds what the published settings do not (else the test above shows
    little): bottleneck multipliers, a first stage narrower than the group width, one stage,
    and stages whose widths come out equal after the adjustment to the groups."""
    args = [e["args"] for e in SPACE]
    assert {a["bottleneck"] for a in args} >= {0.25, 0.5, 2.0, 4.0}
    assert any(len(set(e["group_widths"])) > 1 for e in SPACE)
    assert any(len(e["depths"]) == 1 for e in SPACE)
    assert any(len(e["depths"]) >= 6 for e in SPACE)
    assert any(a == b for e in SPACE for a, b in zip(e["widths"], e["widths"][1:]))


def test_init_is_torchvisions() -> None:
    """Every convolution (squeeze-and-excitation's too) normal with std sqrt(2 / fan_out),
    fan_out = out_channels * kernel area; the classifier normal(0, 0.01) with zero bias;
    batch norms ones and zeros."""
    torch.manual_seed(0)
    model = archdsl.load("regnet_y_400mf")
    convs = [(k, m) for k, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 16 * 5 + 4  # stem; a, b, c, fc1, fc2 per block; projections
    for key, conv in convs:
        if conv.weight.numel() < 2000:
            continue  # too few draws to estimate a spread
        out, _, kh, kw = conv.weight.shape
        expected = math.sqrt(2.0 / (out * kh * kw))
        assert abs(conv.weight.std().item() - expected) <= 0.1 * expected, key
    assert abs(model.fc.weight.std().item() - 0.01) <= 0.001
    assert torch.count_nonzero(model.fc.bias) == 0
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in bns)


def test_py_output_computes_the_same(tmp_path: Path) -> None:
    """The ``.py`` of RegNetY-400MF registers ``block1-0`` ... with ``add_module`` and
    computes exactly what the compiled module computes."""
    model = fill(archdsl.load("regnet_y_400mf"))
    source = archdsl.emit_python(model)
    assert 'self.add_module("block1-0", ' in source
    assert_py_computes_the_same(model, torch.randn(2, 3, 64, 64), tmp_path)


@pytest.mark.parametrize(
    "args",
    [
        {"w_0": 44},  # not a multiple of 8
        {"w_m": 1.0},  # no growth in log space: every width the same power
        {"w_a": -1.0},
    ],
)
def test_parameters_outside_the_design_space_are_an_error(args: dict) -> None:
    base = {"depth": 13, "w_0": 48, "w_a": 27.89, "w_m": 2.09, "group_width": 8}
    with pytest.raises(archdsl.ArchError, match="RegNet needs") as info:
        regnet_graph(**{**base, **args})
    assert info.value.span.path.endswith("regnet.arch")
