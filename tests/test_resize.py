"""``resize``: a map brought to a size, or to another value's size read when the network
runs (``resize(@label)``, ``resize(@in)``), against ``F.interpolate`` written in torch, then
through every output the compiler writes. Its shape rule is checked against torch in
test_ops.py, its receptive field against gradients in test_analysis.py, and the networks
built on it (FPN, DeepLabV3, LR-ASPP) against torchvision in test_detection.py,
test_segmentation.py and test_specs.py."""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import archdsl
from archdsl.backends.graphviz import to_dot
from emitted import assert_every_output_computes
from reference import fill

# a block that pools its input's context and brings it back to its input's size (ASPP's
# image pooling), and a top-down sum brought to the size of a finer map (FPN's)
SPEC = """
block context(out) {
  concat {
    conv(out, 1)
    seq { adaptive_avgpool(1); conv(out, 1); relu; resize(@in, mode="bilinear") }
  }
}

network net {
  input [3, 40, 40]
  fine: conv(8, 3, stride=2, padding=1)
  -> coarse: conv(8, 3, stride=2, padding=1) -> conv(8, 3, stride=2, padding=1)
  -> add { @coarse; resize(@coarse) }
  -> add { @fine; resize(@fine, mode="bilinear", align_corners=true) }
  -> ctx: context(4)
  -> resize(@in, mode="bicubic")
}
"""


def torch_net(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The same network written with ``F.interpolate``, reading ``net``'s weights."""

    def conv(path: str, t: torch.Tensor, **kw: int) -> torch.Tensor:
        m = net.get_submodule(path)
        return F.conv2d(t, m.weight, m.bias, **kw)

    fine = conv("fine", x, stride=2, padding=1)
    coarse = conv("coarse", fine, stride=2, padding=1)
    y = conv("2", coarse, stride=2, padding=1)
    y = coarse + F.interpolate(y, size=coarse.shape[-2:])
    y = fine + F.interpolate(y, size=fine.shape[-2:], mode="bilinear", align_corners=True)
    pooled = torch.relu(conv("ctx.1.1", F.adaptive_avg_pool2d(y, 1)))
    up = F.interpolate(pooled, size=y.shape[-2:], mode="bilinear", align_corners=False)
    y = torch.cat([conv("ctx.0", y), up], 1)
    return F.interpolate(y, size=x.shape[-2:], mode="bicubic", align_corners=False)


@pytest.mark.parametrize("size", [40, 37, 64])
def test_each_resize_is_torchs_at_any_input_size(size: int) -> None:
    """Built for 40 x 40 and run at 37 and 64: every size is read when it runs, so the
    result is F.interpolate's (in float64, exactly), and as wide as the input."""
    net = fill(archdsl.compile(SPEC)).double().eval()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    with torch.no_grad():
        got = net(x)
        want = torch_net(net, x)
    assert got.shape == (2, 8, size, size)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_resize_is_a_function_of_no_module_or_number() -> None:
    """No module, no number: the block's seq keeps torchvision's ASPPPooling numbering and
    stays a callable module (the value it reads, @in, is its own input); the graph holds
    the value whose size it takes as a second input."""
    net = archdsl.compile(SPEC)
    assert [k for k in net.state_dict() if k.startswith("ctx")] == [
        "ctx.0.weight",
        "ctx.0.bias",
        "ctx.1.1.weight",
        "ctx.1.1.bias",
    ]
    pooling = net.get_submodule("ctx.1")
    assert type(pooling).__name__ == "Sequential" and "interpolate" in pooling.code
    graph = archdsl.check(SPEC)
    resizes = [n for n in graph.nodes() if n.op == "resize"]
    assert [str(n.attrs["size"]) for n in resizes] == ["@coarse", "@fine", "@in", "@in"]
    assert all(n.path is None for n in resizes)
    assert [graph.node(graph.inputs(n.id)[1]).path for n in resizes[:2]] == ["coarse", "fine"]
    assert graph.inputs(resizes[3].id)[1] == "input"  # the network's @in
    assert [n.shape for n in resizes] == [(8, 10, 10), (8, 20, 20), (4, 20, 20), (8, 40, 40)]


def test_a_given_size_is_fixed() -> None:
    net = archdsl.compile("network n { input [3, 8, 8]; conv(4, 1) -> resize([5, 7]) }")
    assert net(torch.randn(1, 3, 16, 16)).shape == (1, 4, 5, 7)


def test_every_output_computes_the_same(tmp_path: Path) -> None:
    """The .py output (F.interpolate with other.shape[-2:]), optimize_for_inference, and
    the .pt2 and .onnx exports."""
    net = fill(archdsl.compile(SPEC)).eval()
    assert_every_output_computes(net, torch.randn(2, 3, 40, 40), tmp_path)
    source = archdsl.emit_python(archdsl.check(SPEC))
    assert 'F.interpolate(out, size=x.shape[-2:], mode="bicubic", align_corners=False)' in source


def test_the_module_pickles_and_copies() -> None:
    net = fill(archdsl.compile(SPEC)).eval()
    x = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        want = net(x)
        for other in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
            torch.testing.assert_close(other(x), want, rtol=0, atol=0)


@pytest.mark.slow  # inductor compiles C++: a few seconds
def test_the_fastest_path_reads_the_sizes_too() -> None:
    net = fill(archdsl.compile(SPEC)).eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        want = net(x)
        got = archdsl.compile_for_inference(net)(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_the_summary_and_diagram_name_the_size_source() -> None:
    summary = archdsl.summary(SPEC)
    assert [row.output_shape for row in summary.layers if row.op == "resize"][-1] == (8, 40, 40)
    dot = to_dot(archdsl.check(SPEC)).source
    assert "resize to @fine bilinear" in dot and 'label=" size"' in dot and "dashed" in dot
