"""The torch backend: generated fx code, module paths, and the torch features a user relies on.

Every scope compiles to a ``torch.fx.GraphModule`` with straight-line generated code, so the
compiled network must behave like any hand-written ``nn.Module``: submodules callable on
their own, runtime shapes equal to the checked ones, initialisation rules applied,
channels_last, autocast, ``torch.compile``, ``torch.export`` and a training step. ResNet-18
at a small resolution is the workhorse. What the forward computes (in-place ops, merges,
side outputs) is tested in test_torch_forward.py; saving, copying, CUDA and the scope
classes in test_torch_persistence.py.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import fx, nn

import archdsl
from archdsl.backends.torch_modules import build_module
from archdsl.fmt import format_source
from torchnets import MIXED, RES, RESNET_1111, TINY, fresh, graph_modules


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


def test_an_init_rule_names_a_numbered_module_by_its_path():
    """torchvision's SqueezeNet initialises its last convolution, ``classifier.1``, apart
    from the others; the lexer reads ``.1`` as a number, which a path may hold."""
    torch.manual_seed(0)
    model = archdsl.load("squeezenet1_1")
    final = model.get_submodule("classifier.1").weight  # 1000 x 512: normal(0, 0.01)
    assert abs(final.std().item() / 0.01 - 1) < 0.02
    first = model.get_submodule("features.0").weight  # kaiming_uniform (a=0): bound sqrt(6 / 27)
    assert first.abs().max().item() <= (6 / 27) ** 0.5
    assert first.std().item() > 0.1  # not the final conv's
    src = "network n {{ init {} = ones; input [3, 8, 8]; a: seq {{ relu; seq {{ conv(4, 1) }} }} }}"
    net = archdsl.compile(src.format("a.1.0.weight"))
    assert torch.equal(net.get_parameter("a.1.0.weight"), torch.ones(4, 3, 1, 1))
    assert "init a.1.0.weight = ones" in format_source(src.format("a .1 .0.weight"))
    for bad, word in (("a.1.0.1e3", ".1e3"), ("a.1.0", ".0")):
        with pytest.raises(archdsl.ArchError, match=f"init: '{word}' is not a part of a module"):
            archdsl.check(src.format(bad))


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


def test_an_init_rule_of_default_restores_pytorchs_after_a_general_one():
    """``init head.weight = default`` after ``init conv.weight = ones``: the head's weight
    is PyTorch's draw again (kaiming uniform, a = sqrt(5): within 1 / sqrt(fan_in)), its
    bias as it was, every other convolution's weight ones (LR-ASPP's head keeps PyTorch's
    init beside MobileNetV3's)."""
    torch.manual_seed(0)
    net = archdsl.compile(
        "network n { input [3, 8, 8]\n"
        "  init conv.weight = ones\n  init conv.bias = zeros\n  init head.weight = default\n"
        "  body: conv(16, 3) -> head: conv(8, 1) }"
    )
    assert torch.equal(net.body.weight, torch.ones(16, 3, 3, 3))
    weight = net.head.weight
    assert not torch.equal(weight, torch.ones_like(weight))
    assert 0 < weight.abs().max().item() <= 1 / math.sqrt(16)
    assert weight.std().item() > 0.05
    assert torch.equal(net.head.bias, torch.zeros(8))  # the rule before it, kept


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
