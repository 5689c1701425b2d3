"""Backbones: outputs=, pruning, strides."""

from __future__ import annotations

import pytest
import torch

import archdsl
from archdsl.backbone import prune
from archdsl.passes.verify import verify

OUTPUTS = ["layer2", "layer3", "layer4"]


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return archdsl.load("resnet18").eval()


def _hooked(model, names):
    seen = {}
    for name in names:
        model.get_submodule(name).register_forward_hook(
            lambda m, i, o, name=name: seen.__setitem__(name, o)
        )
    return seen


def test_outputs_equal_full_network_intermediates(resnet18):
    backbone = archdsl.load("resnet18", outputs=OUTPUTS).eval()
    keys = set(backbone.state_dict())
    assert keys < set(resnet18.state_dict())
    assert not any(k.startswith(("fc.", "avgpool")) for k in keys)
    assert not any(n.startswith(("fc", "avgpool")) for n, _ in backbone.named_modules() if n)
    backbone.load_state_dict(resnet18.state_dict(), strict=False)
    x = torch.randn(2, 3, 64, 64)
    seen = _hooked(resnet18, OUTPUTS)
    with torch.no_grad():
        resnet18(x)
        got = backbone(x)
    assert list(got) == OUTPUTS
    for name in OUTPUTS:
        torch.testing.assert_close(got[name], seen[name])


def test_nested_and_partial_outputs(resnet18):
    names = ["layer4.0.conv1", "layer3.1", "layer4.0.downsample.0"]
    backbone = archdsl.load("resnet18", outputs=names).eval()
    assert "layer4.0.conv2.weight" not in backbone.state_dict()
    assert "layer4.1.conv1.weight" not in backbone.state_dict()
    backbone.load_state_dict(resnet18.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    seen = _hooked(resnet18, names)
    with torch.no_grad():
        resnet18(x)
        got = backbone(x)
    assert list(got) == names
    for name in names:
        torch.testing.assert_close(got[name], seen[name])


def test_outputs_under_names_of_ones_own(resnet18):
    """``{name: path}``: the same maps under the names given (a detector's ``"c3"``), in
    the mapping's order; an inner op's path dissolves its scopes as a name would."""
    names = {"c4": "layer3", "c3": "layer2", "inner": "layer4.0.conv1"}
    backbone = archdsl.load("resnet18", outputs=names).eval()
    backbone.load_state_dict(resnet18.state_dict(), strict=False)
    x = torch.randn(1, 3, 64, 64)
    seen = _hooked(resnet18, list(names.values()))
    with torch.no_grad():
        resnet18(x)
        got = backbone(x)
    assert list(got) == ["c4", "c3", "inner"]
    for name, path in names.items():
        torch.testing.assert_close(got[name], seen[path])
    info = archdsl.backbone.feature_info(archdsl.load_graph("resnet18"), {"c5": "layer4"})
    assert [(f.name, f.stride) for f in info] == [("c5", 32)]
    with pytest.raises(archdsl.ArchNameError, match="did you mean 'layer3'"):
        archdsl.load("resnet18", outputs={"c4": "layer_3"})


def test_pruned_graph_is_valid_and_smaller():
    graph = archdsl.load_graph("resnet18")
    small, wanted = prune(graph, ["layer2"])
    verify(small)
    assert small.output == wanted["layer2"]
    paths = {n.path for n in small.nodes() if n.path}
    assert "layer2.1.conv2" in paths
    assert not any(p.startswith(("layer3", "layer4", "fc")) for p in paths)
    assert archdsl.count_params(small) < archdsl.count_params(graph)


def test_unknown_output_suggests_a_name():
    with pytest.raises(archdsl.ArchNameError, match="did you mean 'layer3'"):
        archdsl.load("resnet18", outputs=["layer_3"])


def test_strides_and_compile_outputs():
    graph = archdsl.load_graph("resnet50")
    assert archdsl.backbone_strides(graph, OUTPUTS) == {"layer2": 8, "layer3": 16, "layer4": 32}
    spec = "network n { input [3, 16, 16]; a: conv(4, 3, stride=2) -> b: conv(8, 3) -> c: relu }"
    model = archdsl.compile(spec, outputs=["a"])
    assert set(model.state_dict()) == {"a.weight", "a.bias"}
    assert model(torch.randn(1, 3, 16, 16))["a"].shape == (1, 4, 7, 7)
