"""torchvision's ResNet-50 feature pyramid backbones (``specs/resnet50_fpn.arch``,
``specs/resnet50_fpn_retinanet.arch``, ``specs/lib/detection.arch``) against their
records, made from torchvision's ``resnet_fpn_backbone("resnet50")`` and the backbone of
``retinanet_resnet50_fpn`` (tests/data/reference/make_records.py, ``--fpn`` and
``--retinanet``): every key and shape in order, their parameters, and their five levels in
float64 under the reference fill, at 224 and at a size that is not a multiple of 32; then
the init, the frozen batch norm in training mode, and what a user does with them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import archdsl
from reference import fill, golden_input

DATA = Path(__file__).parent / "data"
# each network's record, and torchvision's OrderedDict keys -> the fields of its Outputs
PYRAMIDS = {
    "resnet50_fpn": (
        json.loads((DATA / "detection_fpn.json").read_text()),
        {"0": "p2", "1": "p3", "2": "p4", "3": "p5", "pool": "pool"},
    ),
    "resnet50_fpn_retinanet": (
        json.loads((DATA / "detection_retinanet.json").read_text()),
        {"0": "p3", "1": "p4", "2": "p5", "p6": "p6", "p7": "p7"},
    ),
}
FPN = PYRAMIDS["resnet50_fpn"][0]


@pytest.mark.slow  # resnet50 in float64 at 224 x 224: a few seconds
@pytest.mark.parametrize("name", sorted(PYRAMIDS))
def test_the_pyramid_is_torchvisions(name: str) -> None:
    record, levels = PYRAMIDS[name]
    model = archdsl.load(name)
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == list(
        record["state_dict"].items()
    )
    assert sum(p.numel() for p in model.parameters()) == record["params"]
    with torch.no_grad():
        got = fill(model).double().eval()(golden_input(record["resolution"]))
    assert got._fields == tuple(levels.values())
    _assert_levels(got, record, record["levels"], levels)


def _assert_levels(got: object, record: dict, recorded: dict, levels: dict) -> None:
    """Each level against torchvision's: shape, and the recorded channels and positions."""
    step = record["channel_stride"]
    for key, field in levels.items():
        level, want = getattr(got, field), recorded[key]
        assert list(level.shape) == want["shape"], field
        s = want["stride"]
        shown = level[:, ::step, ::s, ::s].flatten(1)
        values = torch.tensor(want["values"], dtype=torch.float64)
        torch.testing.assert_close(shown, values, rtol=1e-6, atol=1e-6 * values.abs().max().item())


@pytest.mark.slow  # resnet50 in float64 at 200 x 200: a few seconds
@pytest.mark.parametrize("name", sorted(PYRAMIDS))
def test_the_levels_at_any_size_are_torchvisions(name: str) -> None:
    """At 200 x 200, not a multiple of 32, the stages are 50, 25, 13 and 7 wide: each
    coarser sum is resized to the finer map's size (7 to 13, 13 to 25, 25 to 50), as
    torchvision interpolates, not doubled. The module built for 224 reads the sizes when it
    runs, so on a 200 x 200 input it gives torchvision's levels; checked at 200, the network
    infers their shapes."""
    record, levels = PYRAMIDS[name]
    odd = record["odd"]
    model = fill(archdsl.load(name)).double().eval()
    with torch.no_grad():
        got = model(golden_input(odd["resolution"]))
    _assert_levels(got, record, odd["levels"], levels)
    graph = archdsl.load_graph(name, resolution=odd["resolution"])
    shapes = [list(graph.node(n).shape) for n in graph.output_fields.values()]
    assert shapes == [odd["levels"][key]["shape"][1:] for key in levels]


def test_its_batch_norm_is_frozen_and_its_init_torchvisions() -> None:
    torch.manual_seed(0)
    model = archdsl.load("resnet50_fpn", resolution=64)
    bn = model.get_submodule("body.layer2.0.bn1")
    assert type(bn).__name__ == "FrozenBatchNorm2d" and not list(bn.parameters())
    conv = model.get_submodule("body.layer3.0.conv2")  # He normal, fan_out
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.05)
    lateral = model.get_submodule("fpn.inner_blocks.3.0")  # He uniform, a = 1: 1 / sqrt(fan_in)
    bound = math.sqrt(3 / lateral.in_channels)
    assert lateral.weight.abs().max().item() <= bound * (1 + 1e-6)
    assert lateral.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.equal(lateral.bias, torch.zeros(256))
    # training mode normalizes with the frozen statistics: the same levels as eval mode
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model.train()(x), model.eval()(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_retinanets_extra_levels_take_torchvisions_init() -> None:
    """LastLevelP6P7's convolutions: He uniform with a = 1 (a bound of sqrt(3 / fan_in)),
    biases zero, as the pyramid's; P6 and P7 are returned, so the ReLU between them does
    not overwrite P6."""
    torch.manual_seed(0)
    model = archdsl.load("resnet50_fpn_retinanet", resolution=64)
    bound = math.sqrt(3 / (256 * 9))
    for name in ("fpn.extra_blocks.p6", "fpn.extra_blocks.p7"):
        conv = model.get_submodule(name)
        assert conv.weight.abs().max().item() <= bound * (1 + 1e-6)
        assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert torch.equal(conv.bias, torch.zeros(256))
    with torch.no_grad():
        levels = model.eval()(torch.randn(1, 3, 64, 64))
    assert levels.p6.min() < 0  # not rectified in place
    torch.testing.assert_close(levels.p7, model.fpn.extra_blocks.p7(levels.p6.relu()))


def test_as_a_backbone_it_returns_torchvisions_keys() -> None:
    """``outputs={name: path}`` returns the levels under torchvision's OrderedDict keys, the
    dict its detection heads read, from the same weights (every tensor kept)."""
    keys = {str(k): f"fpn.layer_blocks.{k}" for k in range(4)} | {"pool": "pool"}
    backbone = archdsl.load("resnet50_fpn", resolution=64, outputs=keys).eval()
    model = archdsl.load("resnet50_fpn", resolution=64).eval()
    model.load_state_dict(backbone.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got, levels = backbone(x), model(x)
    assert list(got) == list(keys)
    for key, field in PYRAMIDS["resnet50_fpn"][1].items():
        assert torch.equal(got[key], getattr(levels, field)), key


def test_a_detectors_weights_say_where_the_backbones_are() -> None:
    """A Faster R-CNN state_dict holds the backbone under ``backbone.`` beside its heads:
    loading it whole fails with a note saying so, and the backbone's part loads."""
    backbone = fill(archdsl.load("resnet50_fpn", resolution=64))
    detector = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    detector["rpn.head.conv.0.0.weight"] = torch.zeros(256, 256, 3, 3)
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.load("resnet50_fpn", weights=detector, resolution=64)
    assert "the tensors under 'backbone.' are this network's" in info.value.notes[-1]
    state = detector  # the note's own expression
    part = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    loaded = archdsl.load("resnet50_fpn", weights=part, resolution=64)
    for key, tensor in backbone.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
