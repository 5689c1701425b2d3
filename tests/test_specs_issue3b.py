"""The Inception family, the SE networks and the paper-faithful AlexNet and GoogLeNet.

``tests/test_specs.py`` checks every spec whose name has a reference record (googlenet,
inception_v3, inception_v4, inception_resnet_v2, seresnet50) for keys, shapes, parameters
and golden logits. Here:

- ``senet154``, whose record is timm's name ``legacy_senet154``;
- training-only side outputs (the auxiliary classifiers): what train and eval mode return;
- GoogLeNet's state_dict against torchvision's up to the place of the auxiliary heads;
- the paper variants ``alexnet_paper`` and ``googlenet_paper``: parameter counts derived
  from the papers, and the features the papers are known for;
- the constant residual scale of Inception-ResNet-v2.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import archdsl
from archdsl.backends.torch_modules import Scale
from reference import condition, fill, golden_input, load_conditioned, load_reference

GOLDEN_RTOL = 1e-6  # of max |golden logit|, as tests/test_specs.py

# SENet-154 under the reference fill is chaotic: its activations grow to ~1e7 through 50
# residual blocks, and timm 1.0.31's own legacy_senet154 changes its logits by 40% when
# its input changes by 1e-13 (relative), so its logits record the rounding of the machine
# that made them. Run here with the same fill and input, timm differs from the reference logits
# by 1.97e-5 of max |logit| (1.39e-5 on MKL's AVX2 path; any thread count); the compiled
# spec is 2.0e-5 off. So the shared record is compared at 1e-4 (5x timm's own
# irreproducibility), and the 1e-6 check runs on a well-conditioned golden run of timm's
# model instead (tests/data/conditioned/, residual branches damped by 0.1).
SENET154_RTOL = 1e-4


def on_meta(name: str, **params: object) -> nn.Module:
    return archdsl.load(name, device="meta", **params)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- SENet-154 (timm's legacy_senet154) -----------------------------------------------


def test_senet154_state_dict_matches_timm():
    ref = load_reference("legacy_senet154")
    model = on_meta("senet154")
    sd = model.state_dict()
    assert list(sd) == list(ref["state_dict"])
    assert {k: list(t.shape) for k, t in sd.items()} == ref["state_dict"]
    assert n_params(model) == ref["params"] == 115_088_984
    graph = archdsl.load_graph("senet154")
    assert graph.input_shape == (3, ref["resolution"], ref["resolution"])
    assert [2, *graph.output_shape] == ref["output_shape"]


@pytest.mark.slow
def test_senet154_golden_logits():
    ref = load_reference("legacy_senet154")
    model = on_meta("senet154").to_empty(device="cpu")
    fill(model).double().eval()
    with torch.no_grad():
        out = model(golden_input(ref["resolution"]))
    golden = torch.tensor(ref["golden_logits"], dtype=torch.float64)
    assert list(out.shape) == ref["output_shape"]
    err = (out - golden).abs().max().item()
    assert err <= SENET154_RTOL * golden.abs().max().item(), f"max |error| {err:.3g}"


@pytest.mark.slow
def test_senet154_conditioned_golden_logits():
    """The same wiring check at 1e-6, on a well-conditioned golden run of timm's model:
    residual branches damped (tests/data/conditioned/make_conditioned.py)."""
    ref = load_conditioned("legacy_senet154")
    model = on_meta("senet154").to_empty(device="cpu")
    condition(fill(model), ref["branch_scale"]).double().eval()
    with torch.no_grad():
        out = model(golden_input(ref["resolution"]))
    golden = torch.tensor(ref["golden_logits"], dtype=torch.float64)
    err = (out - golden).abs().max().item()
    assert err <= GOLDEN_RTOL * golden.abs().max().item(), f"max |error| {err:.3g}"


# --- training-only side outputs -----------------------------------------------------------

SIDE_OUTPUTS = {
    "googlenet": ("aux1", "aux2"),
    "googlenet_paper": ("aux1", "aux2"),
    "inception_v3": ("AuxLogits",),
}
# What training mode returns, field by field: the module computing each (None: the main
# output). torchvision's GoogLeNetOutputs(logits, aux_logits2, aux_logits1) and
# InceptionOutputs(logits, aux_logits); the paper's GoogLeNet has no such reference.
TRAINING_OUTPUTS = {
    "googlenet": {"logits": None, "aux_logits2": "aux2", "aux_logits1": "aux1"},
    "googlenet_paper": {"out": None, "aux1": "aux1", "aux2": "aux2"},
    "inception_v3": {"logits": None, "aux_logits": "AuxLogits"},
}


@pytest.mark.parametrize("name", sorted(SIDE_OUTPUTS))
def test_side_outputs_only_in_training(name: str):
    sides = SIDE_OUTPUTS[name]
    graph = archdsl.load_graph(name, num_classes=10)
    assert tuple(graph.side_outputs) == sides
    model = archdsl.build(graph, device="meta")
    x = torch.empty(2, *graph.input_shape, device="meta")  # batch norm trains on > 1 value
    ran: list[str] = []
    computed: dict[str | None, torch.Tensor] = {}
    last = graph.node(graph.output).path  # the module computing the main output

    def hook(path: str | None) -> None:
        def record(m: nn.Module, args: object, out: torch.Tensor) -> None:
            computed[path] = out
            if path is not None:
                ran.append(path)

        model.get_submodule(path or last).register_forward_hook(record)

    for side in (None, *sides):
        hook(side)
    out = model.train()(x)
    fields = TRAINING_OUTPUTS[name]
    assert isinstance(out, tuple) and len(out) == 1 + len(sides)
    assert out.names == tuple(fields)
    assert all(t.shape == (2, 10) for t in out)
    assert ran == list(sides)  # computed in the spec's order, whatever the fields' order
    for k, (field, source) in enumerate(fields.items()):
        assert out[k] is getattr(out, field) is computed[source]

    ran.clear()
    out = model.eval()(x)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert ran == []  # the heads are not computed at all in eval mode


@pytest.mark.parametrize(
    ("name", "heads"), [("googlenet", ("aux1.", "aux2.")), ("inception_v3", ("AuxLogits.",))]
)
def test_aux_logits_false_drops_the_heads(name: str, heads: tuple[str, ...]):
    """torchvision's aux_logits=False (its default for googlenet's published weights): the
    reference state_dict without the heads' tensors, and training mode returns the logits
    alone. inception_v3's init rule for AuxLogits.fc then applies to nothing."""
    ref = load_reference(name)["state_dict"]
    graph = archdsl.load_graph(name, aux_logits=False)
    assert graph.side_outputs == {} and graph.output_fields == {}
    model = archdsl.build(graph, device="meta")
    sd = model.state_dict()
    assert {k: list(t.shape) for k, t in sd.items()} == {
        k: shape for k, shape in ref.items() if not k.startswith(heads)
    }
    out = model.train()(torch.empty(2, *graph.input_shape, device="meta"))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1000)


