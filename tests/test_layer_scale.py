"""``channel_linear`` and ``layer_scale``: ConvNeXt's MLP and its layer scale.

``channel_linear`` is nn.Linear over the channels at every position (weight ``[out, in]``,
as the libraries' ConvNeXt MLPs have it). ``layer_scale``'s parameter is the enclosing
block's own, named by the label, so that torchvision's ``features.1.0.layer_scale`` and
timm's ``stages.0.blocks.0.gamma`` are what archdsl builds (tests/test_user_specs.py checks
both ConvNeXts against their libraries); here, what each op computes, its errors, and a
block using both through every output.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from archdsl.backends.torch_modules import GELU, ChannelLinear
from archdsl.optimize import COMPILE_RULES
from emitted import assert_exports_compute, assert_py_computes_the_same
from reference import fill

# torchvision's CNBlock (flat=false) and timm's ConvNeXtBlock layer scale (flat=true)
BLOCKS = """
block cnblock(dim, flat = false) {
  add {
    block: seq {
      conv(dim, 7, padding=3, groups=dim); layernorm(eps=1e-6)
      channel_linear(4 * dim); gelu; channel_linear(dim)
    }
    -> layer_scale: layer_scale(0.5, flat=flat) -> drop_path(0.0)
    ()
  }
}
network n {
  input [3, 16, 16]
  stem: conv(8, 2, stride=2) -> s: seq { cnblock(8); cnblock(8, flat=true) }
  -> wide: conv(16, 1) -> t: cnblock(16) -> global_avgpool(flatten=true) -> fc: linear(10)
}
"""


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = archdsl.compile(BLOCKS).eval()
    with torch.no_grad():  # factors far from their initial value, and not all equal
        for name, p in net.named_parameters():
            if name.endswith("layer_scale"):
                p.copy_(torch.linspace(-2, 2, p.numel()).view_as(p))
    return net


def _block_by_hand(block: nn.Module, factors: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The block as torchvision's CNBlock writes its forward (eval mode)."""
    return factors.view(-1, 1, 1) * block.block(x) + x


