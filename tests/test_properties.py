"""Properties of random valid networks: what archdsl infers statically is what torch builds.

Hypothesis draws networks that are valid by construction: the generator tracks the shape
after every layer with torch's own size formulas and only emits layers that fit (convs
with strides, paddings, dilations, groups and rectangular kernels; pooling with
``ceil_mode``; norms, activations, adaptive and global pooling; residual ``add``,
``concat`` and squeeze-excitation ``mul``; user blocks with defaults and ``in.c``; ``seq``,
labels, label templates, ``for`` and ``x N``; flat heads). For each:

- the inferred shape of every node, the network's output shape, and the parameter and
  buffer counts (per module, in total, and in ``archdsl.summary``) equal what the module
  torch builds on the meta device reports: no weight is allocated;
- compiling is deterministic: the same spec and ``torch.manual_seed`` give bit-identical
  weights and identical generated code (``module.code``) in every submodule, also across
  processes with different hash seeds;
- check -> compile -> ``state_dict`` -> ``torch.save`` -> ``torch.load`` -> a freshly
  compiled module round-trips: same keys, same tensors, same outputs.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import re
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from torch import fx, nn

import archdsl
from archdsl.ops import MERGE_OPS, get_op

PROPERTY_SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

BLOCKS = """\
block conv_bn(out, kernel = 3, stride = 1, groups = 1) {
  conv: conv(out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=false)
  -> bn: bn -> relu
}

