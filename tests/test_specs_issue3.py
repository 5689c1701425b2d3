"""DenseNet, MobileNetV2 and EfficientNet specs: the facts the reference records do not pin.

``test_specs.py`` already runs every bundled spec that has a reference record (keys,
shapes, parameter count, float64 golden logits, every inferred shape against torch). This
file checks what those cannot see: compound scaling by the coefficient phi, per-block
stochastic depth rates, dropout and batch-norm settings per variant, width multipliers,
concatenation order, and the init schemes. Expected values are computed here from
torchvision's rules, never read back from the compiler.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import archdsl
from archdsl.backends.torch_modules import StochasticDepth
from reference import load_reference


def make_divisible(v: float, divisor: int = 8) -> int:
    """torchvision's ``_make_divisible`` (models/_utils.py), restated for the tests."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def on_meta(name: str, **params: object) -> nn.Module:
    return archdsl.load(name, device="meta", **params)


def kids(module: nn.Module) -> list[nn.Module]:
    """A compiled scope's members in order (scopes are GraphModules, not nn.Sequential)."""
    return list(module.children())


# --- EfficientNet ----------------------------------------------------------------------

# torchvision's efficientnet_b0 inverted_residual_setting (the paper's Table 1):
# expand ratio, kernel, stride, input channels, output channels, layers.
B0_STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]
STOCHASTIC_DEPTH_PROB = 0.2

# torchvision's builders: width, depth, resolution (the paper's), dropout, batch norm eps
# and momentum.
VARIANTS = {
    "efficientnet_b0": (1.0, 1.0, 224, 0.2, 1e-5, 0.1),
    "efficientnet_b1": (1.0, 1.1, 240, 0.2, 1e-5, 0.1),
    "efficientnet_b2": (1.1, 1.2, 260, 0.3, 1e-5, 0.1),
    "efficientnet_b3": (1.2, 1.4, 300, 0.3, 1e-5, 0.1),
    "efficientnet_b4": (1.4, 1.8, 380, 0.4, 1e-5, 0.1),
    "efficientnet_b5": (1.6, 2.2, 456, 0.4, 1e-3, 0.01),
    "efficientnet_b6": (1.8, 2.6, 528, 0.5, 1e-3, 0.01),
    "efficientnet_b7": (2.0, 3.1, 600, 0.5, 1e-3, 0.01),
}