def test_channel_linear_is_a_linear_layer_over_the_channels() -> None:
    torch.manual_seed(0)
    layer = ChannelLinear(6, 4)
    x = torch.randn(2, 6, 3, 5)
    want = torch.einsum("nchw,oc->nohw", x, layer.weight) + layer.bias.view(1, 4, 1, 1)
    torch.testing.assert_close(layer(x), want)
    assert layer.weight.shape == (4, 6)  # nn.Linear's, where a 1x1 conv's is [4, 6, 1, 1]
    # channels-last in and out: both permutes are views
    y = layer(x.contiguous(memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, want)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_computes_a_channels_last_map_in_memory_order(approximate: str) -> None:
    """What ConvNeXt's MLP hands its GELU (channels-last, permuted back) is computed as
    torchvision's GELU computes the channels-last tensor itself, and stays channels-last;
    anything else as nn.GELU computes it."""
    gelu = GELU(approximate=approximate)
    nhwc = torch.randn(2, 5, 6, 32)
    x = nhwc.permute(0, 3, 1, 2)
    want = nn.functional.gelu(nhwc, approximate=approximate).permute(0, 3, 1, 2)
    assert torch.equal(gelu(x), want)
    assert gelu(x).is_contiguous(memory_format=torch.channels_last)
    for other in (x.contiguous(), torch.randn(3, 7), torch.randn(2, 4, 5)):
        assert torch.equal(gelu(other), nn.functional.gelu(other, approximate=approximate))
    assert (
        archdsl.compile("network n { input [4, 3, 3]; gelu }").get_submodule("0").__class__ is GELU
    )


def test_layer_scale_is_the_blocks_own_parameter() -> None:
    net = _net()
    params = dict(net.named_parameters())
    assert params["s.0.layer_scale"].shape == (8, 1, 1)  # torchvision's layout
    assert params["s.1.layer_scale"].shape == (8,)  # timm's
    block = net.s.get_submodule("0")
    assert isinstance(block.layer_scale, nn.Parameter)
    assert list(block.state_dict())[0] == "layer_scale"  # a module's own tensors come first
    assert archdsl.summary(BLOCKS).params == sum(p.numel() for p in net.parameters())
    fresh = archdsl.compile(BLOCKS)
    assert torch.equal(fresh.s.get_submodule("1").layer_scale, torch.full((8,), 0.5))
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        for i in ("0", "1"):
            b = net.s.get_submodule(i)
            torch.testing.assert_close(b(x), _block_by_hand(b, b.layer_scale, x))


def test_layer_scale_learns() -> None:
    """The sum after it overwrites its output in place; the factors still get gradients,
    the same as without in-place sums."""
    net = _net().train()
    graph = net.archdsl_graph
    from archdsl.backends.torch_backend import build

    plain = build(graph, inplace=False).train()
    plain.load_state_dict(net.state_dict())
    x = torch.randn(2, 3, 16, 16)
    for model in (net, plain):
        model(x).square().sum().backward()
    for name in ("s.0.layer_scale", "s.1.layer_scale"):
        grad = net.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0
        torch.testing.assert_close(grad, plain.get_parameter(name).grad)


@pytest.mark.parametrize(
    "body, message, at",
    [
        (
            "input [8, 4, 4]; layer_scale(1e-6)",
            "layer_scale needs a label: its parameter is the enclosing block's own",
            "layer_scale(",
        ),
        (
            "input [8]; ls: layer_scale",
            r"expects a feature map \[C, H, W\], got \[8\]",
            "layer_scale",
        ),
        (
            "input [8]; channel_linear(4)",
            r"expects a feature map \[C, H, W\], got \[8\]; on flat features use linear",
            "channel_linear",
        ),
        ("input [8, 4, 4]; ls: layer_scale(flat=1)", "flat must be true or false", "flat"),
    ],
)
def test_errors_point_at_the_layer(body: str, message: str, at: str) -> None:
    src = f"network n {{ {body} }}"
    with pytest.raises(archdsl.ArchError, match=message) as e:
        archdsl.check(src)
    assert e.value.column == src.rindex(at) + 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, deprecated in 2.13
def test_a_block_with_a_layer_scale_through_every_output(tmp_path: Path) -> None:
    net = _net()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = net(x)
        for again in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
            torch.testing.assert_close(again(x), want, rtol=0, atol=0)
        fast = archdsl.optimize_for_inference(net)
        torch.testing.assert_close(fast(x), want, rtol=1e-4, atol=1e-5)
        # each layer scale folded into the channel_linear before it (in the block's child)
        assert [n for n, _ in fast.named_parameters() if "layer_scale" in n] == []
        # the rewrites before torch.compile inline every scope: the parameter read with it
        flat = archdsl.optimize_for_inference(net, rules=COMPILE_RULES)
        assert not [m for m in flat.modules() if isinstance(m, torch.fx.GraphModule)][1:]
        torch.testing.assert_close(flat(x), want, rtol=1e-4, atol=1e-5)
        scripted = torch.jit.script(net)
        torch.testing.assert_close(scripted(x), want, rtol=0, atol=0)
        backbone = archdsl.build(net.archdsl_graph, outputs=["s"])
        backbone.load_state_dict(net.state_dict(), strict=False)
        torch.testing.assert_close(backbone(x)["s"], net.s(net.stem(x)), rtol=0, atol=0)
    torch.save(net.state_dict(), tmp_path / "w.pt")
    loaded = archdsl.compile(BLOCKS, weights=tmp_path / "w.pt").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), want, rtol=0, atol=0)
    assert_exports_compute(net, x, tmp_path)


def test_py_output_makes_the_parameter_in_the_block(tmp_path: Path) -> None:
    net = _net()
    source = archdsl.emit_python(net)
    assert "self.layer_scale = layer_scale(dim, init=0.5)" in source
    assert "self.layer_scale = layer_scale(8, init=0.5, flat=True)" in source
    assert "out = block * self.layer_scale\n" in source
    assert "out = block * self.layer_scale.view(-1, 1, 1)  #" in source
    # conv(dim, 7, groups=dim) on a dim-wide input: one parameter, not in_channels and dim
    assert "def __init__(self, dim: int) -> None:" in source
    assert "nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)" in source
    assert_py_computes_the_same(net, torch.randn(2, 3, 16, 16), tmp_path)


