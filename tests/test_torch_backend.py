"""The torch backend: generated fx code, module paths, and the torch features a user relies on.

Every scope compiles to a ``torch.fx.GraphModule`` with straight-line generated code, so the
compiled network must behave like any hand-written ``nn.Module``: submodules callable on
their own, channels_last, autocast, ``torch.compile``, ``torch.export``, training,
deterministic construction and state_dict round trips. ResNet-18 at a small resolution is
the workhorse; tiny inline specs pin down merges with known weights.
"""

from __future__ import annotations

import copy
import math
import pickle
import re
import traceback

import pytest
import torch
from torch import fx, nn

import archdsl
from archdsl.backends.torch_modules import build_module

RES = 64  # resnet18 at 64x64: every stage still has a spatial map (2x2 at layer4)

TINY = """
network tiny(num_classes = 4) {
  input [3, 16, 16]
  stem: conv(8, 3, padding=1) -> bn -> relu
  -> pool: global_avgpool(flatten=true) -> fc: linear(num_classes)
}
"""

# Every construct the backend emits: seq, labelled group, block, add, concat, mul, repeat.
MIXED = """
block se(c) {
  mul { identity; (global_avgpool -> fc1: conv(c, 1) -> sigmoid) }
}

block unit(c, stride = 1) {
  add {
    (conv1: conv(c, 3, stride=stride, padding=1, bias=false) -> bn1: bn -> relu
     -> conv2: conv(c, 3, padding=1, bias=false) -> bn2: bn -> gate: se(c))
    if stride != 1 or in.c != c {
      downsample: seq { conv(c, 1, stride=stride, bias=false); bn }
    }
  }
  -> relu
}

network mixed(num_classes = 5) {
  input [3, 20, 20]
  stem: seq { conv(8, 3, padding=1, bias=false); bn; relu }
  -> mix: concat { conv(4, 1); (maxpool(3, stride=1, padding=1) -> conv(6, 1)); identity }
  -> stage: unit(12, 2) x 2
  -> head: (global_avgpool(flatten=true) -> dropout(0.25) -> linear(num_classes))
}
"""


RESNET_1111 = """
import "lib/resnet.arch"
network r = resnet(layers=[1, 1, 1, 1], num_classes=3)
"""

# MBConv's tail: x + drop_path(block(x)), SiLU and ReLU6 after batch norm.
MBCONV_TAIL = """
network m {
  input [3, 8, 8]
  conv(8, 3, padding=1) -> bn -> silu
  -> add { (); (conv(8, 1) -> bn -> relu6 -> conv(8, 1) -> bn -> dropout(0.5) -> drop_path(0.5)) }
  -> global_avgpool -> flatten -> linear(3)
}
"""


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return archdsl.load("resnet18", num_classes=10).eval()


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(1))


def graph_modules(model: nn.Module) -> list[tuple[str, fx.GraphModule]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, fx.GraphModule)]


def record_io(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple]:
    """Run ``model(x)`` once; the (input, output) each named submodule saw."""
    seen: dict[str, tuple] = {}
    handles = []

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            assert name not in seen, f"{name} ran twice"
            seen[name] = (args[0], out)

        return record

    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return seen


def fresh(src: str, seed: int = 0, **params) -> nn.Module:
    torch.manual_seed(seed)
    return archdsl.compile(src, **params)


# ---- generated code and module structure -----------------------------------------------


@pytest.mark.parametrize("which", ["resnet18", "mixed"])
def test_generated_code_is_straight_line(resnet18, which):
    model = resnet18 if which == "resnet18" else fresh(MIXED)
    mods = graph_modules(model)
    assert mods[0] == ("", model)
    assert len(mods) > 5  # root, stages, blocks, seqs, labelled groups
    for name, gm in mods:
        code = gm.code
        assert "def forward(self, x)" in code, name
        assert not re.search(r"\b(for|while)\b", code), f"loop in {name or 'root'}:\n{code}"
        assert "archdsl" not in code, name  # nothing interprets the IR at run time
        # every call is one of this module's own children, each called once, in order
        called = re.findall(r'self\.(\w+)\(|getattr\(self, "(\w+)"\)\(', code)
        called = [a or b for a, b in called]
        assert called == [c for c, _ in gm.named_children()], name


def test_root_code_calls_stages_in_order(resnet18):
    children = [n for n, _ in resnet18.named_children()]
    assert children == [
        "conv1",
        "bn1",
        "2",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "9",
        "fc",
    ]
    code = resnet18.code
    positions = [code.index(f"self.{n}(") for n in ("conv1", "layer1", "layer2", "layer3", "fc")]
    assert positions == sorted(positions)


def test_block_code_has_residual_add(resnet18):
    code = resnet18.get_submodule("layer2.0").code
    assert "downsample" in code
    assert re.search(r"bn2 \+= downsample", code), (
        code
    )  # in place, as torchvision's `out += identity`
    assert "downsample" not in resnet18.get_submodule("layer2.1").code


def test_named_blocks_at_their_paths(resnet18):
    get = resnet18.get_submodule
    assert isinstance(get("layer1.0.conv1"), nn.Conv2d)
    assert isinstance(get("layer1.0.bn2"), nn.BatchNorm2d)
    assert isinstance(get("layer1.0.2"), nn.ReLU)  # unlabelled, numbered among its siblings
    assert isinstance(get("layer2.0.downsample.0"), nn.Conv2d)
    assert isinstance(get("layer2.0.downsample.1"), nn.BatchNorm2d)
    assert isinstance(get("layer2.0.6"), nn.ReLU)  # after downsample (5)
    assert isinstance(get("layer2.1.5"), nn.ReLU)  # no downsample: one fewer member
    assert isinstance(get("fc"), nn.Linear) and get("fc").out_features == 10
    conv = get("layer3.0.conv1")
    assert (conv.in_channels, conv.out_channels, conv.stride, conv.bias) == (128, 256, (2, 2), None)
    for path in ("layer1", "layer1.0", "layer2.0.downsample", "layer4.1"):
        assert isinstance(get(path), fx.GraphModule), path
    assert type(get("layer1")).__name__ == "Stage"
    assert type(get("layer1.0")).__name__ == "Basic"
    assert type(get("layer2.0.downsample")).__name__ == "Sequential"
    assert type(resnet18).__name__ == "Resnet18"  # the alias names the network


