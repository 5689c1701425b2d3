"""Weight transfer between specs: diff, transfer, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

import archdsl
from archdsl_cli.main import main

BEFORE = """
network n(num_classes = 10) {
  input [3, 16, 16]
  stem: conv(8, 3, padding=1) -> bn -> relu
  -> body: conv(16, 3, stride=2) -> relu
  -> head: seq { global_avgpool(flatten=true) -> linear(num_classes) }
}
"""
# a labelled layer inserted in the middle: nothing after it is renamed
AFTER = BEFORE.replace("-> body:", "-> extra: conv(8, 3, padding=1) -> body:")


def test_inserting_a_labelled_layer_moves_no_names():
    report = archdsl.diff(BEFORE, AFTER)
    assert report.new == ["extra.weight", "extra.bias"]
    assert report.reshaped == [] and report.dropped == []
    src, dst = archdsl.compile(BEFORE), archdsl.compile(AFTER)
    report = archdsl.transfer(src, dst)
    assert sorted(report.unchanged) == sorted(src.state_dict())
    for key, value in src.state_dict().items():
        assert torch.equal(dst.state_dict()[key], value)


def test_resnet50_to_ten_classes_keeps_all_but_fc():
    report = archdsl.diff("resnet50", archdsl.load_graph("resnet50", num_classes=10))
    assert report.reshaped == [
        ("fc.weight", (1000, 2048), (10, 2048)),
        ("fc.bias", (1000,), (10,)),
    ]
    assert report.new == [] and report.dropped == [] and len(report.unchanged) == 318


def test_shapes_of_a_graph_take_no_parameters():
    from archdsl.transfer import tensor_shapes

    graph = archdsl.load_graph("resnet18", num_classes=10)
    assert tensor_shapes(graph)["fc.weight"] == (10, 512)
    assert tensor_shapes("resnet18", params={"num_classes": 7})["fc.weight"] == (7, 512)
    with pytest.raises(ValueError, match="parameters apply to a spec"):  # not ignored
        tensor_shapes(graph, params={"num_classes": 7})


def test_transfer_copies_matching_tensors_only():
    src = archdsl.load("resnet18")
    dst = archdsl.load("resnet18", num_classes=10)
    fc_before = dst.fc.weight.clone()
    report = archdsl.transfer(src.state_dict(), dst)
    assert [k for k, _, _ in report.reshaped] == ["fc.weight", "fc.bias"]
    assert torch.equal(
        dst.get_parameter("layer4.1.conv2.weight"), src.get_parameter("layer4.1.conv2.weight")
    )
    assert torch.equal(dst.bn1.running_var, src.bn1.running_var)
    assert torch.equal(dst.fc.weight, fc_before)


def test_diff_of_unrelated_networks_and_report_formats():
    report = archdsl.diff("lenet5", "alexnet")
    assert report.new and report.dropped
    data = json.loads(report.to_json())
    assert set(data) == {"unchanged", "reshaped", "new", "dropped"}
    assert report.render().startswith("unchanged: ")


def test_cli_diff(capsys):
    assert main(["diff", "resnet18", "resnet18", "--set-b", "num_classes=10"]) == 0
    out = capsys.readouterr().out
    assert "reshaped: 2" in out and "fc.weight: [1000, 512] -> [10, 512]" in out
    assert main(["diff", "resnet18", "resnet18", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["reshaped"] == [] and len(data["unchanged"]) == 122
