"""Every bundled spec against torch and against the reference records.

Parametrized over the spec registry (``archdsl.list_specs()``):

- specs with a reference record (``tests/data/reference/``) must have torchvision's exact
  state_dict keys and shapes and parameter count, and reproduce the golden logits after
  the reference fill, in float64, to within 1e-6 of the largest logit;
- every spec's statically inferred shapes must be the shapes torch produces, node by node
  (forward hooks on the compiled module, run on the meta device: no memory, no FLOPs);
- the ``init`` declarations must do what torchvision does, deterministically.

Golden runs of big networks (over 100M parameters or 10 GFLOPs, or inputs over 224x224) take
seconds each in float64 on a CPU and are marked slow; CI still runs them.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import archdsl
from archdsl.ir import Graph
from archdsl.ops import PARAMETER_OPS
from reference import fill, golden_input, load_reference, reference_names

SPECS = archdsl.list_specs()
REFERENCED = sorted(set(reference_names()) & set(SPECS))

# Beyond any of these a golden run takes ~5 s or more on two cores (filling and running in
# float64); inputs over 224 pixels are slow mostly through their depthwise convolutions.
SLOW_PARAMS = 100_000_000
SLOW_FLOPS = 10_000_000_000
SLOW_RESOLUTION = 224
GOLDEN_RTOL = 1e-6  # of max |golden logit| (float64; see tests/data/reference/README.md)
# Beyond this many FLOPs a sample (the record's count, batch 1) the golden run compares the
# first of the two samples alone: the second would add seconds to half a minute in float64
# (the segmentation networks at 520 x 520, RegNetY-128GF, EfficientNet-B7 at 600, the
# largest ConvNeXt and RegNets), and checks nothing the first does not.
ONE_SAMPLE_FLOPS = 60_000_000_000


def _is_slow(name: str) -> bool:
    ref = load_reference(name)
    return (
        ref["params"] > SLOW_PARAMS
        or ref["flops"] > SLOW_FLOPS
        or ref["resolution"] > SLOW_RESOLUTION
    )


def _params(names: list[str]) -> list[object]:
    return [pytest.param(n, marks=pytest.mark.slow) if _is_slow(n) else n for n in names]


def on_meta(name: str, **params: object) -> nn.Module:
    """The compiled network with meta tensors: names, shapes and wiring, no storage."""
    return archdsl.load(name, device="meta", **params)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_classic_networks_are_bundled():
    expected = {"alexnet", "lenet5", "resnet50", "vgg11", "vgg16_bn", "vgg19_bn"}
    assert expected <= set(SPECS)
    assert "lenet5" not in REFERENCED  # tested on its own below


@pytest.mark.parametrize(
    "name, hint",
    [
        ("resnet5", "no bundled spec 'resnet5'; did you mean 'resnet50'?"),
        ("my_net.arch", "for a spec file, archdsl.compile_file('my_net.arch') builds its network"),
        ("nets/resnet50", "archdsl.check_file('nets/resnet50') checks it"),
    ],
)
def test_an_unknown_bundled_name_says_what_was_meant(name: str, hint: str):
    """``load`` takes bundled names; a file name gets pointed at the functions for files."""
    with pytest.raises(archdsl.ArchNameError) as info:
        archdsl.load_graph(name)
    assert hint in info.value.message


@pytest.mark.parametrize(
    "text, note",
    [
        ("resnet50", "for the bundled network, load_graph('resnet50') or load('resnet50')"),
        ("  specs/resnet50.arch\n", "check_file('specs/resnet50.arch') or compile_file("),
        ("my_net", None),  # neither a bundled name nor a file: no guess
        ("network t { input [3, 8, 8]; conv(4, 3) -> }", None),
    ],
)
def test_spec_text_that_is_a_name_points_at_the_functions_for_names(text: str, note: str | None):
    """``check``/``compile`` take spec text; the reverse of the case above."""
    with pytest.raises(archdsl.ArchSyntaxError) as info:
        archdsl.check(text)
    notes = [n for n in info.value.notes if "take spec text" in n]
    if note is None:
        assert notes == []
    else:
        assert len(notes) == 1 and note in notes[0]


# --- against the reference records -----------------------------------------------------


@pytest.mark.parametrize("name", REFERENCED)
def test_state_dict_matches_reference(name: str):
    ref = load_reference(name)
    shapes = {k: list(t.shape) for k, t in on_meta(name).state_dict().items()}
    assert shapes.keys() == ref["state_dict"].keys()
    assert shapes == ref["state_dict"]


@pytest.mark.parametrize("name", REFERENCED)
def test_parameter_count_matches_reference(name: str):
    expected = load_reference(name)["params"]
    assert archdsl.count_params(archdsl.load_graph(name)) == expected  # static, no torch
    assert n_params(on_meta(name)) == expected


@pytest.mark.parametrize("name", REFERENCED)
def test_inferred_output_shape_matches_reference(name: str):
    ref = load_reference(name)
    graph = archdsl.load_graph(name)
    assert graph.input_shape == (3, ref["resolution"], ref["resolution"])
    assert [2, *graph.output_shape] == ref["output_shape"]


@pytest.mark.parametrize("name", _params(REFERENCED))
def test_golden_logits(name: str):
    ref = load_reference(name)
    # Built on meta and given storage without running any init: `fill` overwrites every
    # floating tensor anyway (the rest, batch norm's counters, is unused in eval mode), and
    # skipping the init saves seconds on the big networks.
    model = on_meta(name).to_empty(device="cpu")
    fill(model).double().eval()
    x = golden_input(ref["resolution"])
    golden = torch.tensor(ref["golden_logits"], dtype=torch.float64)
    shape = list(ref["output_shape"])
    if ref["flops"] > ONE_SAMPLE_FLOPS:
        x, golden, shape = x[:1], golden[:1], [1, *shape[1:]]
    with torch.no_grad():
        out = model(x)
    assert list(out.shape) == shape
    if "golden_stride" in ref:  # a map per class: the record keeps every stride-th position
        step = ref["golden_stride"]
        out = out[:, :, ::step, ::step].flatten(1)
    err = (out - golden).abs().max().item()
    assert err <= GOLDEN_RTOL * golden.abs().max().item(), f"max |error| {err:.3g}"


# --- static shapes against torch, node by node -------------------------------------------


def torch_shapes(model: nn.Module, graph: Graph) -> dict[str, tuple[int, ...]]:
    """The per-sample output shape of every submodule the graph names (op nodes and
    scopes), recorded by forward hooks while ``model`` runs once on meta tensors.

    The model stays in training mode, so side outputs (auxiliary classifiers) run too;
    the batch is 2 because batch norm refuses a single value per channel in training."""
    seen: dict[str, tuple[int, ...]] = {}
    ops = [n.path for n in graph.nodes() if n.path is not None and n.op not in PARAMETER_OPS]
    paths = ops + list(graph.scopes)
    handles = []
    for path in paths:

        def hook(_m: nn.Module, _args: object, out: torch.Tensor, path: str = path) -> None:
            assert path not in seen, f"{path} ran twice"
            seen[path] = tuple(out.shape[1:])

        handles.append(model.get_submodule(path).register_forward_hook(hook))
    try:
        out = model(torch.empty(2, *graph.input_shape, device="meta"))
    finally:
        for h in handles:
            h.remove()
    if isinstance(out, tuple) and graph.returns_fields:  # values returned, by field
        for name, value in zip(graph.output_fields, out, strict=True):
            seen[f"output {name}"] = tuple(value.shape[1:])
        out = out[list(graph.output_fields.values()).index(graph.output)]
    elif isinstance(out, tuple):  # training-mode side outputs: the main output comes first
        out = out[0]
    seen[""] = tuple(out.shape[1:])
    return seen


@pytest.mark.parametrize("name", SPECS)
def test_every_inferred_shape_is_torchs(name: str):
    graph = archdsl.load_graph(name)
    model = archdsl.build(graph, device="meta")
    seen = torch_shapes(model, graph)
    assert seen[""] == graph.output_shape
    for name, node_id in graph.output_fields.items() if graph.returns_fields else ():
        assert seen[f"output {name}"] == graph.node(node_id).shape, f"output {name}"
    for node in graph.nodes():
        # (a layer scale has no module to hook: the layer after it reads its output)
        if node.path is not None and node.op not in PARAMETER_OPS:
            assert seen[node.path] == node.shape, f"{node.op} '{node.path}'"
    # Scopes end in merges too (a residual add is the last node of a block until its relu).
    for path, scope in graph.scopes.items():
        assert seen[path] == graph.node(scope.output).shape, f"scope '{path}'"


# --- LeNet-5, which has no reference record ----------------------------------------------

LENET5_PARAMS = 61_706  # conv 156 + 2,416 + 48,120; linear 10,164 + 850


def test_lenet5():
    graph = archdsl.load_graph("lenet5")
    assert graph.input_shape == (1, 32, 32)
    assert graph.output_shape == (10,)
    assert archdsl.count_params(graph) == LENET5_PARAMS
    model = archdsl.build(graph)
    assert n_params(model) == LENET5_PARAMS
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {
        "c1.weight": (6, 1, 5, 5),
        "c1.bias": (6,),
        "c3.weight": (16, 6, 5, 5),  # every S2 map feeds every C3 map
        "c3.bias": (16,),
        "c5.weight": (120, 16, 5, 5),
        "c5.bias": (120,),
        "f6.weight": (84, 120),
        "f6.bias": (84,),
        "out.weight": (10, 84),
        "out.bias": (10,),
    }
    with torch.no_grad():
        assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert archdsl.load_graph("lenet5", num_classes=26).output_shape == (26,)


@pytest.mark.parametrize("name", ["alexnet", "vgg11", "vgg16_bn"])
def test_num_classes_and_dropout_are_parameters(name: str):
    model = on_meta(name, num_classes=10, dropout=0.25)
    assert list(model.classifier.children())[-1].out_features == 10
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(m.p == 0.25 for m in drops)


def torchvision_transform_input(x: torch.Tensor) -> torch.Tensor:
    """torchvision's ``GoogLeNet._transform_input`` (and ``Inception3``'s), written out."""
    x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
    x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
    return torch.cat((x_ch0, x_ch1, x_ch2), 1)


@pytest.mark.parametrize(("name", "resolution"), [("googlenet", 64), ("inception_v3", 299)])
def test_transform_input_is_torchvisions(name: str, resolution: int):
    """With their published weights torchvision turns transform_input on; so does
    ``transform_input=true``: the same state_dict, and the network computes, to the bit,
    what the plain one computes on torchvision's transformed input."""
    torch.manual_seed(0)
    plain = archdsl.load(name, resolution=resolution).eval()
    transformed = archdsl.load(name, resolution=resolution, transform_input=True).eval()
    assert list(transformed.state_dict()) == list(plain.state_dict())
    transformed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, resolution, resolution)
    with torch.no_grad():
        assert torch.equal(transformed(x), plain(torchvision_transform_input(x)))
        assert not torch.equal(transformed(x), plain(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_channel_affine_is_transform_input_to_the_bit(dtype: torch.dtype):
    graph = archdsl.check(
        'import "lib/inception.arch"\n'
        "network t { input [3, 16, 16]; channel_affine(transform_scale, transform_shift) }",
        search_path=[archdsl.spec_path("googlenet").parent],
    )
    module = archdsl.build(graph)
    x = torch.randn(4, 3, 16, 16).to(dtype)
    assert torch.equal(module(x), torchvision_transform_input(x))


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d"])
def test_replace_stride_with_dilation_is_torchvisions(name: str):
    """torchvision's replace_stride_with_dilation=[False, True, True] (DeepLabV3's
    backbone): the same state_dict; in a dilated stage the first block's 3x3 conv keeps the
    dilation before the stage, and stride 1 (its downsample too), the others take the
    dilation times 2; layer4 ends at 1/8 of the input."""
    plain = on_meta(name)
    dilated = on_meta(name, replace_stride_with_dilation=[False, True, True])
    assert {k: v.shape for k, v in dilated.state_dict().items()} == {
        k: v.shape for k, v in plain.state_dict().items()
    }
    expected = {
        "layer2": (2, [1, 1, 1, 1]),
        "layer3": (1, [1, 2, 2, 2, 2, 2]),
        "layer4": (1, [2, 4, 4]),
    }
    for stage, (stride, dilations) in expected.items():
        blocks = dilated.get_submodule(stage)
        convs = [blocks.get_submodule(f"{i}.conv2") for i in range(len(dilations))]
        assert [c.dilation[0] for c in convs] == dilations
        assert [c.padding[0] for c in convs] == dilations  # the map keeps its size
        assert [c.stride[0] for c in convs] == [stride] + [1] * (len(dilations) - 1)
        assert blocks.get_submodule("0.downsample.0").stride == (stride, stride)
    graph = archdsl.load_graph(name, replace_stride_with_dilation=[False, True, True])
    layer4 = graph.node(graph.scopes["layer4"].output)
    assert layer4.shape == (2048, 28, 28)  # 224 / 8


def test_densenet_bn_size_is_torchvisions():
    """torchvision's DenseNet(bn_size=...): the bottleneck's 1x1 conv makes bn_size * k maps."""
    for bn_size in (4, 2):
        model = on_meta("densenet121", bn_size=bn_size)
        for layer in ("features.denseblock1.denselayer1", "features.denseblock4.denselayer16"):
            conv1, norm2 = (
                model.get_submodule(f"{layer}.conv1"),
                model.get_submodule(f"{layer}.norm2"),
            )
            assert conv1.out_channels == norm2.num_features == bn_size * 32
            assert model.get_submodule(f"{layer}.conv2").in_channels == bn_size * 32


def test_replace_stride_with_dilation_needs_bottlenecks():
    # torchvision raises NotImplementedError for BasicBlock with a dilation above 1
    with pytest.raises(archdsl.ArchTypeError, match="BasicBlock has no dilation") as info:
        archdsl.load_graph("resnet18", replace_stride_with_dilation=[False, True, True])
    assert info.value.line > 0 and "where dilation = 2" in info.value.render()
    with pytest.raises(archdsl.ArchTypeError, match="a flag for each of layer2, layer3, layer4"):
        archdsl.load_graph("resnet50", replace_stride_with_dilation=[True, True])


# --- init ------------------------------------------------------------------------------


def _within(actual: float, expected: float, rel: float = 0.1) -> bool:
    return abs(actual - expected) <= rel * expected


def test_resnet50_conv_init_is_he_fan_out():
    torch.manual_seed(0)
    model = archdsl.load("resnet50")
    convs = [(k, m) for k, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 53
    for key, conv in convs:
        out, _, kh, kw = conv.weight.shape
        expected = math.sqrt(2.0 / (out * kh * kw))
        std = conv.weight.std().item()
        assert _within(std, expected), f"{key}: std {std:.4g}, expected {expected:.4g}"


def test_inception_v3_init_is_torchvisions():
    """Truncated normal, std 0.1, for every convolution and linear layer but the auxiliary
    head's fc, std 0.001 (torchvision's ``stddev`` attributes: the one it sets on the head's
    conv1, a BasicConv2d, its init loop never reads)."""
    torch.manual_seed(0)
    model = archdsl.load("inception_v3", resolution=299)
    layers = {k: m for k, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert _within(layers.pop("AuxLogits.fc").weight.std().item(), 0.001)
    assert _within(layers["AuxLogits.conv1.conv"].weight.std().item(), 0.1)
    for key, layer in layers.items():
        std = layer.weight.std().item()
        assert _within(std, 0.1, rel=0.25 if layer.weight.numel() < 5000 else 0.1), (key, std)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "last_bn"), [("resnet18", "bn2"), ("resnet50", "bn3")])
def test_zero_init_residual_is_torchvisions(name: str, last_bn: str):
    """torchvision's zero_init_residual: the last batch norm of every residual branch
    (BasicBlock.bn2, Bottleneck.bn3) starts with zero scale; nothing else changes."""
    torch.manual_seed(0)
    plain = archdsl.load(name).state_dict()
    torch.manual_seed(0)
    zeroed = archdsl.load(name, zero_init_residual=True).state_dict()
    branch_ends = [k for k in zeroed if k.startswith("layer") and k.endswith(f".{last_bn}.weight")]
    assert len(branch_ends) == (8 if name == "resnet18" else 16)
    for key, value in zeroed.items():
        if key in branch_ends:
            assert torch.equal(value, torch.zeros_like(value)) and torch.equal(
                plain[key], torch.ones_like(value)
            )
        else:
            assert torch.equal(value, plain[key]), key


def test_vgg16_init():
    torch.manual_seed(0)
    model = archdsl.load("vgg16")
    linears = [m for m in model.classifier.children() if isinstance(m, nn.Linear)]
    assert len(linears) == 3
    for linear in linears:
        assert _within(linear.weight.std().item(), 0.01)
        assert abs(linear.weight.mean().item()) < 1e-3
        assert torch.count_nonzero(linear.bias) == 0
    convs = [m for m in model.features.children() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13
    for conv in convs:
        assert torch.count_nonzero(conv.bias) == 0


def test_alexnet_keeps_pytorchs_default_init():
    # torchvision's AlexNet declares no init: Linear weights are U(-1/sqrt(in), 1/sqrt(in)).
    torch.manual_seed(0)
    fc8 = list(archdsl.load("alexnet").classifier.children())[-1]
    bound = 1 / math.sqrt(fc8.in_features)
    assert fc8.weight.abs().max().item() <= bound
    assert _within(fc8.weight.std().item(), bound / math.sqrt(3))
    assert torch.count_nonzero(fc8.bias) > 0


@pytest.mark.parametrize("name", ["resnet18", "lenet5"])
def test_init_is_deterministic(name: str):
    torch.manual_seed(0)
    a = archdsl.load(name).state_dict()
    torch.manual_seed(0)
    b = archdsl.load(name).state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