def test_every_ir_node_and_scope_is_a_module():
    graph = archdsl.check(MIXED)
    model = archdsl.build(graph)
    assert model.archdsl_graph is graph
    for node in graph.nodes():
        if node.path is None:
            assert node.op in ("input", "add", "concat", "mul")
            continue
        mod = model.get_submodule(node.path)
        in_shapes = [graph.node(i).shape for i in graph.inputs(node.id)]
        assert type(mod) is type(build_module(node.op, dict(node.attrs), in_shapes)), node.path
    for path in graph.scopes:
        assert isinstance(model.get_submodule(path), fx.GraphModule), path
    # and nothing else: module paths with parameters are exactly the IR's paths
    node_paths = {n.path for n in graph.nodes() if n.path}
    for key in model.state_dict():
        assert key.rsplit(".", 1)[0] in node_paths, key


def test_state_dict_keys_match_torchvision_resnet18():
    from reference import load_reference

    ref = load_reference("resnet18")["state_dict"]
    model = archdsl.load("resnet18", device="meta")
    sd = model.state_dict()
    assert list(sd) == list(ref)
    assert {k: list(v.shape) for k, v in sd.items()} == {k: list(v) for k, v in ref.items()}


@pytest.mark.parametrize("path", ["layer3", "layer2.0", "layer2.0.downsample", "layer4.1"])
def test_submodule_callable_on_its_own(resnet18, x64, path):
    io = record_io(resnet18, x64, [path])
    inp, out = io[path]
    with torch.no_grad():
        got = resnet18.get_submodule(path)(inp)
    assert torch.equal(got, out)


def test_layer3_equals_running_up_to_it(resnet18, x64):
    io = record_io(resnet18, x64, ["layer3"])
    with torch.no_grad():
        h = x64
        for name, child in resnet18.named_children():
            if name == "layer3":
                break
            h = child(h)
        out = resnet18.layer3(h)
    assert tuple(out.shape) == (2, 256, RES // 16, RES // 16)
    assert torch.equal(h, io["layer3"][0])
    assert torch.equal(out, io["layer3"][1])


def test_every_scope_reproduces_its_recorded_output():
    model = fresh(MIXED).eval()
    graph = model.archdsl_graph
    x = torch.randn(2, 3, 20, 20)
    paths = list(graph.scopes)
    assert {"stem", "mix", "stage", "stage.0", "stage.0.gate", "stage.0.downsample", "head"} <= set(
        paths
    )
    io = record_io(model, x, paths)
    assert set(io) == set(paths)
    for path in paths:
        inp, out = io[path]
        with torch.no_grad():
            assert torch.equal(model.get_submodule(path)(inp), out), path


def test_runtime_shapes_match_checked_shapes(resnet18, x64):
    """The shape checker and torch agree at every module the IR names, and at the output."""
    graph = archdsl.load_graph("resnet18", num_classes=10, resolution=RES)
    paths = [n.path for n in graph.nodes() if n.path] + list(graph.scopes)
    io = record_io(resnet18, x64, paths)
    for node in graph.nodes():
        if node.path:
            assert tuple(io[node.path][1].shape[1:]) == node.shape, node.path
    for path, scope in graph.scopes.items():
        assert tuple(io[path][1].shape[1:]) == graph.node(scope.output).shape, path
    with torch.no_grad():
        assert tuple(resnet18(x64).shape[1:]) == graph.output_shape


def test_runtime_shapes_match_checked_shapes_mixed():
    graph = archdsl.check(MIXED)
    model = archdsl.build(graph).eval()
    x = torch.randn(2, 3, 20, 20)
    paths = [n.path for n in graph.nodes() if n.path]
    io = record_io(model, x, paths)
    for node in graph.nodes():
        if node.path:
            assert tuple(io[node.path][1].shape[1:]) == node.shape, node.path
    with torch.no_grad():
        assert tuple(model(x).shape) == (2, *graph.output_shape) == (2, 5)


@pytest.mark.parametrize(
    "pool, size",
    [
        ("maxpool(2)", 7),
        ("maxpool(3, stride=2, padding=1)", 9),
        ("avgpool(3, stride=2)", 10),
        ("maxpool(3, stride=2, ceil_mode=true)", 10),
        ("avgpool(2, ceil_mode=true)", 7),
    ],
)
def test_pool_shapes_match_torch(pool, size):
    src = f"network p {{ input [2, {size}, {size}]; {pool} }}"
    graph = archdsl.check(src)
    y = archdsl.build(graph)(torch.randn(1, 2, size, size))
    assert tuple(y.shape[1:]) == graph.output_shape


def test_build_on_meta_device_allocates_nothing():
    model = archdsl.load("resnet18", device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    y = model(torch.empty(2, 3, RES, RES, device="meta"))
    assert tuple(y.shape) == (2, 1000)


def test_a_build_on_the_meta_device_initialises_nothing(monkeypatch: pytest.MonkeyPatch):
    """Convolutions, linear layers and batch norms skip reset_parameters on the meta device,
    where there are no values to set (and each initialiser runs Python decompositions)."""
    calls = []
    for name in ("kaiming_uniform_", "uniform_", "normal_", "zeros_", "ones_"):
        original = getattr(nn.init, name)

        def record(tensor: torch.Tensor, *args: object, _f=original, _n=name, **kwargs: object):
            calls.append(_n)
            return _f(tensor, *args, **kwargs)

        monkeypatch.setattr(nn.init, name, record)
    model = archdsl.load("resnet18", device="meta")
    assert calls == []
    assert {type(m) for m in model.modules()} >= {nn.Conv2d, nn.BatchNorm2d, nn.Linear}
    archdsl.load("resnet18")
    assert calls  # on the CPU the same build initialises


def test_init_rules_applied():
    torch.manual_seed(0)
    model = archdsl.load("resnet18")
    w = model.get_submodule("layer4.0.conv2").weight  # 512x512x3x3, fan_out = 512 * 9
    assert abs(w.std().item() / (2.0 / (512 * 9)) ** 0.5 - 1) < 0.02
    # linear keeps PyTorch's default: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert model.fc.weight.abs().max().item() <= 1 / 512**0.5
    assert torch.equal(model.bn1.weight, torch.ones(64))


def test_a_tensor_an_init_rule_writes_is_not_drawn_first_by_pytorchs_default():
    """Only the tensors no rule writes take PyTorch's default random draw, in module order;
    a weight a rule overwrites costs no draw (replayed here from the same seed)."""
    graph = archdsl.check(
        "network n { input [3, 8, 8]\n"
        "  conv1: conv(16, 3, bias=true) -> flatten -> fc: linear(10)\n"
        "  init conv.weight = ones\n"
        "  init linear.bias = zeros }"
    )
    torch.manual_seed(0)
    model = archdsl.build(graph)
    next_draw = torch.rand(4)
    torch.manual_seed(0)
    bound = 1 / math.sqrt(3 * 3 * 3)  # conv1's fan_in
    conv_bias = torch.empty(16).uniform_(-bound, bound)
    fc_weight = nn.init.kaiming_uniform_(torch.empty(10, 16 * 6 * 6), a=math.sqrt(5))
    assert torch.equal(model.conv1.bias, conv_bias)
    assert torch.equal(model.fc.weight, fc_weight)
    assert torch.equal(torch.rand(4), next_draw)  # nothing else was drawn
    assert torch.equal(model.conv1.weight, torch.ones(16, 3, 3, 3))
    assert torch.equal(model.fc.bias, torch.zeros(10))


# ---- torch features ----------------------------------------------------------------------


def test_channels_last_matches_contiguous(resnet18, x64):
    with torch.no_grad():
        ref = resnet18(x64)
    cl = archdsl.load("resnet18", num_classes=10).eval()
    cl.load_state_dict(resnet18.state_dict())
    cl = cl.to(memory_format=torch.channels_last)
    assert cl.get_submodule("layer2.0.conv1").weight.is_contiguous(
        memory_format=torch.channels_last
    )
    with torch.no_grad():
        out = cl(x64.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_channels_last_with_merges():
    model = fresh(MIXED).eval()
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        ref = model(x)
        out = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_autocast_bfloat16_on_cpu(resnet18, x64):
    with torch.no_grad():
        ref = resnet18(x64)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = resnet18(x64)
    assert out.dtype in (torch.bfloat16, torch.float32)
    assert out.shape == ref.shape
    assert torch.isfinite(out).all()
    rel = ((out.float() - ref).norm() / ref.norm()).item()
    assert rel < 0.05, rel


def test_torch_compile_eager_backend(resnet18, x64):
    torch._dynamo.reset()
    compiled = torch.compile(resnet18, backend="eager", fullgraph=True)  # no graph breaks
    with torch.no_grad():
        ref = resnet18(x64)
        out = compiled(x64)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)


def test_torch_compile_eager_backend_mixed_train_mode():
    model = fresh(MIXED)  # train mode: batch-norm statistics, dropout
    model.get_submodule("head.1").p = 0.0
    twin = fresh(MIXED)
    twin.get_submodule("head.1").p = 0.0
    x = torch.randn(4, 3, 20, 20)
    torch._dynamo.reset()
    out = torch.compile(model, backend="eager", fullgraph=True)(x)
    ref = twin(x)
    torch.testing.assert_close(out, ref)
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)  # running stats updated alike


@pytest.mark.slow
def test_torch_compile_inductor_tiny():
    model = fresh(TINY).eval()
    x = torch.randn(2, 3, 16, 16)
    torch._dynamo.reset()
    compiled = torch.compile(model)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)