def expected_efficientnet(width: float, depth: float) -> list[dict[str, object]]:
    """Every MBConv block of a scaled EfficientNet, as torchvision builds it."""
    stages = [
        (t, k, s, make_divisible(cin * width), make_divisible(cout * width), math.ceil(n * depth))
        for t, k, s, cin, cout, n in B0_STAGES
    ]
    total = sum(n for *_, n in stages)
    blocks, block_id = [], 0
    for i, (t, k, s, cin, cout, n) in enumerate(stages):
        for j in range(n):
            inp, stride = (cin, s) if j == 0 else (cout, 1)
            blocks.append(
                {
                    "path": f"features.{i + 1}.{j}",
                    "in": inp,
                    "out": cout,
                    "kernel": k,
                    "stride": stride,
                    "expanded": make_divisible(inp * t),
                    "squeeze": max(1, inp // 4),
                    "residual": stride == 1 and inp == cout,
                    "drop": STOCHASTIC_DEPTH_PROB * float(block_id) / total,
                }
            )
            block_id += 1
    return blocks


def check_efficientnet_structure(model: nn.Module, width: float, depth: float) -> None:
    blocks = expected_efficientnet(width, depth)
    stem = model.get_submodule("features.0.0")
    assert stem.out_channels == make_divisible(32 * width) and stem.stride == (2, 2)
    for i, (*_, n) in enumerate(B0_STAGES):
        assert len(kids(model.get_submodule(f"features.{i + 1}"))) == math.ceil(n * depth)
    for b in blocks:
        layers = kids(model.get_submodule(f"{b['path']}.block"))
        depthwise = kids(layers[-3])[0]
        assert depthwise.groups == depthwise.out_channels == b["expanded"], b["path"]
        assert (
            depthwise.kernel_size == (b["kernel"],) * 2 and depthwise.stride == (b["stride"],) * 2
        )
        assert depthwise.padding == ((b["kernel"] - 1) // 2,) * 2
        assert layers[-2].fc1.out_channels == b["squeeze"], b["path"]
        assert kids(layers[-1])[0].out_channels == b["out"], b["path"]
        assert len(layers) == (4 if b["expanded"] != b["in"] else 3)
        names = dict(model.get_submodule(b["path"]).named_children())
        if b["residual"]:
            drop = names["stochastic_depth"]
            assert isinstance(drop, StochasticDepth) and drop.mode == "row"
            assert drop.p == b["drop"], b["path"]  # exactly torchvision's float arithmetic
        else:
            assert "stochastic_depth" not in names
    head = model.get_submodule("features.8.0")
    assert head.out_channels == 4 * make_divisible(320 * width)
    assert model.get_submodule("classifier.1").in_features == head.out_channels


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_efficientnet_variant(name: str) -> None:
    width, depth, resolution, dropout, eps, momentum = VARIANTS[name]
    graph = archdsl.load_graph(name)
    assert graph.input_shape == (3, resolution, resolution)
    assert graph.scaling == {"width": width, "depth": depth, "resolution": 1.0}
    model = archdsl.build(graph, device="meta")
    check_efficientnet_structure(model, width, depth)
    drop = model.get_submodule("classifier.0")
    assert isinstance(drop, nn.Dropout) and drop.p == dropout
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all((m.eps, m.momentum) == (eps, momentum) for m in norms)
    silus = sum(isinstance(m, nn.SiLU) for m in model.modules())
    # one SiLU per stem/head/expand/depthwise conv and one per SE block
    blocks = expected_efficientnet(width, depth)
    assert silus == 2 + sum(2 + (b["expanded"] != b["in"]) for b in blocks)


def test_efficientnet_scaled_by_phi() -> None:
    phi, alpha, beta, gamma = 1, 1.2, 1.1, 1.15  # the paper's Eq. 3 grid-search result
    source = (
        'import "efficientnet_b0.arch"\nnetwork efficientnet_phi1 = efficientnet_b0 scaled(phi=1)\n'
    )
    graph = archdsl.check(source)
    width, depth = beta**phi, alpha**phi
    assert graph.scaling == pytest.approx({"width": 1.1, "depth": 1.2, "resolution": 1.15})
    side = round(224 * gamma**phi)
    assert side == 258
    assert graph.input_shape == (3, side, side)
    assert graph.output_shape == (1000,)
    model = archdsl.build(graph, device="meta")
    check_efficientnet_structure(model, width, depth)
    # the rule worked out by hand for phi = 1: channels 32*1.1 = 35.2 -> 32, 17.6 -> 16,
    # 26.4 -> 24, 44 -> 48, 88 -> 88, 123.2 -> 120, 211.2 -> 208, 352 -> 352;
    # repeats ceil(n * 1.2): 2, 3, 3, 4, 4, 5, 2.
    repeats = [len(kids(model.get_submodule(f"features.{i}"))) for i in range(1, 8)]
    assert repeats == [2, 3, 3, 4, 4, 5, 2]
    outs = [kids(model.get_submodule(f"features.{i}.0.block"))[-1] for i in range(1, 8)]
    outs = [kids(project)[0].out_channels for project in outs]
    assert outs == [16, 24, 48, 88, 120, 208, 352]
    assert model.get_submodule("features.0.0").out_channels == 32
    assert model.get_submodule("classifier.1").in_features == 4 * 352
    # phi = 1 scales as B2 does (width 1.1, depth 1.2), at 258 instead of 260 pixels
    params = sum(p.numel() for p in model.parameters())
    assert params == load_reference("efficientnet_b2")["params"]
    with torch.no_grad():  # and torch agrees on every shape at 258x258
        out = model(torch.empty(1, 3, side, side, device="meta"))
    assert tuple(out.shape) == (1, 1000)


def test_phi_equals_the_explicit_multipliers() -> None:
    by_phi = archdsl.check(
        'import "efficientnet_b0.arch"\nnetwork by_phi = efficientnet_b0 scaled(phi=2)\n'
    )
    explicit = archdsl.check(
        'import "efficientnet_b0.arch"\n'
        "network explicit = efficientnet_b0 scaled(width=1.21, depth=1.44, resolution=1.3225)\n"
    )
    assert by_phi.input_shape == explicit.input_shape == (3, 296, 296)  # round(224 * 1.3225)
    assert [n.shape for n in by_phi.nodes()] == [n.shape for n in explicit.nodes()]


def test_efficientnet_stochastic_depth_only_in_training() -> None:
    torch.manual_seed(0)
    model = archdsl.load("efficientnet_b0", resolution=64).double().eval()
    # the last residual block, network-wide block 14 of 16 (features.7.0 changes width)
    block = model.get_submodule("features.6.3")
    p = block.stochastic_depth.p
    assert p == 0.2 * 14 / 16
    x = torch.randn(64, 192, 2, 2, dtype=torch.float64)
    with torch.no_grad():
        branch = block.get_submodule("block")(x)
        assert torch.equal(block(x), x + branch)  # eval: the plain residual
        block.stochastic_depth.train()  # only the drop in training (BN keeps running stats)
        out = block(x)
    dropped = torch.isclose(out, x).flatten(1).all(dim=1)
    kept = torch.isclose(out, x + branch / (1 - p)).flatten(1).all(dim=1)
    assert bool((dropped ^ kept).all())  # each sample skips the whole branch or keeps it
    assert 0 < int(dropped.sum()) < 32  # about p * 64 = 11 of them skip it


def test_efficientnet_init() -> None:
    torch.manual_seed(0)
    model = archdsl.load("efficientnet_b0")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs:
        if conv.bias is not None:  # squeeze-excitation's fc1 and fc2
            assert torch.count_nonzero(conv.bias) == 0
    big = [c for c in convs if c.weight.numel() > 20_000]
    for conv in big:  # kaiming_normal, fan_out, gain sqrt(2)
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        expected = math.sqrt(2.0 / fan_out)
        assert abs(conv.weight.std().item() - expected) < 0.1 * expected
    fc = model.get_submodule("classifier.1")
    bound = 1 / math.sqrt(fc.out_features)
    assert fc.weight.abs().max().item() <= bound
    assert abs(fc.weight.std().item() - bound / math.sqrt(3)) < 0.05 * bound
    assert torch.count_nonzero(fc.bias) == 0


def test_efficientnet_init_range_follows_num_classes() -> None:
    torch.manual_seed(0)
    model = archdsl.load("efficientnet_b0", num_classes=16, resolution=32)
    fc = model.get_submodule("classifier.1")
    assert fc.out_features == 16
    assert 0.2 < fc.weight.abs().max().item() <= 1 / math.sqrt(16)


# --- MobileNetV2 -----------------------------------------------------------------------

# torchvision's inverted_residual_setting (the paper's Table 2): t, c, n, s.
MOBILENET_V2_SETTING = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


@pytest.mark.parametrize("width_mult", [0.35, 0.5, 0.75, 1.0, 1.4])
def test_mobilenet_v2_width_multiplier(width_mult: float) -> None:
    graph = archdsl.load_graph("mobilenet_v2", width_mult=width_mult)
    model = archdsl.build(graph, device="meta")
    c_in = make_divisible(32 * width_mult)
    assert model.get_submodule("features.0.0").out_channels == c_in
    index = 1
    for t, c, n, s in MOBILENET_V2_SETTING:
        c_out = make_divisible(c * width_mult)
        for i in range(n):
            stride = s if i == 0 else 1
            block = model.get_submodule(f"features.{index}")
            hidden = int(round(c_in * t))
            layers = kids(block.conv)
            assert len(layers) == (3 if t == 1 else 4)
            depthwise = kids(layers[-3])[0]
            assert depthwise.in_channels == depthwise.groups == hidden
            assert depthwise.stride == (stride, stride)
            assert layers[-2].out_channels == c_out
            residual = stride == 1 and c_in == c_out
            assert (graph.node(graph.scopes[f"features.{index}"].output).op == "add") == residual
            c_in = c_out
            index += 1
    last = make_divisible(1280 * max(1.0, width_mult))
    assert model.get_submodule(f"features.{index}.0").out_channels == last
    assert model.get_submodule("classifier.1").in_features == last
    assert len(kids(model.features)) == index + 1


def test_mobilenet_v2_init() -> None:
    torch.manual_seed(0)
    model = archdsl.load("mobilenet_v2")
    fc = model.get_submodule("classifier.1")
    assert abs(fc.weight.std().item() - 0.01) < 0.001
    assert torch.count_nonzero(fc.bias) == 0
    assert model.get_submodule("classifier.0").p == 0.2
    conv = model.get_submodule("features.18.0")
    expected = math.sqrt(2.0 / conv.out_channels)  # 1x1, fan_out
    assert abs(conv.weight.std().item() - expected) < 0.05 * expected
    assert all(isinstance(model.get_submodule(f"features.{i}.2"), nn.ReLU6) for i in (0, 18))


# --- DenseNet --------------------------------------------------------------------------

# torchvision's densenet builders: growth rate, block config, initial features.
DENSENETS = {
    "densenet121": (32, (6, 12, 24, 16), 64),
    "densenet161": (48, (6, 12, 36, 24), 96),
    "densenet169": (32, (6, 12, 32, 32), 64),
    "densenet201": (32, (6, 12, 48, 32), 64),
}


@pytest.mark.parametrize("name", sorted(DENSENETS))
def test_densenet_widths(name: str) -> None:
    growth, config, features = DENSENETS[name]
    model = on_meta(name)
    assert model.features.conv0.out_channels == features
    for i, layers in enumerate(config):
        block = model.features.get_submodule(f"denseblock{i + 1}")
        assert len([c for c in block.children() if type(c).__name__ == "DenseLayer"]) == layers
        for j in range(layers):
            layer = block.get_submodule(f"denselayer{j + 1}")
            assert layer.conv1.in_channels == features + j * growth
            assert layer.conv1.out_channels == 4 * growth
            assert layer.conv2.out_channels == growth
        features += layers * growth
        if i < len(config) - 1:
            features //= 2
            assert model.features.get_submodule(f"transition{i + 1}").conv.out_channels == features
    assert model.features.norm5.num_features == model.classifier.in_features == features


def test_densenet_concatenates_after_the_input() -> None:
    torch.manual_seed(0)
    model = archdsl.load("densenet121").eval()
    x = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        out = model.features.denseblock1(x)
        first = model.features.denseblock1.denselayer1(x)
    assert out.shape == (2, 64 + 6 * 32, 8, 8)
    assert torch.equal(out[:, :64], x)  # the block input comes first, then each layer's maps
    assert torch.equal(out[:, 64:96], first)


def test_densenet_init() -> None:
    torch.manual_seed(0)
    model = archdsl.load("densenet121")
    conv = model.features.denseblock4.denselayer16.conv2
    fan_in = conv.in_channels * 9
    expected = math.sqrt(2.0 / fan_in)  # kaiming_normal, fan_in
    assert abs(conv.weight.std().item() - expected) < 0.05 * expected
    assert torch.count_nonzero(model.classifier.bias) == 0
    bound = 1 / math.sqrt(model.classifier.in_features)  # PyTorch's default weight init kept
    assert model.classifier.weight.abs().max().item() <= bound
    assert all(
        torch.all(m.weight == 1) and torch.all(m.bias == 0)
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )


@pytest.mark.parametrize("name", ["densenet121", "mobilenet_v2", "efficientnet_b0"])
def test_init_is_deterministic(name: str) -> None:
    torch.manual_seed(0)
    a = archdsl.load(name).state_dict()
    torch.manual_seed(0)
    b = archdsl.load(name).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_scaled_clauses_multiply_along_a_chain_of_derivations() -> None:
    """docs/language.md: clauses multiply, across clauses and across ``network b = a``."""
    source = (
        "block cb(out) { conv(scale_channels(out), 3, padding=1) -> relu }\n"
        "network family { input [3, 32, 32]; cb(12) x scale_depth(2) }\n"
        "network a1 = family scaled(width=2) scaled(depth=1.5)\n"
        "network a2 = a1 scaled(width=2, resolution=0.5)\n"
    )
    base = archdsl.check(source, network="family")
    assert base.scaling == {"width": 1.0, "depth": 1.0, "resolution": 1.0}
    assert base.output_shape == (16, 32, 32)  # scale_channels still rounds: 12 -> 16
    a2 = archdsl.check(source, network="a2")
    assert a2.scaling == {"width": 4.0, "depth": 1.5, "resolution": 0.5}
    assert a2.input_shape == (3, 16, 16)
    convs = [n for n in a2.nodes() if n.op == "conv"]
    assert len(convs) == 3  # ceil(2 * 1.5)
    assert a2.output_shape == (48, 16, 16)  # 12 * 4
