"""torchvision's FCN and DeepLabV3 (``specs/lib/segmentation.arch``) beyond what their
records show (keys, shapes, parameters, FLOPs and golden maps, in test_specs.py): the
auxiliary head, the initialisation, and other resolutions (ASPP's image pooling comes back
to the map's size)."""

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


@pytest.mark.parametrize("name", ["fcn_resnet50", "deeplabv3_resnet50"])
def test_any_resolution_divisible_by_8_comes_back_to_its_size(name: str) -> None:
    model = archdsl.load(name, params={"resolution": 96, "num_classes": 5}).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 96, 96)).shape == (1, 5, 96, 96)
    with pytest.raises(archdsl.ArchError, match="divisible by 8"):
        archdsl.load_graph(name, resolution=100)