def test_torch_export(resnet18, x64):
    ep = torch.export.export(resnet18, (x64,))
    with torch.no_grad():
        ref = resnet18(x64)
        out = ep.module()(x64)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    # the exported program keeps the state_dict keys
    assert set(resnet18.state_dict()) <= set(ep.state_dict) | set(ep.constants) | {
        k for k in resnet18.state_dict() if k.endswith("num_batches_tracked")
    }


def test_strict_torch_export_reads_children_through_plain_properties():
    """Scopes read their children through class attributes; dynamo inlines a class
    attribute of a module only if it is exactly a ``property`` (torch 2.7 and 2.9 refuse
    anything else in strict export, the default before 2.8)."""
    from archdsl.backends.fx_scopes import is_child

    model = fresh(MIXED).eval()
    attributes = [
        v
        for m in model.modules()
        if isinstance(m, fx.GraphModule)
        for v in vars(type(m)).values()
        if is_child(v)
    ]
    assert attributes and all(type(v) is property for v in attributes)
    x = torch.randn(2, 3, 20, 20)
    program = torch.export.export(model, (x,), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x), rtol=0, atol=0)


def test_torch_export_dynamic_batch():
    model = fresh(MIXED).eval()
    x = torch.randn(3, 3, 20, 20)
    batch = torch.export.Dim("batch", min=1, max=64)
    ep = torch.export.export(model, (x,), dynamic_shapes={"x": {0: batch}})
    for n in (1, 3, 7):
        xn = torch.randn(n, 3, 20, 20)
        with torch.no_grad():
            torch.testing.assert_close(ep.module()(xn), model(xn), rtol=1e-6, atol=1e-6)


def test_training_step_gives_every_parameter_a_gradient(x64):
    model = fresh(RESNET_1111)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = nn.functional.cross_entropy(model(x64), torch.tensor([0, 2]))
    loss.backward()
    params = dict(model.named_parameters())
    # stem conv + bn (3); per block 2 convs + 2 bns (6), downsample conv + bn (3) in 3 of 4; fc (2)
    assert len(params) == 3 + 4 * 6 + 3 * 3 + 2
    for name, p in params.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    opt.step()
    after = model.state_dict()
    for name in params:
        assert not torch.equal(before[name], after[name]), name
    # batch norm running statistics moved too
    assert not torch.equal(before["layer1.0.bn1.running_mean"], after["layer1.0.bn1.running_mean"])
    assert after["bn1.num_batches_tracked"].item() == 1


# ---- in-place ReLU and residual sums -----------------------------------------------------------


def _in_place(src: str, outputs: tuple[str, ...] = ()) -> set[str]:
    """Module paths of the in-place ReLUs and ``op@scope`` of the in-place merges; with
    ``outputs``, module paths a backbone returns."""
    from archdsl.backends.torch_backend import _Layout, in_place

    graph = archdsl.check(src)
    ids = {n.path: n.id for n in graph.nodes()}
    found = in_place(graph, _Layout(graph), {path: ids[path] for path in outputs})
    return {graph.node(n).path or f"{graph.node(n).op}@{graph.node(n).scope}" for n in found}


def test_relu_and_residual_sum_overwrite_their_input_as_in_torchvision(resnet18):
    block = resnet18.get_submodule("layer1.0")
    assert [m.inplace for m in block.modules() if isinstance(m, nn.ReLU)] == [True, True]
    assert "bn2 += x" in block.code
    assert "ReLU(inplace=True)" in repr(resnet18)


