"""Random small networks: the compiler's static shapes and parameter counts are torch's.

Hypothesis draws a network as a small tree (conv, transposed conv, upsampling, pooling,
bn, relu, residual ``add`` and ``concat`` branches, optionally ``flatten -> linear``), with
random kernels, strides, paddings, output paddings, dilations, groups and ``ceil_mode``,
many of them invalid for the input size.
The tree is written out as spec text for archdsl, and run directly, layer by layer, with
plain torch modules made from the same tree (``run_reference``), which is the oracle:

- if archdsl accepts the text, torch runs the tree, and the inferred output shape, the
  parameters counted from the graph (``archdsl.count_params``), and the compiled module's
  parameters and output shape all equal torch's;
- if archdsl rejects it with a shape error, torch fails on the tree too (for ``add``,
  whose branches the language requires to have identical shapes where torch would
  broadcast, the oracle checks that rule itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import nn

import archdsl

BATCH = 2


@dataclass(frozen=True)
class Layer:
    """One op with its keyword arguments (in archdsl's spelling), or a merge of branches."""

    op: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    branches: tuple[tuple[Layer, ...], ...] = ()


# --- strategies ---------------------------------------------------------------------------

kernel = st.integers(1, 4)
stride = st.integers(1, 3)
padding = st.integers(0, 2)
dilation = st.integers(1, 2)


def layer(op: str, **kwargs: Any) -> Layer:
    return Layer(op, tuple(kwargs.items()))


convs = st.builds(
    lambda out, k, s, p, d, g, b: layer(
        "conv", out=out, kernel=k, stride=s, padding=p, dilation=d, groups=g, bias=b
    ),
    st.integers(1, 6),
    kernel,
    stride,
    padding,
    dilation,
    st.sampled_from([1, 1, 2]),  # groups 2 with an odd channel count is an error
    st.booleans(),
)
conv_transposes = st.builds(
    lambda out, k, s, p, op, d, g, b: layer(
        "conv_transpose", out=out, kernel=k, stride=s, padding=p, output_padding=op,
        dilation=d, groups=g, bias=b,
    ),
    st.integers(1, 6),
    kernel,
    stride,
    padding,
    st.integers(0, 2),  # not below the stride or dilation: an error
    dilation,
    st.sampled_from([1, 1, 2]),
    st.booleans(),
)  # fmt: skip
upsamples = st.builds(
    lambda s, m: layer("upsample", scale=s, mode=m),
    st.integers(1, 3),
    st.sampled_from(["nearest", "bilinear", "bicubic"]),
)
maxpools = st.builds(
    lambda k, s, p, d, c: layer("maxpool", kernel=k, stride=s, padding=p, dilation=d, ceil_mode=c),
    kernel,
    st.one_of(st.none(), stride),
    padding,
    dilation,
    st.booleans(),
)
avgpools = st.builds(
    lambda k, s, p, c, i: layer(
        "avgpool", kernel=k, stride=s, padding=p, ceil_mode=c, count_include_pad=i
    ),
    kernel,
    st.one_of(st.none(), stride),
    padding,
    st.booleans(),
    st.booleans(),
)
simple = st.one_of(
    convs,
    conv_transposes,
    upsamples,
    maxpools,
    avgpools,
    st.just(layer("bn")),
    st.just(layer("relu")),
)
# Layers that keep the spatial size, so that merged branches often agree (and that leave
# arguments to their defaults).
keep_size = st.one_of(
    st.builds(
        lambda out, k: layer("conv", out=out, kernel=k, padding=k // 2),
        st.integers(1, 6),
        st.sampled_from([1, 3]),
    ),
    st.just(layer("maxpool", kernel=3, stride=1, padding=1)),
    st.just(layer("relu")),
)
branch = st.lists(st.one_of(simple, keep_size), max_size=3).map(tuple)  # () is the identity
merges = st.builds(
    lambda kind, bs: Layer(kind, branches=tuple(bs)),
    st.sampled_from(["add", "concat"]),
    st.lists(branch, min_size=2, max_size=3),
)
head = st.one_of(
    st.just(()),
    st.builds(
        lambda out, b, bn: (
            layer("flatten"),
            *((layer("bn"),) if bn else ()),
            layer("linear", out=out, bias=b),
        ),
        st.integers(1, 5),
        st.booleans(),
        st.booleans(),
    ),
)


@st.composite
def networks(draw: st.DrawFn) -> tuple[tuple[int, int, int], tuple[Layer, ...]]:
    shape = (draw(st.integers(1, 4)), draw(st.integers(1, 12)), draw(st.integers(1, 12)))
    body = draw(st.lists(st.one_of(simple, simple, merges), min_size=1, max_size=5))
    return shape, (*body, *draw(head))


# --- the tree as spec text ------------------------------------------------------------------


def value(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    return str(v)


def render_chain(layers: tuple[Layer, ...], indent: str) -> str:
    if not layers:
        return "identity"
    parts = []
    for lay in layers:
        if lay.branches:
            inner = "\n".join(indent + "  " + render_chain(b, indent + "  ") for b in lay.branches)
            parts.append(f"{lay.op} {{\n{inner}\n{indent}}}")
        else:
            args = ", ".join(f"{k}={value(v)}" for k, v in lay.kwargs)
            parts.append(f"{lay.op}({args})" if args else lay.op)
    return " -> ".join(parts)


def render(shape: tuple[int, int, int], layers: tuple[Layer, ...]) -> str:
    return f"network random {{\n  input {list(shape)}\n  {render_chain(layers, '  ')}\n}}\n"


# --- the tree run directly in torch (the oracle) --------------------------------------------


# The language's documented defaults, for arguments a layer leaves out.
DEFAULTS: dict[str, dict[str, Any]] = {
    "conv": {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "bias": True},
    "conv_transpose": {
        "stride": 1,
        "padding": 0,
        "output_padding": 0,
        "dilation": 1,
        "groups": 1,
        "bias": True,
    },
    "upsample": {"mode": "nearest"},
    "maxpool": {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False},
    "avgpool": {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True},
    "linear": {"bias": True},
}


def torch_module(lay: Layer, x: torch.Tensor) -> nn.Module:
    a = {**DEFAULTS.get(lay.op, {}), **dict(lay.kwargs)}
    if lay.op == "conv":
        return nn.Conv2d(
            x.shape[1],
            a["out"],
            a["kernel"],
            a["stride"],
            a["padding"],
            a["dilation"],
            a["groups"],
            a["bias"],
        )
    if lay.op == "conv_transpose":
        return nn.ConvTranspose2d(
            x.shape[1],
            a["out"],
            a["kernel"],
            a["stride"],
            a["padding"],
            a["output_padding"],
            a["groups"],
            a["bias"],
            a["dilation"],
        )
    if lay.op == "upsample":
        return nn.Upsample(scale_factor=a["scale"], mode=a["mode"])
    if lay.op == "maxpool":
        return nn.MaxPool2d(
            a["kernel"], a["stride"], a["padding"], a["dilation"], ceil_mode=a["ceil_mode"]
        )
    if lay.op == "avgpool":
        return nn.AvgPool2d(
            a["kernel"], a["stride"], a["padding"], a["ceil_mode"], a["count_include_pad"]
        )
    if lay.op == "bn":
        return (nn.BatchNorm2d if x.dim() == 4 else nn.BatchNorm1d)(x.shape[1])
    if lay.op == "linear":
        return nn.Linear(x.shape[1], a["out"], a["bias"])
    return {"relu": nn.ReLU, "flatten": nn.Flatten, "identity": nn.Identity}[lay.op]()


def run_reference(layers: tuple[Layer, ...], x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Run the tree on ``x`` with fresh torch modules; the output and their parameters."""
    count = 0
    for lay in layers:
        if lay.branches:
            outs = []
            for b in lay.branches:
                y, n = run_reference(b, x)
                outs.append(y)
                count += n
            if lay.op == "concat":
                x = torch.cat(outs, 1)
            elif any(y.shape != outs[0].shape for y in outs):
                # torch's + would broadcast; the language's add wants identical shapes.
                raise ValueError("add: shapes differ")
            else:
                x = sum(outs[1:], outs[0])
        else:
            module = torch_module(lay, x).eval()
            count += sum(p.numel() for p in module.parameters())
            x = module(x)
            if not x.numel():  # torch's transposed convolution makes an empty map of size 0
                raise ValueError(f"{lay.op}: an empty output {tuple(x.shape)}")
    return x, count


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
def test_static_shapes_and_params_are_torchs(net: tuple[tuple[int, int, int], tuple[Layer, ...]]):
    shape, layers = net
    text = render(shape, layers)
    note(text)
    x = torch.randn(BATCH, *shape)
    try:
        graph = archdsl.check(text)
    except archdsl.ArchShapeError:
        with pytest.raises((RuntimeError, ValueError)):
            run_reference(layers, x)
        return
    with torch.no_grad():
        expected, expected_params = run_reference(layers, x)
        model = archdsl.build(graph).eval()
        out = model(x)
    assert graph.output_shape == tuple(expected.shape[1:])
    assert tuple(out.shape) == tuple(expected.shape)
    assert archdsl.count_params(graph) == expected_params
    assert sum(p.numel() for p in model.parameters()) == expected_params