block residual(kernel = 3) {
  add {
    ()
    (c1: conv(in.c, kernel, padding=kernel // 2) -> b1: bn -> relu -> c2: conv(in.c, 1))
  }
  -> relu
}

block squeeze_excite(ratio = 4) {
  mul {
    ()
    (pool: global_avgpool -> fc1: conv(max(1, in.c // ratio), 1) -> relu
     -> fc2: conv(in.c, 1) -> sigmoid)
  }
}

block stack(n, out) {
  for i in range(n) { unit{i}: conv_bn(out, 1) }
}
"""


def conv_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def pool_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil: bool) -> int:
    """torch's pooling output size, ``ceil_mode`` rule included."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if not ceil:
        return span // stride + 1
    out = math.ceil(span / stride) + 1
    if (out - 1) * stride >= size + padding:  # the last window must start inside
        out -= 1
    return out


Shape = tuple[int, ...]


@dataclass
class Layer:
    text: str
    shape: Shape


@st.composite
def convs(draw: st.DrawFn, shape: Shape) -> Layer:
    c, h, w = shape
    groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if c % g == 0]))
    out = groups * draw(st.integers(1, 4))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, kh // 2 + 1)), draw(st.integers(0, kw // 2 + 1))
    oh, ow = conv_size(h, kh, stride, ph, dilation), conv_size(w, kw, stride, pw, dilation)
    bias = draw(st.booleans())
    if oh < 1 or ow < 1:  # does not fit: a size-preserving conv instead
        return Layer(
            f'conv({out}, 3, padding="same", groups={groups}, bias={str(bias).lower()})',
            (out, h, w),
        )
    kernel = str(kh) if kh == kw else f"[{kh}, {kw}]"
    padding = str(ph) if ph == pw else f"[{ph}, {pw}]"
    return Layer(
        f"conv({out}, {kernel}, stride={stride}, padding={padding}, dilation={dilation}, "
        f"groups={groups}, bias={str(bias).lower()})",
        (out, oh, ow),
    )


@st.composite
def pools(draw: st.DrawFn, shape: Shape) -> Layer:
    c, h, w = shape
    kind = draw(st.sampled_from(["maxpool", "avgpool"]))
    kernel = draw(st.integers(1, 3))
    stride = draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2)) if kind == "maxpool" else 1
    padding = draw(st.integers(0, kernel // 2))  # torch: at most half the kernel, dilated or not
    ceil = draw(st.booleans())
    oh, ow = (pool_size(s, kernel, stride, padding, dilation, ceil) for s in (h, w))
    if oh < 1 or ow < 1:
        return Layer("identity", shape)
    extra = (
        f", dilation={dilation}"
        if kind == "maxpool"
        else f", count_include_pad={draw(st.sampled_from(['true', 'false']))}"
    )
    return Layer(
        f"{kind}({kernel}, stride={stride}, padding={padding}{extra}, "
        f"ceil_mode={str(ceil).lower()})",
        (c, oh, ow),
    )


SAME_SHAPE_SPATIAL = [
    "relu",
    "relu6",
    "silu",
    "gelu",
    'gelu("tanh")',
    "sigmoid",
    "tanh",
    "hardswish",
    "hardsigmoid",
    "leaky_relu(0.2)",
    "identity",
    "()",
    "bn",
    "bn(eps=1e-3, momentum=0.01)",
    "bn(affine=false)",
    "layernorm",
    "dropout(0.1)",
    "drop_path(0.2)",
    "lrn(3)",
    "softmax(dim=1)",
    "residual",
    "residual(1)",
    "squeeze_excite",
    "squeeze_excite(2)",
]
SAME_SHAPE_FLAT = [
    "relu",
    "sigmoid",
    "identity",
    "bn",
    "layernorm",
    "dropout(0.5)",
    "softmax",
    "gelu",
    "tanh",
]


@st.composite
def spatial_layers(draw: st.DrawFn, shape: Shape, depth: int) -> Layer:
    c, h, w = shape
    kinds = ["conv", "conv", "pool", "same", "same", "groupnorm", "adaptive", "block"]
    if depth > 0:
        kinds += ["add", "concat", "mul", "seq", "repeat", "for", "stack", "if"]
    kind = draw(st.sampled_from(kinds))
    if kind == "conv":
        return draw(convs(shape))
    if kind == "pool":
        return draw(pools(shape))
    if kind == "same":
        return Layer(draw(st.sampled_from(SAME_SHAPE_SPATIAL)), shape)
    if kind == "groupnorm":
        groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if c % g == 0]))
        return Layer(f"groupnorm({groups})", shape)
    if kind == "adaptive":
        oh, ow = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        op = draw(st.sampled_from(["adaptive_avgpool", "adaptive_maxpool"]))
        return Layer(f"{op}({oh})" if oh == ow else f"{op}([{oh}, {ow}])", (c, oh, ow))
    if kind == "block":
        out, kernel, stride = (
            draw(st.integers(1, 6)),
            draw(st.sampled_from([1, 3, 5])),
            draw(st.integers(1, 2)),
        )
        groups = 1 if c % 2 or out % 2 else draw(st.sampled_from([1, 2]))
        oh, ow = (conv_size(s, kernel, stride, kernel // 2) for s in (h, w))
        return Layer(f"conv_bn({out}, {kernel}, stride={stride}, groups={groups})", (out, oh, ow))
    if kind == "add":
        branches = draw(
            st.lists(
                st.sampled_from(
                    [
                        "()",
                        "bn",
                        "relu",
                        f"conv({c}, 3, padding=1)",
                        f"(conv({c}, 1) -> bn)",
                        "residual",
                    ]
                ),
                min_size=2,
                max_size=3,
            )
        )
        return Layer("add {\n    " + "\n    ".join(branches) + "\n  }", shape)
    if kind == "concat":
        outs = draw(st.lists(st.integers(1, 4), min_size=2, max_size=3))
        branches = [
            f"(b§: conv({o}, {2 * (i % 2) + 1}, padding={i % 2}))" for i, o in enumerate(outs)
        ]
        if draw(st.booleans()):
            branches.append("()")
            outs.append(c)
        return Layer("concat { " + "; ".join(branches) + " }", (sum(outs), h, w))
    if kind == "mul":
        return Layer("mul { (); (global_avgpool -> sigmoid) }", shape)
    if kind == "seq":
        inner = draw(spatial_chains(shape, depth - 1))
        return Layer("seq { " + inner.text + " }", inner.shape)
    if kind == "repeat":
        op = draw(
            st.sampled_from(["relu", "bn", "residual", f"conv({c}, 3, padding=1)", "identity"])
        )
        label = draw(st.sampled_from(["", "rep§: "]))
        return Layer(f"{label}{op} x {draw(st.integers(0, 3))}", shape)
    if kind == "for":
        n = draw(st.integers(0, 3))
        return Layer(f"for i in range({n}) {{ layer§_{{i + 1}}: conv({c}, 1) -> relu }}", shape)
    if kind == "stack":
        n, out = draw(st.integers(1, 3)), draw(st.integers(1, 5))
        return Layer(f"stack({n}, {out})", (out, h, w))
    flag = draw(st.booleans())
    return Layer(f"if {str(flag).lower()} {{ bn }} else {{ relu }}", shape)


@st.composite
def spatial_chains(draw: st.DrawFn, shape: Shape, depth: int) -> Layer:
    texts = []
    for _ in range(draw(st.integers(1, 4))):
        layer = draw(spatial_layers(shape, depth))
        if draw(st.integers(0, 3)) == 0 and not layer.text.startswith(("rep", "for", "if", "()")):
            layer = Layer(f"n§: {layer.text}", layer.shape)
        texts.append(layer.text)
        shape = layer.shape
    return Layer(" -> ".join(texts), shape)


@st.composite
def networks(draw: st.DrawFn) -> str:
    """The text of a valid network (with the shared blocks)."""
    if draw(st.integers(0, 5)) == 0:  # flat input: an MLP
        features = draw(st.integers(1, 16))
        layers = []
        for _ in range(draw(st.integers(1, 5))):
            if draw(st.booleans()):
                features = draw(st.integers(1, 16))
                layers.append(
                    f"linear({features}, bias={draw(st.sampled_from(['true', 'false']))})"
                )
            else:
                layers.append(draw(st.sampled_from(SAME_SHAPE_FLAT)))
        body = f"input [{draw(st.integers(1, 16))}]\n  " + " -> ".join(layers)
    else:
        shape = (draw(st.integers(1, 6)), draw(st.integers(1, 16)), draw(st.integers(1, 16)))
        chain = draw(spatial_chains(shape, 2))
        head = draw(
            st.sampled_from(
                [
                    "",
                    " -> global_avgpool(flatten=true) -> fc: linear(5)",
                    " -> flatten -> linear(3)",
                    " -> global_maxpool",
                    " -> global_avgpool -> flatten -> dropout(0.2) -> linear(7)",
                ]
            )
        )
        body = f"input [{shape[0]}, {shape[1]}, {shape[2]}]\n  {chain.text}{head}"
    labels = itertools.count()  # "§" marks where a label needs a number of its own
    body = re.sub("§", lambda _: str(next(labels)), body)
    return f"{BLOCKS}\nnetwork net {{\n  {body}\n}}\n"


# ---- static analysis == torch on the meta device ----------------------------------------------


def module_outputs(model: nn.Module, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """The output shape (without batch) of every submodule, by path, from one forward pass."""
    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if name:

            def record(mod: nn.Module, args: object, out: torch.Tensor, name: str = name) -> None:
                shapes[name] = tuple(out.shape[1:])

            handles.append(module.register_forward_hook(record))
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
    return shapes


@settings(PROPERTY_SETTINGS, max_examples=80)
@given(text=networks())
def test_inferred_shapes_and_counts_match_torch_on_meta(text: str) -> None:
    note(text)
    graph = archdsl.check(text)
    model = archdsl.build(graph, device="meta").eval()
    assert all(p.is_meta for p in model.parameters())
    example = torch.empty(2, *graph.input_shape, device="meta")
    shapes = module_outputs(model, example)
    out = model(example)
    assert tuple(out.shape) == (2, *graph.output_shape)

    total_params = total_buffers = 0
    for node in graph.nodes():
        if node.op == "input" or node.op in MERGE_OPS:
            continue
        assert shapes[node.path] == node.shape, (node.path, node.op, node.attrs)
        module = model.get_submodule(node.path)
        opdef = get_op(node.op)
        inputs = [graph.node(i).shape for i in graph.inputs(node.id)]
        params = opdef.count_params(node.attrs, inputs)
        buffers = opdef.count_buffers(node.attrs, inputs)
        assert params == sum(p.numel() for p in module.parameters()), node.path
        assert buffers == sum(b.numel() for b in module.buffers()), node.path
        total_params += params
        total_buffers += buffers
    for path, scope in graph.scopes.items():  # every namespace is a callable submodule
        assert shapes[path] == graph.node(scope.output).shape, path
    assert total_params == archdsl.count_params(graph) == sum(p.numel() for p in model.parameters())
    summary = archdsl.summary(graph)
    assert (summary.params, summary.buffers) == (total_params, total_buffers)
    assert summary.output_shape == graph.output_shape


def test_the_generator_makes_varied_networks() -> None:
    """Guard against a generator that silently degenerates: the drawn networks use most
    constructs between them."""
    seen: set[str] = set()

    @settings(PROPERTY_SETTINGS, max_examples=150)
    @given(text=networks())
    def collect(text: str) -> None:
        body = text[len(BLOCKS) :]
        seen.update(
            k
            for k in (
                "conv(",
                "maxpool",
                "avgpool",
                "ceil_mode=true",
                "groups=2",
                "dilation=2",
                "add {",
                "concat {",
                "mul {",
                "seq {",
                " x ",
                "for i",
                "stack(",
                "conv_bn(",
                "residual",
                "squeeze_excite",
                "linear(",
                "input [",
                "layernorm",
                "adaptive_",
                ": ",
                "[",
            )
            if k in body
        )

    collect()
    assert len(seen) >= 20, sorted(seen)


# ---- determinism ----------------------------------------------------------------------------------


def generated_code(model: nn.Module) -> dict[str, str]:
    return {name: m.code for name, m in model.named_modules() if isinstance(m, fx.GraphModule)}


def compile_seeded(text: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return archdsl.compile(text)


@settings(PROPERTY_SETTINGS, max_examples=25)
@given(text=networks(), seed=st.integers(0, 2**31 - 1))
def test_compile_is_deterministic(text: str, seed: int) -> None:
    note(text)
    first, second = compile_seeded(text, seed), compile_seeded(text, seed)
    assert generated_code(first) == generated_code(second)
    assert str(first) == str(second)
    a, b = first.state_dict(), second.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape
        assert a[key].numpy().tobytes() == b[key].numpy().tobytes(), key


_DIGEST = """
import hashlib, json, sys, torch, archdsl
from torch import fx
out = {}
for name, text in json.loads(sys.stdin.read()).items():
    torch.manual_seed(1234)
    model = archdsl.compile(text)
    h = hashlib.sha256()
    for path, m in model.named_modules():
        if isinstance(m, fx.GraphModule):
            h.update(path.encode() + m.code.encode())
    for key, t in model.state_dict().items():
        h.update(key.encode() + t.numpy().tobytes())
    out[name] = h.hexdigest()
print(json.dumps(out))
"""


def test_compile_is_deterministic_across_processes() -> None:
    """Same digests of code and weights under different PYTHONHASHSEEDs: nothing depends on
    set or dict-of-hash order."""
    specs = {
        name: archdsl.spec_path(name).read_text(encoding="utf-8") for name in ("lenet5", "resnet18")
    }
    specs["generated"] = (
        BLOCKS
        + """
network mixed(num_classes = 10) {
  input [3, 16, 16]
  stem: conv_bn(8, 3, stride=2) -> residual -> squeeze_excite
  -> concat { (a: conv(4, 1)); (b: conv(4, 3, padding=1)); () }
  -> stage: stack(2, 8) -> for i in range(2) { layer{i}: conv(8, 1) -> relu }
  -> pool: global_avgpool(flatten=true) -> fc: linear(num_classes)
}
"""
    )
    digests = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", _DIGEST],
            input=json.dumps(specs),
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        digests.append(json.loads(result.stdout))
    assert digests[0] == digests[1]


def test_different_seeds_give_different_weights() -> None:
    """The seed is what decides the weights (so the test above is not vacuous)."""
    text = BLOCKS + "network n { input [3, 8, 8]; conv_bn(4) }"
    a, b = compile_seeded(text, 0).state_dict(), compile_seeded(text, 1).state_dict()
    assert not torch.equal(a["0.conv.weight"], b["0.conv.weight"])


# ---- round trip through a state_dict file -----------------------------------------------------------


@settings(PROPERTY_SETTINGS, max_examples=25)
@given(text=networks())
def test_state_dict_round_trip(text: str) -> None:
    note(text)
    graph = archdsl.check(text)
    original = compile_seeded(text, 0).eval()
    with torch.no_grad():  # give batch norm non-trivial running statistics
        original.train()(torch.randn(4, *graph.input_shape))
        original.eval()
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    fresh = compile_seeded(text, 1).eval()
    fresh.load_state_dict(state, strict=True)
    assert list(fresh.state_dict()) == list(original.state_dict())
    for key, tensor in original.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], tensor), key
    x = torch.randn(3, *graph.input_shape)
    with torch.no_grad():
        assert torch.equal(fresh(x), original(x))
    assert tuple(original(x).shape[1:]) == archdsl.check(text).output_shape


def test_round_trip_of_a_bundled_network() -> None:
    text_model = archdsl.load("resnet18", num_classes=10).eval()
    buffer = io.BytesIO()
    torch.save(text_model.state_dict(), buffer)
    buffer.seek(0)
    again = archdsl.load("resnet18", num_classes=10).eval()
    again.load_state_dict(torch.load(buffer, weights_only=True))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(again(x), text_model(x))
    digest = hashlib.sha256(again.code.encode()).hexdigest()
    assert digest == hashlib.sha256(text_model.code.encode()).hexdigest()


@pytest.mark.parametrize(
    "text",
    [
        BLOCKS
        + "network n { input [3, 9, 9]; maxpool(2, stride=2, ceil_mode=true) -> conv_bn(4) }",
        BLOCKS + "network n { input [2, 5, 7]; conv(4, [1, 3], stride=[2, 1], padding=[0, 1]) }",
    ],
    ids=["ceil_mode", "rectangular"],
)
def test_examples_of_the_property(text: str) -> None:
    """Two fixed cases of the shape property, run without hypothesis (readable failures)."""
    graph = archdsl.check(text)
    model = archdsl.build(graph, device="meta")
    assert (
        tuple(model(torch.empty(1, *graph.input_shape, device="meta")).shape[1:])
        == graph.output_shape
    )