@pytest.mark.parametrize("src", [MIXED, RESNET_1111, MBCONV_TAIL])
def test_in_place_gives_the_same_outputs_gradients_and_state_dict(src, x64):
    from archdsl.backends.torch_backend import build

    graph = archdsl.check(src)
    torch.manual_seed(0)
    plain = build(graph, inplace=False).train()
    fast = build(graph).train()
    assert list(fast.state_dict()) == list(plain.state_dict())
    fast.load_state_dict(plain.state_dict())
    x = torch.randn(2, *graph.input_shape)
    for model in (plain, fast):
        torch.manual_seed(1)  # dropout draws the same masks
        model(x).square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        assert torch.equal(p.grad, q.grad), name
    torch.manual_seed(1)
    expected = plain(x)
    torch.manual_seed(1)
    assert torch.equal(fast(x), expected)
    assert torch.equal(fast.eval()(x), plain.eval()(x))


def test_in_place_only_where_nothing_else_reads_the_input():
    assert _in_place(
        "network n { input [4, 6, 6]; c: conv(4, 1) -> r1: relu -> r2: relu"  # relu: not its output
        " -> add { (c2: conv(4, 1) -> r3: relu -> c3: conv(4, 1)); identity }"  # c3 into the sum
        " -> r4: relu }"  # the sum, read by r4 alone
    ) == {"r1", "r3", "r4", "add@"}
    # the conv's output also feeds the identity branch: neither the relu nor the sum
    assert _in_place("network n { input [4]; linear(4) -> add { relu; identity } }") == set()
    # a flatten's output is a view of its input
    assert _in_place("network n { input [4, 2, 2]; bn -> flatten -> f: relu }") == set()
    # an identity's output is its input: overwritten where that input could be
    assert _in_place("network n { input [4]; linear(4) -> identity -> r: relu }") == {"r"}
    assert _in_place("network n { input [4]; relu -> identity -> r: relu }") == set()
    assert (
        _in_place(
            "network n { input [4]; l: linear(4) -> add { (identity -> r: relu); identity } }"
        )
        == set()
    )
    # a sum of two overwrites the second where the first cannot be (MBConv: x + branch)
    assert _in_place("network n { input [4]; relu -> add { (); linear(4) } -> r: relu }") == {
        "add@",
        "r",
    }
    assert _in_place(
        "network n { input [4]; relu -> add { (); linear(4); linear(4) } -> r: relu }"
    ) == {"r"}
    # the activations with an inplace flag, through dropout and drop path (MBConv's tail)
    assert _in_place(
        "network n { input [4, 3, 3]; bn -> s: silu -> conv(4, 1) -> r6: relu6 -> dropout(0.1)"
        " -> bn -> drop_path(0.2) -> h: hardswish -> sigmoid -> g: gelu }"
    ) == {"s", "r6", "h"}
    # not the network's input, nor its output, nor a backbone's
    assert _in_place("network n { input [4]; relu }") == set()
    assert _in_place("network n { input [4]; l: linear(4) -> relu }", outputs=("l",)) == set()


def test_in_place_stops_at_scope_boundaries():
    # never a block's input, which comes from its caller, who may read it again
    # (`model.k(x)`); nor what a block returns, which a forward hook on it may keep
    src = "block b { r1: relu -> conv(4, 1) }\nnetwork n { input [4, 3, 3]; conv(4, 1) -> k: b -> r2: relu }"
    assert _in_place(src) == set()
    src = "block b { identity }\nnetwork n { input [4, 3, 3]; conv(4, 1) -> k: b -> r: relu }"
    assert _in_place(src) == set()


def test_train_and_eval_differ_for_dropout_and_batchnorm():
    model = fresh(MIXED)
    x = torch.randn(4, 3, 20, 20)
    model.train()
    with torch.no_grad():
        t1, t2 = model(x), model(x)
    assert not torch.equal(t1, t2)  # dropout draws new masks
    model.eval()
    with torch.no_grad():
        e1, e2 = model(x), model(x)
    assert torch.equal(e1, e2)
    assert not torch.allclose(e1, t1)
    assert all(not m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_train_and_eval_differ_for_batchnorm_only():
    model = fresh(TINY)
    x = torch.randn(4, 3, 16, 16) * 3 + 1
    with torch.no_grad():
        train_out = model.train()(x)
        eval_out = model.eval()(x)
    assert not torch.allclose(train_out, eval_out)
    assert model.get_submodule("1").num_batches_tracked.item() == 1


def test_identical_seed_gives_identical_state_dicts():
    a = fresh(MIXED, seed=3).state_dict()
    b = fresh(MIXED, seed=3).state_dict()
    c = fresh(MIXED, seed=4).state_dict()
    assert list(a) == list(b) == list(c)
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    assert not torch.equal(a["stem.0.weight"], c["stem.0.weight"])


def test_identical_seed_gives_identical_resnet18():
    torch.manual_seed(7)
    a = archdsl.load("resnet18").state_dict()
    torch.manual_seed(7)
    b = archdsl.load("resnet18").state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_generated_code_identical_across_compilations():
    one = dict(graph_modules(archdsl.load("resnet18")))
    two = dict(graph_modules(archdsl.load("resnet18")))
    assert list(one) == list(two)
    for name in one:
        assert one[name].code == two[name].code, name
    m1, m2 = dict(graph_modules(fresh(MIXED))), dict(graph_modules(fresh(MIXED)))
    assert list(m1) == list(m2)
    assert all(m1[n].code == m2[n].code for n in m1)


# ---- merges --------------------------------------------------------------------------


def _known_conv(model: nn.Module, path: str) -> nn.Conv2d:
    conv = model.get_submodule(path)
    with torch.no_grad():
        conv.weight.copy_(
            torch.arange(conv.weight.numel(), dtype=torch.float32).view_as(conv.weight)
        )
    return conv


def _expected_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return torch.einsum("oc,nchw->nohw", conv.weight[:, :, 0, 0], x)


def test_concat_follows_branch_order():
    x = torch.randn(2, 2, 3, 3)
    first = fresh("network c { input [2, 3, 3]; concat { identity; k: conv(3, 1, bias=false) } }")
    conv = _known_conv(first, "k")
    out = first(x)
    assert out.shape == (2, 5, 3, 3)
    assert torch.equal(out[:, :2], x)
    torch.testing.assert_close(out[:, 2:], _expected_conv(x, conv))

    second = fresh("network c { input [2, 3, 3]; concat { k: conv(3, 1, bias=false); identity } }")
    conv = _known_conv(second, "k")
    out = second(x)
    torch.testing.assert_close(out[:, :3], _expected_conv(x, conv))
    assert torch.equal(out[:, 3:], x)


def test_concat_of_three_branches_in_a_block():
    src = """
    block tri() {
      concat { a: conv(1, 1, bias=false); identity; b: conv(2, 1, bias=false) }
    }
    network c { input [2, 3, 3]; t: tri() }
    """
    model = fresh(src)
    a, b = _known_conv(model, "t.a"), _known_conv(model, "t.b")
    with torch.no_grad():
        a.weight.neg_()
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        out = model(x)
    expected = torch.cat([_expected_conv(x, a), x, _expected_conv(x, b)], 1)
    torch.testing.assert_close(out, expected)
    assert "torch.cat" in model.t.code


def test_add_sums_all_branches():
    model = fresh(
        "network a { input [2, 3, 3]; add { identity; k: conv(2, 1, bias=false); identity } }"
    )
    conv = _known_conv(model, "k")
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), 2 * x + _expected_conv(x, conv))