def test_googlenet_state_dict_is_torchvisions_but_for_the_place_of_the_aux_heads():
    # torchvision registers aux1 and aux2 after inception5b; a side output's module sits
    # where the spec computes it (after inception4a and 4d). Keys and shapes are equal, so
    # torchvision's weights load with strict=True; only the order differs.
    ref = load_reference("googlenet")["state_dict"]
    sd = on_meta("googlenet").state_dict()
    assert {k: list(t.shape) for k, t in sd.items()} == ref

    def main(keys: list[str]) -> list[str]:
        return [k for k in keys if not k.startswith(("aux1.", "aux2."))]

    assert main(list(sd)) == main(list(ref))
    aux = [k for k in sd if k not in main(list(sd))]
    assert aux == [k for k in ref if k not in main(list(ref))]


# --- AlexNet as in the paper ------------------------------------------------------------------

ALEXNET_PAPER_PARAMS = 60_965_224


def test_alexnet_paper_parameter_count():
    # conv1 96x3x11x11, conv2 256x48x5x5, conv3 384x256x3x3, conv4 384x192x3x3,
    # conv5 256x192x3x3, fc6 9216 -> 4096, fc7 4096 -> 4096, fc8 4096 -> 1000; with biases.
    expected = (
        (96 * 3 * 11 * 11 + 96)
        + (256 * 48 * 5 * 5 + 256)
        + (384 * 256 * 3 * 3 + 384)
        + (384 * 192 * 3 * 3 + 384)
        + (256 * 192 * 3 * 3 + 256)
        + (256 * 6 * 6 * 4096 + 4096)
        + (4096 * 4096 + 4096)
        + (4096 * 1000 + 1000)
    )
    assert expected == ALEXNET_PAPER_PARAMS
    assert n_params(on_meta("alexnet_paper")) == ALEXNET_PAPER_PARAMS


