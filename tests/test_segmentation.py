"""torchvision's FCN, DeepLabV3 (``specs/lib/segmentation.arch``) and LR-ASPP beyond what their
records show (keys, shapes, parameters, FLOPs and golden maps, in test_specs.py): the
auxiliary head, the initialisation, and sizes that are not a multiple of 8 against
torchvision (every map brought to another's size when the network runs)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from reference import fill, golden_input

# torchvision's networks built with aux_loss=True, filled and run as the records are (see
# tests/data/reference/make_records.py, aux_record): keys, shapes, parameters, both maps
AUX = json.loads((Path(__file__).parent / "data" / "segmentation_aux.json").read_text())
SEGMENTATION = sorted(k for k in AUX if isinstance(AUX[k], dict))


@pytest.mark.parametrize("name", SEGMENTATION)
def test_with_its_auxiliary_head_the_network_is_torchvisions(name: str) -> None:
    """``aux_loss=true``: torchvision's keys, shapes and published parameter count, and its
    auxiliary map (read from inside the backbone, at layer3) in training mode beside the
    main one; batch norm and dropout held in eval mode, as torchvision's maps were made."""
    record, resolution, stride = AUX[name], AUX["resolution"], AUX["stride"]
    model = archdsl.load(name, params={"aux_loss": True, "resolution": resolution})
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == record["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == record["params"]
    fill(model).double().train()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.Dropout)):
            m.eval()
    with torch.no_grad():
        maps = model(golden_input(resolution))
    assert maps._fields == ("out", "aux")
    for key in ("out", "aux"):
        got = getattr(maps, key)[:, :, ::stride, ::stride].flatten(1)
        want = torch.tensor(record[key], dtype=torch.float64)
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())
    with torch.no_grad():  # eval mode: the main map alone, as without the head
        torch.testing.assert_close(model.eval()(golden_input(resolution)), maps.out)


def test_the_backbone_takes_resnets_init_and_the_head_pytorchs() -> None:
    torch.manual_seed(0)
    model = archdsl.load("fcn_resnet50", params={"resolution": 64})
    conv = model.get_submodule("backbone.layer3.0.conv2")  # He normal, fan_out
    fan_out = conv.out_channels * 9
    assert abs(conv.weight.std().item() - math.sqrt(2 / fan_out)) < 0.05 * math.sqrt(2 / fan_out)
    head = model.get_submodule("classifier.0")  # PyTorch's default: uniform, 1 / sqrt(fan_in)
    bound = 1 / math.sqrt(head.in_channels * 9)
    assert head.weight.abs().max().item() <= bound
    assert head.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


# the maps of torchvision's networks at 100 x 100, not a multiple of 8 (make_records.py,
# odd_record): every map is interpolated to another's size, not by a whole factor
ODD = json.loads((Path(__file__).parent / "data" / "segmentation_odd.json").read_text())


@pytest.mark.parametrize("name", sorted(k for k in ODD if isinstance(ODD[k], dict)))
def test_at_any_size_the_map_is_torchvisions(name: str) -> None:
    """Built for 520 and run on 100 x 100: the feature maps are 13 x 13 (output stride 8)
    or 7 x 7 (16), and each resize reads its size when the network runs (ASPP's image
    pooling back to 13 x 13, LR-ASPP's 7 x 7 to 13 x 13, the map to 100 x 100), so the map
    is torchvision's; checked at 100, the network infers its shape."""
    record, resolution, stride = ODD[name], ODD["resolution"], ODD["stride"]
    model = fill(archdsl.load(name)).double().eval()
    with torch.no_grad():
        out = model(golden_input(resolution))
    assert list(out.shape) == record["shape"]
    want = torch.tensor(record["out"], dtype=torch.float64)
    got = out[:, :, ::stride, ::stride].flatten(1)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6 * want.abs().max().item())
    graph = archdsl.load_graph(name, resolution=resolution)
    assert [2, *graph.output_shape] == record["shape"]


def test_the_auxiliary_head_needs_a_multiple_of_8() -> None:
    """The auxiliary map comes back up by 8 (an upsampling inside its head, which a side
    output cannot follow with a resize to the input's size yet)."""
    assert archdsl.load_graph("fcn_resnet50", resolution=100).output_shape == (21, 100, 100)
    with pytest.raises(archdsl.ArchError, match="the auxiliary map comes back up by 8"):
        archdsl.load_graph("fcn_resnet50", resolution=100, aux_loss=True)