def test_empty_if_branch_is_identity():
    model = fresh(
        "network a { input [2, 3, 3]; add { k: conv(2, 1, bias=false); if false { relu } } }"
    )
    conv = _known_conv(model, "k")
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x + _expected_conv(x, conv))


SE = """
network se(c = 6) {
  input [6, 5, 5]
  mul { identity; (global_avgpool -> fc: conv(c, 1) -> sigmoid) }
}
"""


@pytest.mark.parametrize("gate_first", [False, True])
def test_mul_broadcasts_squeeze_excitation_gate(gate_first):
    src = SE
    if gate_first:
        src = src.replace(
            "identity; (global_avgpool -> fc: conv(c, 1) -> sigmoid)",
            "(global_avgpool -> fc: conv(c, 1) -> sigmoid); identity",
        )
    graph = archdsl.check(src)
    assert graph.output_shape == (6, 5, 5)
    model = fresh(src)
    x = torch.randn(3, 6, 5, 5)
    fc = model.fc
    gate = torch.sigmoid(nn.functional.conv2d(x.mean((2, 3), keepdim=True), fc.weight, fc.bias))
    assert gate.shape == (3, 6, 1, 1)
    with torch.no_grad():
        out = model(x)
    assert out.shape == x.shape
    torch.testing.assert_close(out, x * gate)


def test_mul_of_three_branches():
    model = fresh(
        "network m { input [2, 3, 3]; mul { identity; identity; k: conv(2, 1, bias=false) } }"
    )
    conv = _known_conv(model, "k")
    x = torch.randn(2, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), x * x * _expected_conv(x, conv))


MERGE_OF_ONE_TENSOR = (
    "network n {{ input [2, 3, 3]; {kind} {{ if false {{ relu }}; if false {{ relu }} }} }}"
)


@pytest.mark.parametrize(
    "kind, expected",
    [
        ("add", lambda x: x + x),
        ("concat", lambda x: torch.cat([x, x], 1)),
        ("mul", lambda x: x * x),
    ],
)
def test_merge_of_the_same_tensor_twice(kind, expected):
    graph = archdsl.check(MERGE_OF_ONE_TENSOR.format(kind=kind))
    (merge,) = [n for n in graph.nodes() if n.op == kind]
    assert len(graph.inputs(merge.id)) == 2
    x = torch.randn(2, 2, 3, 3)
    out = archdsl.build(graph)(x)
    assert tuple(out.shape[1:]) == graph.output_shape
    assert torch.equal(out, expected(x))


def test_concat_keeps_repeated_branch_positions():
    src = (
        "network n { input [2, 3, 3]; relu -> concat { if false { relu }; k: conv(1, 1); "
        "if false { relu } } }"
    )
    graph = archdsl.check(src)
    assert graph.output_shape == (5, 3, 3)
    model = archdsl.build(graph)
    x = torch.randn(2, 2, 3, 3)
    r = torch.relu(x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.cat([r, model.k(r), r], 1))


def test_scope_holding_only_a_merge():
    model = fresh("network n { input [2, 3, 3]; m: add { identity; identity } -> relu }")
    assert isinstance(model.m, fx.GraphModule)
    x = torch.randn(2, 2, 3, 3)
    torch.testing.assert_close(model.m(x), 2 * x)
    torch.testing.assert_close(model(x), torch.relu(2 * x))


# ---- side outputs ------------------------------------------------------------------------

SIDE = """
network aux_net {
  input [3, 8, 8]
  stem: conv(4, 3, padding=1) -> relu
  -> side aux: (global_avgpool(flatten=true) -> linear(2))
  -> conv(4, 1) -> global_avgpool(flatten=true) -> fc: linear(3)
}
"""


def test_side_outputs_in_training_mode_only():
    model = fresh(SIDE)
    assert "aux.1.weight" in model.state_dict()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = model.train()(x)
        assert isinstance(out, tuple) and len(out) == 2
        assert out[0] is out.out and out[1] is out.aux
        assert out.out.shape == (2, 3) and out.aux.shape == (2, 2)
        # the side branch is the head applied to the stem's output
        stem = torch.relu(model.stem(x))
        torch.testing.assert_close(out.aux, model.aux(stem))
        plain = model.eval()(x)
    assert isinstance(plain, torch.Tensor) and not isinstance(plain, tuple)
    torch.testing.assert_close(plain, out.out)
    ep = torch.export.export(model, (x,))
    torch.testing.assert_close(ep.module()(x), plain)


NAMED_OUTPUTS = """
network named {
  input [3, 8, 8]
  outputs(logits=out, late, early_head=early)
  stem: conv(4, 3, padding=1) -> relu
  -> side early: (global_avgpool(flatten=true) -> linear(2))
  -> conv(4, 1) -> relu
  -> side late: (global_avgpool(flatten=true) -> linear(5))
  -> global_avgpool(flatten=true) -> fc: linear(3)
}
"""