def test_alexnet_paper_init_is_the_papers():
    """Section 5: weights N(0, 0.01); biases 1 in conv2, conv4, conv5 and the hidden fully
    connected layers, 0 in the others."""
    torch.manual_seed(0)
    model = archdsl.load("alexnet_paper")
    ones = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    layers = {k: m for k, m in model.named_children() if isinstance(m, (nn.Conv2d, nn.Linear))}
    assert len(layers) == 8
    for key, layer in layers.items():
        assert torch.all(layer.bias == (1.0 if key in ones else 0.0)), key
        assert abs(layer.weight.std().item() - 0.01) < 0.001, key


def test_seresnet50_zero_inits_the_last_batch_norm_of_each_branch():
    """timm's zero_init_last: bn3.weight of every bottleneck is 0, the other batch norms 1."""
    model = archdsl.load("seresnet50")
    norms = {k: m for k, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    last = [k for k in norms if k.endswith(".bn3")]
    assert len(last) == 16
    for key, norm in norms.items():
        assert torch.all(norm.weight == (0.0 if key in last else 1.0)), key


def test_alexnet_paper_features():
    graph = archdsl.load_graph("alexnet_paper")
    assert graph.input_shape == (3, 227, 227)
    shapes = {n.path: n.shape for n in graph.nodes() if n.path is not None}
    assert shapes["conv1"] == (96, 55, 55)
    assert shapes["pool1"] == (96, 27, 27)
    assert shapes["pool2"] == (256, 13, 13)
    assert shapes["pool5"] == (256, 6, 6)

    model = on_meta("alexnet_paper")
    layers = dict(model.named_children())
    convs = {k: m for k, m in layers.items() if isinstance(m, nn.Conv2d)}
    assert list(convs) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert [m.out_channels for m in convs.values()] == [96, 256, 384, 384, 256]
    # the two-GPU split: conv2, conv4 and conv5 only see their own GPU's half
    assert {k: m.groups for k, m in convs.items()} == {
        "conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2
    }  # fmt: skip
    assert model.conv2.weight.shape == (256, 48, 5, 5)

    # response normalization after the ReLU of conv1 and conv2, each followed by a pool
    order = list(layers)
    lrns = [k for k, m in layers.items() if isinstance(m, nn.LocalResponseNorm)]
    assert lrns == ["norm1", "norm2"]
    for conv, norm in (("conv1", "norm1"), ("conv2", "norm2")):
        i = order.index(conv)
        assert isinstance(layers[order[i + 1]], nn.ReLU)
        assert order[i + 2] == norm
        assert isinstance(layers[order[i + 3]], nn.MaxPool2d)
        lrn = layers[norm]
        assert (lrn.size, lrn.alpha, lrn.beta, lrn.k) == (5, 1e-4, 0.75, 2.0)

    # overlapping pooling: 3x3 windows, stride 2, after norm1, norm2 and conv5
    pools = [k for k, m in layers.items() if isinstance(m, nn.MaxPool2d)]
    assert pools == ["pool1", "pool2", "pool5"]
    assert all((layers[p].kernel_size, layers[p].stride) == (3, 2) for p in pools)

    # dropout on the two hidden fully connected layers, not on the classifier
    linears = [k for k, m in layers.items() if isinstance(m, nn.Linear)]
    assert linears == ["fc6", "fc7", "fc8"]
    drops = [k for k, m in layers.items() if isinstance(m, nn.Dropout)]
    assert [order[order.index(d) - 2] for d in drops] == ["fc6", "fc7"]
    assert all(layers[d].p == 0.5 for d in drops)


# --- GoogLeNet as in the paper ----------------------------------------------------------------

# Table 1: input channels, then #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
TABLE1 = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


def conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def inception_params(cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int) -> int:
    return (
        conv_params(cin, c1, 1)
        + conv_params(cin, c3r, 1) + conv_params(c3r, c3, 3)
        + conv_params(cin, c5r, 1) + conv_params(c5r, c5, 5)
        + conv_params(cin, pp, 1)
    )  # fmt: skip


def aux_params(cin: int, num_classes: int = 1000) -> int:
    # 1x1 conv to 128 on the 4x4 pooled map, FC 1024, FC num_classes
    return (
        conv_params(cin, 128, 1) + (128 * 4 * 4 * 1024 + 1024) + (1024 * num_classes + num_classes)
    )


def test_googlenet_paper_parameter_count():
    model = on_meta("googlenet_paper")
    for name, row in TABLE1.items():
        assert n_params(model.get_submodule(name)) == inception_params(*row), name
    assert n_params(model.aux1) == aux_params(512)  # on (4a)
    assert n_params(model.aux2) == aux_params(528)  # on (4d)
    stem = conv_params(3, 64, 7) + conv_params(64, 64, 1) + conv_params(64, 192, 3)
    expected = (
        stem
        + sum(inception_params(*row) for row in TABLE1.values())
        + aux_params(512)
        + aux_params(528)
        + (1024 * 1000 + 1000)
    )
    assert n_params(model) == expected == 13_378_280


def test_googlenet_paper_features():
    model = on_meta("googlenet_paper")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    # local response normalization after the first max pool and after the 3x3 convolution
    order = list(dict(model.named_children()))
    assert order[:7] == ["conv1", "maxpool1", "norm1", "conv2", "conv3", "norm2", "maxpool2"]
    lrns = [k for k, m in model.named_modules() if isinstance(m, nn.LocalResponseNorm)]
    assert lrns == ["norm1", "norm2"]
    # true 5x5 convolutions in the 5x5 branches (torchvision's GoogLeNet has 3x3 there)
    for name in TABLE1:
        fives = [
            m for m in model.get_submodule(f"{name}.branch3").modules() if isinstance(m, nn.Conv2d)
        ]
        assert [m.kernel_size for m in fives] == [(1, 1), (5, 5)], name
    tv = on_meta("googlenet")
    assert tv.get_submodule("inception3a.branch3.1.conv").kernel_size == (3, 3)
    # every max pool between stages 3x3/2; the classifier pools 7x7 and drops 40%
    for pool in ("maxpool1", "maxpool2", "maxpool3", "maxpool4"):
        m = model.get_submodule(pool)
        assert (m.kernel_size, m.stride) == (3, 2), pool
    assert (model.avgpool.kernel_size, model.avgpool.stride) == (7, 1)
    assert model.dropout.p == 0.4


@pytest.mark.parametrize("aux", ["aux1", "aux2"])
def test_googlenet_paper_auxiliary_classifier(aux: str):
    head = on_meta("googlenet_paper", num_classes=10).get_submodule(aux)
    layers = list(head.modules())[1:]
    pool = next(m for m in layers if isinstance(m, nn.AvgPool2d))
    assert (pool.kernel_size, pool.stride) == (5, 3)
    (conv,) = (m for m in layers if isinstance(m, nn.Conv2d))
    assert (conv.out_channels, conv.kernel_size) == (128, (1, 1))
    assert [type(m) for m in head.conv.children()] == [nn.Conv2d, nn.ReLU]
    assert (head.fc1.out_features, head.fc2.out_features) == (1024, 10)
    assert head.dropout.p == 0.7
    kinds = [type(m) for m in head.children()]
    assert kinds.index(nn.Dropout) == kinds.index(nn.Linear) + 2  # FC 1024, ReLU, dropout


# --- Inception-ResNet-v2's residual scaling ------------------------------------------------------


def test_inception_resnet_v2_residual_scale_is_exact():
    # `scale(s)`: x * s, as timm's `out * self.scale`, with no parameters.
    model = on_meta("inception_resnet_v2")
    scales = {"repeat": 0.17, "repeat_1": 0.10, "repeat_2": 0.20}
    for stage, s in scales.items():
        blocks = list(model.get_submodule(stage).children())
        found = [m for b in blocks for m in b.modules() if isinstance(m, Scale)]
        assert len(found) == len(blocks), stage  # one per residual module
        assert all(m.factor == s and not list(m.state_dict()) for m in found)
        x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
        assert torch.equal(found[0](x), x * s)
    assert not any(isinstance(m, (Scale, nn.LocalResponseNorm)) for m in model.block8.modules())
