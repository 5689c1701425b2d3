"""torchvision's FCN and DeepLabV3 (``specs/lib/segmentation.arch``) beyond what their
records show (keys, shapes, parameters, FLOPs and golden maps, in test_specs.py): the
initialisation, and other resolutions (ASPP's image pooling comes back to the map's size)."""

from __future__ import annotations

import math

import pytest
import torch

import archdsl


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