def test_outputs_statement_leaves_out_side_outputs_not_made() -> None:
    """A field for a side output under an if that was false is left out; with none made,
    training mode returns the main output alone. A field naming no side output the body
    writes is still an error."""
    src = NAMED_OUTPUTS.replace("network named {", "network named(early = true, late = true) {")
    src = src.replace(
        "-> side early: (global_avgpool(flatten=true) -> linear(2))",
        "-> if early { side early: (global_avgpool(flatten=true) -> linear(2)) }",
    )
    src = src.replace(
        "-> side late: (global_avgpool(flatten=true) -> linear(5))",
        "-> if late { side late: (global_avgpool(flatten=true) -> linear(5)) }",
    )
    x = torch.randn(2, 3, 8, 8)
    assert fresh(src).train()(x)._fields == ("logits", "late", "early_head")
    assert fresh(src, early=False).train()(x)._fields == ("logits", "late")
    out = fresh(src, early=False, late=False).train()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 3)
    with pytest.raises(archdsl.ArchNameError, match="no output named 'lates'"):
        archdsl.check(src.replace("outputs(logits=out, late,", "outputs(logits=out, lates,"))


def test_outputs_statement_names_and_orders_training_outputs(tmp_path):
    model = fresh(NAMED_OUTPUTS)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        out = model.train()(x)
        assert out.names == ("logits", "late", "early_head")
        assert [t.shape[1] for t in out] == [3, 5, 2]  # fc, late, early: the fields' order
        assert out[0] is out.logits and out[1] is out.late and out[2] is out.early_head
        torch.testing.assert_close(out.early_head, model.early(torch.relu(model.stem(x))))
        assert not hasattr(out, "out") and not hasattr(out, "early")
        assert list(out._asdict()) == list(out.names) and out._asdict()["late"] is out.late
        # a namedtuple, as torchvision's GoogLeNetOutputs: torch's pytree and DataParallel's
        # gather (type(out)._make) rebuild it with its fields
        assert out._fields == out.names
        leaves, spec = torch.utils._pytree.tree_flatten(out)
        assert len(leaves) == 3 and leaves[1] is out.late
        rebuilt = torch.utils._pytree.tree_unflatten(leaves, spec)
        assert type(rebuilt) is type(out) and rebuilt.early_head is out.early_head
        assert type(out)._make(iter(out)).late is out.late
        for copied in (pickle.loads(pickle.dumps(out)), copy.deepcopy(out), copy.copy(out)):
            assert type(copied) is type(out) and copied.names == out.names
            assert torch.equal(copied.early_head, out.early_head)
        assert repr(out).startswith("Outputs(logits=tensor(") and ", early_head=tensor(" in repr(
            out
        )
        plain = model.eval()(x)
        torch.testing.assert_close(plain, out.logits)
        path = tmp_path / "named.pt"
        torch.save(model, path)
        loaded = torch.load(path, weights_only=False).train()
        assert loaded(x).names == out.names
        torch.testing.assert_close(loaded(x).early_head, out.early_head)
        # optimised for inference: the main output alone, whatever field names it
        fast = archdsl.optimize_for_inference(fresh(NAMED_OUTPUTS).eval())
        assert fast(x).shape == (2, 3) and not hasattr(fast, "early")


# ---- persistence -------------------------------------------------------------------------


def test_state_dict_round_trip(tmp_path):
    model = fresh(MIXED, seed=1)
    with torch.no_grad():
        model(torch.randn(4, 3, 20, 20))  # move the batch-norm running statistics
    model.eval()
    path = tmp_path / "mixed.pt"
    torch.save(model.state_dict(), path)

    other = fresh(MIXED, seed=2).eval()
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        assert not torch.allclose(other(x), model(x))
    result = other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    with torch.no_grad():
        assert torch.equal(other(x), model(x))


def test_resnet18_state_dict_round_trip(tmp_path, resnet18, x64):
    path = tmp_path / "r18.pt"
    torch.save(resnet18.state_dict(), path)
    torch.manual_seed(123)
    other = archdsl.load("resnet18", num_classes=10)
    other.load_state_dict(torch.load(path, weights_only=True), strict=True)
    other.eval()
    with torch.no_grad():
        assert torch.equal(other(x64), resnet18(x64))


def test_load_state_dict_rejects_other_network():
    small = fresh(TINY)
    with pytest.raises(RuntimeError, match="size mismatch"):
        fresh(TINY, num_classes=7).load_state_dict(small.state_dict(), strict=True)


def test_whole_model_pickle_round_trip(tmp_path):
    model = fresh(MIXED).eval()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    loaded = torch.load(path, weights_only=False)
    x = torch.randn(2, 3, 20, 20)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert isinstance(loaded.get_submodule("stage.0.downsample.0"), nn.Conv2d)


def test_whole_model_pickle_round_trip_with_side_outputs(tmp_path):
    model = fresh(SIDE)
    path = tmp_path / "side.pt"
    torch.save(model, path)
    loaded = torch.load(path, weights_only=False)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.train()(x).aux, model.train()(x).aux)
        torch.testing.assert_close(loaded.eval()(x), model.eval()(x))


# ---- labels that clash with Python -------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    [
        "class",
        "lambda",
        "self",
        "forward",
        "graph",
        "code",
        "training",
        "float",
        "to",
        "eval",
        "type",
        "modules",
        "state_dict",
    ],
)
def test_label_that_clashes_with_python_names(label):
    src = f"network n {{ input [2, 4, 4]; {label}: conv(3, 1) -> relu }}"
    try:
        graph = archdsl.check(src)
    except archdsl.ArchError as e:
        assert (e.line, e.column) == (1, src.index(f"{label}:") + 1)
        return
    model = archdsl.build(graph)
    x = torch.randn(1, 2, 4, 4)
    conv = model.get_submodule(label)
    assert isinstance(conv, nn.Conv2d)
    model = model.float().to("cpu").eval()
    assert list(model.state_dict()) == [f"{label}.weight", f"{label}.bias"]
    with torch.no_grad():
        torch.testing.assert_close(model(x), torch.relu(conv(x)))


# ---- CUDA ---------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(resnet18, x64):
    gpu = archdsl.load("resnet18", num_classes=10, device="cuda").eval()
    gpu.load_state_dict(resnet18.state_dict())
    assert all(p.is_cuda for p in gpu.parameters())
    moved = archdsl.load("resnet18", num_classes=10)
    moved.load_state_dict(resnet18.state_dict())
    moved = moved.cuda().eval()
    with torch.no_grad():
        ref = resnet18(x64)
        for model in (gpu, moved):
            out = model(x64.cuda())
            assert out.is_cuda
            torch.testing.assert_close(out.cpu(), ref, rtol=1e-3, atol=1e-3)