@pytest.mark.slow
def test_py_output_of_convnext_computes_what_the_compiled_module_computes(tmp_path: Path) -> None:
    """The bundled ConvNeXt-T (torchvision's), in eval and training mode."""
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    assert_py_computes_the_same(fill(archdsl.load("convnext_tiny")), x, tmp_path)


def test_py_output_of_a_layer_scale_with_a_dash_label(tmp_path: Path) -> None:
    src = """
block b(c) { add { (conv(c, 3, padding=1) -> ls-1: layer_scale(0.1)); () } }
network n { input [4, 6, 6]; b(4) -> conv(6, 1) -> b(6) }
"""
    torch.manual_seed(0)
    net = archdsl.compile(src).eval()
    assert net.get_submodule("2").get_parameter("ls-1").shape == (6, 1, 1)
    source = archdsl.emit_python(net)
    assert 'self.register_parameter("ls-1", layer_scale(in_channels, init=0.1))' in source
    assert 'getattr(self, "ls-1")' in source
    assert_py_computes_the_same(net, torch.randn(2, 4, 6, 6), tmp_path)


def test_init_rules_reach_channel_linear() -> None:
    src = """
network n {
  init channel_linear.weight = constant(0.25)
  init channel_linear.bias = zeros
  input [4, 3, 3]
  fc1: channel_linear(6) -> gelu -> fc2: channel_linear(4)
}
"""
    net = archdsl.compile(src)
    for name in ("fc1", "fc2"):
        layer = net.get_submodule(name)
        assert torch.equal(layer.weight, torch.full_like(layer.weight, 0.25))
        assert not layer.bias.any()


def test_a_layer_scale_as_a_side_output(tmp_path: Path) -> None:
    """Alone, a side output that is a layer scale has no module to skip in eval mode: an
    error that says how to write it; inside a labelled group it is that group's."""
    bare = "network n { input [4, 6, 6]; conv(4, 3, padding=1); side aux: layer_scale(0.5); fc: (global_avgpool(flatten=true) -> linear(3)) }"
    with pytest.raises(archdsl.ArchError, match="side output 'aux' is a layer_scale alone") as e:
        archdsl.check(bare)
    assert e.value.column == bare.index("side aux") + 1
    net = archdsl.compile(
        bare.replace("side aux: layer_scale(0.5)", "side aux: (g: layer_scale(0.5))")
    )
    assert net.get_parameter("aux.g").shape == (4, 1, 1)
    assert len(net.train()(torch.randn(2, 4, 6, 6))) == 2  # in training mode, with aux
    assert_py_computes_the_same(net, torch.randn(2, 4, 6, 6), tmp_path)


@pytest.mark.parametrize(
    "chain, folded",
    [
        ("fc: channel_linear(4) -> g: layer_scale(0.5)", True),
        ("c: conv(4, 3, padding=1) -> g: layer_scale(0.5, flat=true)", True),
        ("c: conv(4, 3, padding=1, bias=false) -> g: layer_scale(0.5)", True),
        ("b: (c: conv(4, 3, padding=1) -> identity) -> g: layer_scale(0.5)", True),
        # after an activation, or where the layer's output is read again: kept
        ("fc: channel_linear(4) -> gelu -> g: layer_scale(0.5)", False),
        ("fc: channel_linear(4) -> add { (); g: layer_scale(0.5) }", False),
    ],
)
def test_optimize_folds_a_layer_scale_into_the_layer_before_it(chain: str, folded: bool) -> None:
    torch.manual_seed(0)
    net = archdsl.compile(f"network n {{ input [4, 5, 5]; {chain} }}").eval()
    with torch.no_grad():
        net.get_parameter("g").uniform_(-2, 2)
        x = torch.randn(2, 4, 5, 5)
        want = net(x)
        fast = archdsl.optimize_for_inference(net)
        torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-6)
    assert ("g" not in dict(fast.named_parameters())) == folded
    assert "g" in dict(net.named_parameters())  # the network itself is untouched