def test_scopes_are_what_torch_fx_makes_from_the_same_graph():
    """The backend makes scope modules without torch.fx's per-scope compile and setattr
    costs (``fx_scopes.ScopeModule``: a shared class and ``forward`` for scopes of the same
    code, attributes set directly), setting what the installed torch's ``GraphModule.__init__``
    and ``recompile`` set. This compares each scope with the GraphModule torch.fx makes
    from the same graph, attribute for attribute, so a torch that sets more or otherwise
    fails here."""
    import copy

    from archdsl.backends.fx_scopes import is_child

    model = archdsl.build(archdsl.check(MIXED))
    scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
    kinds = {(type(m).forward, type(m).__name__) for m in scopes}
    assert len(kinds) == len({type(m) for m in scopes}) < len(scopes)  # one class per kind
    x = torch.randn(2, 3, 16, 16)
    for m in scopes:
        ref = fx.GraphModule(dict(m.named_children()), copy.deepcopy(m.graph), type(m).__name__)
        mine = {k: v for k, v in vars(m).items() if k != "archdsl_graph"}  # the root's, build's
        theirs = vars(ref)
        assert mine.keys() == theirs.keys()
        for key, value in mine.items():
            if key == "_graph":
                assert value.owning_module is m and theirs[key].owning_module is ref
            elif key == "_modules":
                assert list(value.items()) == list(theirs[key].items())
            else:
                assert value == theirs[key], key
        cls, ref_cls = type(m), type(ref)
        # what the backend changes on purpose: a class attribute reading each child (which
        # TorchScript is told not to compile), and calls going straight to nn.Module.__call__
        children = {k for k, v in vars(cls).items() if is_child(v)}
        assert children == set(m._modules)
        assert set(cls.__jit_unused_properties__) == {
            *fx.GraphModule.__jit_unused_properties__,
            *children,
        }
        unused = {"__jit_unused_properties__"}
        assert vars(cls).keys() - unused - children == vars(ref_cls).keys() - {"__call__"}
        assert cls.__call__ is nn.Module.__call__ is not ref_cls.__call__
        assert cls.__name__ == ref_cls.__name__
        assert m._wrapped_call.cls is cls and ref._wrapped_call.cls is ref_cls
        assert cls.forward.__code__.co_code == ref_cls.forward.__code__.co_code
    model.eval()
    ref_root = fx.GraphModule(dict(model.named_children()), copy.deepcopy(model.graph))
    torch.testing.assert_close(model(x), ref_root(x))


def test_children_read_through_the_class_follow_later_changes():
    """Scopes read their children through a class attribute (faster than
    nn.Module.__getattr__); replacing, removing or re-registering a child is still seen."""
    model = archdsl.build(archdsl.check(MIXED)).eval()
    stem = model.stem
    first = stem.get_submodule("0")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        before = model(x)
        stem.add_module("0", nn.Identity())  # writes _modules directly
        assert isinstance(getattr(stem, "0"), nn.Identity)
        setattr(stem, "0", first)
        assert getattr(stem, "0") is first
        torch.testing.assert_close(model(x), before, rtol=0, atol=0)
        delattr(stem, "0")
        assert not hasattr(stem, "0")
        setattr(stem, "0", "plain")  # a name that is no longer a child: a plain attribute
        assert getattr(stem, "0") == "plain" and "0" not in stem._modules
        delattr(stem, "0")
        assert not hasattr(stem, "0")
        with pytest.raises(AttributeError):
            delattr(stem, "0")
        stem.register_buffer("0", torch.ones(1))
        assert torch.equal(getattr(stem, "0"), torch.ones(1))


def test_an_error_in_a_scope_shows_its_generated_line():
    model = archdsl.build(archdsl.check(MIXED)).eval()
    with pytest.raises(RuntimeError) as info:
        model(torch.randn(2, 5, 16, 16))  # 5 channels where the stem takes 3
    lines = traceback.format_tb(info.tb)
    assert any('getattr(self, "0")(x)' in line for line in lines), lines


def test_later_scopes_of_a_structure_make_their_fx_graph_when_asked():
    """A scope of the same structure as an earlier one takes its code at the build and
    copies its fx graph only when the graph is asked for, from a private copy of the first
    scope's graph: an edit of the first scope's graph afterwards does not leak into it."""
    model = archdsl.build(archdsl.check(RESNET_1111)).eval()
    scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
    lazy = [m for m in scopes if "_graph" not in vars(m)]
    assert len(lazy) >= 3  # layer2.0 .. layer4.0 are all like layer1.0... with a downsample
    firsts: dict[object, fx.GraphModule] = {}
    for m in scopes:
        if "_graph" in vars(m):
            firsts.setdefault(type(m).forward, m)
    pairs = [(m, firsts[type(m).forward]) for m in lazy]
    for first in {id(f): f for _, f in pairs}.values():
        placeholder = next(iter(first.graph.nodes))
        output = next(n for n in first.graph.nodes if n.op == "output")
        output.args = (placeholder,)  # the first scope, edited in place: now an identity
        first.graph.eliminate_dead_code()
        first.recompile()
    for m, first in pairs:
        assert m.graph.owning_module is m
        assert m.graph.python_code("self").src == m.code != first.code


def test_a_scope_made_like_another_copies_and_pickles():
    model = archdsl.build(archdsl.check(RESNET_1111)).eval()
    assert any("_graph" not in vars(m) for m in model.modules() if isinstance(m, fx.GraphModule))
    x = torch.randn(2, *model.archdsl_graph.input_shape)
    with torch.no_grad():
        expected = model(x)
        torch.testing.assert_close(copy.deepcopy(model)(x), expected, rtol=0, atol=0)
        model = archdsl.build(archdsl.check(RESNET_1111)).eval()
        model.load_state_dict(copy.deepcopy(model.state_dict()))
        again = pickle.loads(pickle.dumps(model))
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def _scope_classes(model: nn.Module) -> tuple[int, int, int]:
    """Scopes, their classes, and distinct (code, class name) pairs; and every scope reads
    its children through its class."""
    from archdsl.backends.fx_scopes import ScopeModule, is_child

    scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
    for m in scopes:
        assert isinstance(m, ScopeModule)
        assert {k for k, v in vars(type(m)).items() if is_child(v)} >= set(m._modules)
        assert "__call__" not in vars(type(m))
    return (
        len(scopes),
        len({type(m) for m in scopes}),
        len({(m.code, type(m).__name__) for m in scopes}),
    )


@pytest.mark.parametrize("how", ["deepcopy", "pickle", "torch.save", "deepcopy, pickle"])
def test_copies_keep_the_classes_of_the_scopes(how: str) -> None:
    """A deepcopy (and so :func:`archdsl.optimize_for_inference`, which rewrites a copy) and
    an unpickled module keep each scope's class name, its children read through the class,
    one class for the scopes of one code and name, and the root's attributes: torch.fx
    makes a class per module, named "GraphModule" (and the extra class per scope costs 5%
    of a forward's time at batch 1), and its deepcopy keeps only what the graph uses."""
    import io

    def copied(model: nn.Module) -> nn.Module:
        for step in how.split(", "):
            if step == "deepcopy":
                model = copy.deepcopy(model)
            elif step == "pickle":
                model = pickle.loads(pickle.dumps(model))
            else:
                buffer = io.BytesIO()
                torch.save(model, buffer)
                buffer.seek(0)
                model = torch.load(buffer, weights_only=False)
        return model

    model = archdsl.build(archdsl.check(RESNET_1111)).eval()
    names = [type(m).__name__ for m in model.modules()]
    total, classes, distinct = _scope_classes(model)
    assert classes == distinct < total
    again = copied(model)
    assert [type(m).__name__ for m in again.modules()] == names
    assert _scope_classes(again) == (total, classes, distinct)
    assert again.archdsl_graph is not None and again.archdsl_graph.name == model.archdsl_graph.name
    x = torch.randn(2, *model.archdsl_graph.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)
        fast = archdsl.optimize_for_inference(again)  # batch norm folded: every scope recompiled
        total, classes, distinct = _scope_classes(fast)
        assert classes == distinct < total
        assert type(fast).__name__ == type(model).__name__
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit, deprecated in 2.13
def test_torchscript_compiles_a_network_its_copies_and_its_optimised_version() -> None:
    """TorchScript compiles a module's properties unless its class lists them as unused:
    the child properties are listed (TorchScript reads the children themselves), besides
    what torch.fx lists for GraphModule."""
    model = archdsl.build(archdsl.check(RESNET_1111)).eval()
    x = torch.randn(2, *model.archdsl_graph.input_shape)
    for module in (
        model,
        copy.deepcopy(model),
        pickle.loads(pickle.dumps(model)),
        archdsl.optimize_for_inference(model),
    ):
        scripted = torch.jit.script(module)
        with torch.no_grad():
            torch.testing.assert_close(scripted(x), module(x))


def test_a_copy_of_a_network_with_side_outputs_pickles() -> None:
    """Such a network pickles by rebuilding from its IR (torch.fx's re-tracing cannot see
    through the training-mode switch); its deepcopy keeps that and the IR."""
    model = fresh(SIDE)  # in training mode, where it returns the side outputs too
    again = pickle.loads(pickle.dumps(copy.deepcopy(model)))
    x = torch.randn(2, *model.archdsl_graph.input_shape)
    with torch.no_grad():
        assert len(again(x)) == len(model(x)) == 2
        torch.testing.assert_close(again.eval()(x), model.eval()(x), rtol=0, atol=0)


def test_a_scope_recompiled_after_the_build_changes_alone():
    """Scopes of the same code share a class and its ``forward``: an fx pass on one block
    moves it to a class of its own and leaves its twins as they were; recompiling without
    a change, or to the code another twin was given, shares a class again."""
    model = archdsl.build(archdsl.check(MIXED)).eval()
    scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
    first, twin = next(
        (a, b) for i, a in enumerate(scopes) for b in scopes[i + 1 :] if type(a) is type(b)
    )
    from archdsl.backends.fx_scopes import is_child

    shared, before = type(first), twin.code
    inputs: dict[str, torch.Tensor] = {}
    for name, scope in (("first", first), ("twin", twin)):
        scope.register_forward_pre_hook(lambda m, args, name=name: inputs.setdefault(name, args[0]))
    with torch.no_grad():
        model(torch.randn(2, 3, 16, 16))
        expected = {"first": first(inputs["first"]), "twin": twin(inputs["twin"])}
    twin.recompile()  # no change: stays
    assert type(twin) is shared and type(first) is shared

    def negate(scope: fx.GraphModule) -> None:
        out = next(n for n in scope.graph.nodes if n.op == "output")
        with scope.graph.inserting_before(out):
            neg = scope.graph.call_function(torch.neg, (out.args[0],))
        out.args = (neg,)
        scope.recompile()

    negate(first)
    assert "torch.neg" in first.code and twin.code == before
    assert type(twin) is shared is not type(first)
    assert type(first).forward is not shared.forward
    assert type(first).__name__ == shared.__name__
    assert {k for k, v in vars(type(first)).items() if is_child(v)} == set(first._modules)
    with torch.no_grad():
        torch.testing.assert_close(first(inputs["first"]), -expected["first"], rtol=0, atol=0)
        torch.testing.assert_close(twin(inputs["twin"]), expected["twin"], rtol=0, atol=0)
    negate(twin)
    assert type(twin) is type(first)  # the same edit, the same code: one class again
    with torch.no_grad():
        torch.testing.assert_close(twin(inputs["twin"]), -expected["twin"], rtol=0, atol=0)


def test_scopes_get_their_own_code_when_fx_records_profiler_metadata(monkeypatch):
    """With torch.fx's ``enrich_profiler_metadata`` on, ``recompile`` registers each
    module's own metadata, so no scope may take another's code; a torch without the
    setting (before 2.10) builds as with it off."""
    import types

    from torch.fx.experimental import _config as fx_config

    from archdsl.backends import torch_backend

    def forwards(model: nn.Module) -> tuple[int, int]:
        scopes = [m for m in model.modules() if isinstance(m, fx.GraphModule)]
        return len({type(m).forward for m in scopes}), len(scopes)

    shared, total = forwards(fresh(MIXED))
    assert shared < total
    if hasattr(fx_config, "enrich_profiler_metadata"):  # torch 2.10 and later
        with fx_config.patch(enrich_profiler_metadata=True):
            assert forwards(fresh(MIXED)) == (total, total)
    monkeypatch.setattr(torch_backend, "fx_experimental_config", types.SimpleNamespace())
    assert forwards(fresh(MIXED)) == (shared, total)
