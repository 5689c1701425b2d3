"""Static analysis: params, MACs and buffers against the reference records, receptive
fields (published values and hand-worked multi-path cases), collapsing of repeated blocks,
memory estimates, the renderers, and the promise that none of it imports torch."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys

import pytest

import archdsl
from archdsl.analysis import receptive_fields, summary
from archdsl.analysis.blocks import span_name
from reference import load_reference, reference_names

# bundled specs named otherwise than their reference record
REFERENCE_NAMES = {"senet154": "legacy_senet154"}
WITH_REFERENCE = sorted(
    name for name in archdsl.list_specs() if REFERENCE_NAMES.get(name, name) in reference_names()
)
BUFFER_LEAVES = ("running_mean", "running_var", "num_batches_tracked")


def _params_by_prefix(record: dict) -> dict[str, int]:
    """Parameters of a reference state_dict under every module prefix (buffers excluded)."""
    totals: dict[str, int] = {}
    for key, shape in record["state_dict"].items():
        if key.endswith(BUFFER_LEAVES):
            continue
        parts = key.split(".")
        for i in range(1, len(parts) + 1):  # the key itself too: a layer scale's row is one
            prefix = ".".join(parts[:i])
            totals[prefix] = totals.get(prefix, 0) + math.prod(shape)
    return totals


def test_every_reference_spec_is_covered() -> None:
    assert {"resnet50", "vgg16", "alexnet"} <= set(WITH_REFERENCE)


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_totals_match_the_reference(name: str) -> None:
    record = load_reference(REFERENCE_NAMES.get(name, name))
    s = summary(name)
    assert s.params == record["params"]
    assert s.trainable_params == record["params"] and s.non_trainable_params == 0
    assert s.macs == pytest.approx(record["flops"] / 2, rel=0.005)
    assert s.flops == 2 * s.macs
    buffers = sum(
        math.prod(v) for k, v in record["state_dict"].items() if k.endswith(BUFFER_LEAVES)
    )
    assert s.buffers == buffers
    assert list(s.output_shape) == record["output_shape"][1:]


@pytest.mark.parametrize("name", WITH_REFERENCE)
def test_every_row_sums_the_parameters_under_its_path(name: str) -> None:
    """Each row (op or block) holds exactly the parameters torch keeps under its prefix."""
    record = load_reference(REFERENCE_NAMES.get(name, name))
    s = summary(name, expand=True)
    assert s.layers, name
    by_prefix = _params_by_prefix(record)
    for row in s.layers:
        assert row.params == by_prefix.get(row.name, 0), row.name


def test_resnet50_published_numbers() -> None:
    s = summary("resnet50")
    assert (s.params, s.macs) == (25_557_032, 4_089_184_256)  # torchvision: 4.09 GMACs
    assert f"{s.macs / 1e9:.2f}" == "4.09"


# ---- receptive field ---------------------------------------------------------------------


def _rf(s, name: str):
    row = s.layer(name)
    return row.receptive_field, row.stride


def test_resnet50_receptive_fields() -> None:
    s = summary("resnet50")
    assert _rf(s, "conv1") == (7, 2)
    assert _rf(s, "maxpool") == (11, 4)
    assert _rf(s, "layer1") == (35, 4)
    assert _rf(s, "layer2") == (91, 8)
    assert _rf(s, "layer3") == (267, 16)
    assert _rf(s, "layer4") == (427, 32)
    assert _rf(s, "avgpool") == ("global", None)
    assert _rf(s, "fc") == ("global", None)


VGG16_INLINE = """
network vgg16_features {
  input [3, 224, 224]
  features: seq {
    for v in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"] {
      if v == "M" { maxpool(2, stride=2) } else { conv(v, 3, padding=1) -> relu }
    }
  }
}
"""


@pytest.mark.parametrize("source", ["vgg16", VGG16_INLINE])
def test_vgg16_last_pool(source: str) -> None:
    s = summary(source)
    assert s.layer("features.30").op == "maxpool"
    assert _rf(s, "features.30") == (212, 32)
    assert _rf(s, "features.28") == (196, 16)  # conv5_3


def test_concat_takes_the_widest_branch() -> None:
    # a 1x1 branch (rf 1) and a 3x3 -> 3x3 branch (rf 5), in either order
    for branches in [
        "a: conv(4, 1); b: seq { conv(4, 3, padding=1); conv(4, 3, padding=1) }",
        "b: seq { conv(4, 3, padding=1); conv(4, 3, padding=1) }; a: conv(4, 1)",
    ]:
        s = summary(f"network n {{ input [3, 16, 16]\n m: concat {{ {branches} }} }}")
        assert _rf(s, "m.a") == (1, 1)
        assert _rf(s, "m.b.0") == (3, 1)
        assert _rf(s, "m.b") == (5, 1)
        assert _rf(s, "m") == (5, 1)
        assert _rf(s, "m.concat") == (5, 1)


def test_residual_with_strided_paths() -> None:
    # stem 3x3 (rf 3, jump 1); main path 3x3/2 then 3x3: 3 + 2*1 = 5, then 5 + 2*2 = 9;
    # shortcut 1x1/2: 3. The add takes the max: 9 at stride 2.
    s = summary("""network n {
      input [3, 32, 32]
      stem: conv(8, 3, padding=1)
      -> blk: add {
        main: seq { conv(8, 3, stride=2, padding=1); conv(8, 3, padding=1) }
        short: conv(8, 1, stride=2)
      }
      -> identity
    }""")
    assert _rf(s, "blk.main.0") == (5, 2)
    assert _rf(s, "blk.main") == (9, 2)
    assert _rf(s, "blk.short") == (3, 2)
    assert _rf(s, "blk") == (9, 2)


def test_identity_shortcut_keeps_the_deeper_field() -> None:
    s = summary("network n { input [3, 32, 32]\n r: add { identity; conv(3, 5, padding=2) } }")
    assert _rf(s, "r") == (5, 1)


def test_dilation_asymmetric_kernels_and_adaptive_pooling() -> None:
    s = summary("""network n {
      input [3, 32, 32]
      d: conv(4, 3, dilation=2, padding=2)
      -> h: conv(4, [1, 7], padding=[0, 3])
      -> v: conv(4, [7, 1], padding=[3, 0])
      -> p: maxpool(4)
      -> a: adaptive_avgpool(3)
      -> c: conv(4, 3, padding=1)
    }""")
    assert _rf(s, "d") == (5, 1)  # effective kernel 2 * (3 - 1) + 1
    assert _rf(s, "h") == ([5, 11], 1)
    assert _rf(s, "v") == (11, 1)
    assert _rf(s, "p") == (14, 4)
    # 8x8 -> 3x3: torch's bins are [0, 3), [2, 6), [5, 8): a window of up to 4 at a
    # spacing of 8/3 maps: rf 14 + (4 - 1) * 4 = 26, jump 4 * 8/3
    assert _rf(s, "a") == (26, round(32 / 3, 3))
    # c reads three bins of a, which are not all the same: the widest three in a row,
    # [-3, 0), [0, 3), [2, 6) (or [2, 6), [5, 8), [8, 11): three periods of 8 maps hold
    # three bins), cover 9 maps: 14 + (9 - 1) * 4 = 46 (the uniform recurrence said 48)
    assert _rf(s, "c") == (46, round(32 / 3, 3))


def test_squeeze_excitation_gate_does_not_make_the_field_global() -> None:
    s = summary("""network n {
      input [3, 32, 32]
      c: conv(8, 3, padding=1)
      -> se: mul { identity; (global_avgpool -> conv(2, 1) -> relu -> conv(8, 1) -> sigmoid) }
      -> head: seq { global_avgpool(flatten=true); linear(10) }
    }""")
    assert s.layer("se.1").op == "global_avgpool"
    assert _rf(s, "se.1") == ("global", None)  # the squeeze sees everything
    assert _rf(s, "se.4") == ("global", None)  # and so does the gate
    assert _rf(s, "se") == (3, 1)  # the gated map keeps the convolution's field
    assert _rf(s, "head.0") == ("global", None)
    assert _rf(s, "head.1") == ("global", None)


def test_flat_networks_have_no_receptive_field() -> None:
    g = archdsl.check("network n { input [16]; linear(8) -> relu -> linear(2) }")
    assert set(receptive_fields(g).values()) == {None}
    assert {row.receptive_field for row in summary(g).layers} == {None}


# Chains after two strided convolutions (a field of 7 at a jump of 4), so that what an
# upsampling reads is spaced: the analysis' field must be what gradients show.
UPSAMPLING_CHAINS = [
    "conv_transpose(2, 2, stride=2)",
    "conv_transpose(2, 3, stride=2, padding=1, output_padding=1)",
    "conv_transpose(2, 4, stride=2, padding=1)",
    "conv_transpose(2, 3, stride=2, dilation=2)",  # holes: odd positions see nothing
    "conv_transpose(2, 5, stride=3)",
    "conv_transpose(2, 1, stride=2) -> conv(2, 3)",
    "upsample(2)",
    "upsample(2) -> conv(2, 3)",
    "upsample(3) -> conv(2, 2)",
    'upsample(2, mode="bilinear")',
    'upsample(3, mode="bilinear")',
    'upsample(2, mode="bicubic")',
    'upsample(2, mode="bilinear", align_corners=true)',
    'upsample([2, 1], mode="bilinear") -> conv(2, [1, 3])',
    'upsample(2, mode="bilinear") -> conv(2, 3) -> conv_transpose(2, 3, stride=2)',
    "upsample(2) -> avgpool(3, stride=2)",  # (max pooling passes gradients to one input)
    "add { (upsample(2) -> conv(2, 3, padding=1)); conv_transpose(2, 2, stride=2) }",
    "concat { upsample(2); conv_transpose(2, 3, stride=2, padding=1, output_padding=1) }",
    # resizes to a size that is no whole factor of the 15 x 15 map, given or another value's
    'resize([22, 22], mode="bilinear")',
    'resize([20, 25], mode="bilinear") -> conv(2, 3)',
    'resize([23, 23], mode="bicubic")',
    'resize([29, 29], mode="bilinear", align_corners=true)',
    'resize([7, 7], mode="bilinear")',
    "resize([24, 24])",
    'p: () -> conv(2, 3, stride=2, padding=1) -> resize(@p, mode="bilinear")',
]


def _seen_by_gradient(text: str, size: int) -> tuple[int, int]:
    """The widest window of input pixels (rows, columns) that one output position (all its
    channels) depends on, over the positions of the middle quarter of the output
    (whose windows stay inside the input)."""
    import torch

    graph = archdsl.check(text)
    model = archdsl.build(graph).double().eval()
    with torch.no_grad():
        for p in model.parameters():  # positive weights: no window cancels out
            p.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(0))
    x = torch.zeros(1, graph.input_shape[0], size, size, dtype=torch.float64)
    x.requires_grad_(True)
    y = model(x)
    h, w = y.shape[2:]
    widest = [0, 0]
    for i in range(3 * h // 8, 5 * h // 8):
        for j in range(3 * w // 8, 5 * w // 8):
            (grad,) = torch.autograd.grad(y[0, :, i, j].sum(), x, retain_graph=True)
            seen = grad[0].abs().sum(0).nonzero()
            if not len(seen):
                continue  # a hole of a transposed convolution: its bias alone
            for axis in range(2):
                first, last = seen[:, axis].min().item(), seen[:, axis].max().item()
                assert 0 < first and last < size - 1, "a window reached the border"
                widest[axis] = max(widest[axis], last - first + 1)
    return widest[0], widest[1]


@pytest.mark.parametrize("chain", UPSAMPLING_CHAINS)
def test_upsampling_fields_are_what_gradients_see(chain: str) -> None:
    text = f"network n {{ input [1, 64, 64]; conv(2, 3, stride=2) -> conv(2, 3, stride=2) -> {chain} }}"
    row = summary(text).layers[-1]
    seen = _seen_by_gradient(text, 64)
    assert row.receptive_field == (seen[0] if seen[0] == seen[1] else list(seen))


@pytest.mark.parametrize("name", archdsl.list_specs())
def test_fields_before_any_upsampling_are_evenly_spaced(name: str) -> None:
    """Without upsampling every position sees a window of the same width, one period
    long: the classic recurrence (rf + (k - 1) * jump, jump * s); only after an upsampling
    or an adaptive pooling whose bins differ (GoogLeNet's auxiliary heads: 14 -> 4) is it
    otherwise."""
    graph = archdsl.check_file(archdsl.spec_path(name))
    fields = receptive_fields(graph)
    uneven: set[str] = set()
    for node in graph.nodes():
        inputs = graph.inputs(node.id)
        if (
            any(i in uneven for i in inputs)
            or node.op in ("upsample", "resize", "conv_transpose")
            or (node.op.startswith("adaptive") and graph.node(inputs[0]).shape[1] % node.shape[1])
        ):
            uneven.add(node.id)
        elif fields[node.id] is not None:
            assert [len(span.lo) for span in fields[node.id].spans] == [1, 1], node.path


def test_a_field_past_the_period_limit_is_not_a_number() -> None:
    """An upsampling by 128 would need a period of 128 positions: the field is not
    computed from there on (None, "-" in tables), rather than estimated."""
    s = summary("""network n {
      input [3, 8, 8]
      a: upsample(16) -> b: conv(4, 3) -> c: upsample(8) -> d: conv(4, 3, stride=8)
    }""")
    assert _rf(s, "b") == (2, round(1 / 16, 3))  # 3 outputs of 16 per input: two at most
    assert _rf(s, "c") == (None, None)
    assert _rf(s, "d") == (None, None)  # stride 8 would bring it back to 16: too late


def test_long_kernels_after_upsampling_stay_fast() -> None:
    """A position's window is found from the ends of its taps, not by reading them all:
    a kernel of 100,000 taps over a period of 64 positions, and one whose taps mostly land
    between a transposed convolution's outputs."""
    from limitcheck import within

    text = """network n {
      input [1, 4, 4]
      upsample(8) -> upsample(8) -> conv_transpose(1, 3, stride=5)
      -> conv(1, 100000, padding=50000) -> conv_transpose(1, 9999, stride=3, dilation=7)
    }"""
    with within(10.0):
        s = summary(text)
    assert all(row.receptive_field is not None for row in s.layers[:2])


def test_an_image_pooling_brought_back_up_makes_the_field_global() -> None:
    """DeepLabV3's ASPP: a branch that pools the whole map and is upsampled back to its
    size gives every position the whole image; upsampling a global field keeps it so."""
    s = summary("deeplabv3_resnet50")
    assert _rf(s, "classifier.0.convs.0") == (427, 8)  # layer4's field, dilated
    assert _rf(s, "classifier.0.convs.4") == ("global", None)
    assert _rf(s, "classifier.0.convs") == ("global", None)
    assert _rf(s, "classifier") == ("global", None)
    assert _rf(summary("fcn_resnet50"), "classifier") == (_rf(s, "backbone")[0] + 2 * 8, 8)


def test_upsampling_strides() -> None:
    s = summary("""network n {
      input [3, 64, 64]
      down: conv(4, 3, stride=4)
      -> up: conv_transpose(4, 2, stride=2)
      -> up2: upsample([2, 3], mode="bilinear")
      -> up3: conv_transpose(4, 3, stride=3)
    }""")
    assert _rf(s, "down") == (3, 4)
    assert _rf(s, "up") == (3, 2)
    assert _rf(s, "up2")[1] == [1, round(2 / 3, 3)]
    assert _rf(s, "up3")[1] == [round(1 / 3, 3), round(2 / 9, 3)]


def test_lenet_sees_its_whole_input_at_c5() -> None:
    s = summary("lenet5")
    assert _rf(s, "c5") == (32, 4)
    assert _rf(s, "f6") == (32, 4)  # flattening a 1x1 map is not a reduction


# ---- rows, depth and collapsing ------------------------------------------------------------


def test_resnet50_rows_at_depth_2() -> None:
    s = summary("resnet50", depth=2)
    rows = [(r.name, r.op, r.repeat) for r in s.layers]
    assert rows[:7] == [
        ("conv1", "conv", 1),
        ("bn1", "bn", 1),
        ("2", "relu", 1),
        ("maxpool", "maxpool", 1),
        ("layer1", "stage", 1),
        ("layer1.0", "bottleneck", 1),
        ("layer1.1", "bottleneck", 2),
    ]
    assert ("layer3.1", "bottleneck", 5) in rows
    assert rows[-3:] == [
        ("avgpool", "adaptive_avgpool", 1),
        ("9", "flatten", 1),
        ("fc", "linear", 1),
    ]
    collapsed = s.layer("layer3.1")
    assert (collapsed.last, collapsed.display_name, collapsed.display_op) == (
        "layer3.5",
        "layer3.1-5",
        "bottleneck x 5",
    )
    assert collapsed.kind == "block" and collapsed.depth == 2
    # totals over the five repeats; shape and field of the last one
    expanded = summary("resnet50", depth=2, expand=True)
    five = [expanded.layer(f"layer3.{i}") for i in range(1, 6)]
    assert collapsed.params == sum(r.params for r in five)
    assert collapsed.macs == sum(r.macs for r in five)
    assert (collapsed.receptive_field, collapsed.stride) == (five[-1].receptive_field, 16)
    assert collapsed.output_shape == (1024, 14, 14)
    assert s.layer("layer3").params == s.layer("layer3.0").params + collapsed.params
    assert all(r.repeat == 1 for r in expanded.layers)
    assert len(expanded.layers) == len(s.layers) + 1 + 2 + 4 + 1  # layer1..4 runs unrolled


def test_depth_limits_rows_but_not_totals() -> None:
    full, top = summary("resnet50"), summary("resnet50", depth=1)
    assert {r.depth for r in top.layers} == {1}
    assert [r.name for r in top.layers] == [
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
    assert sum(r.params for r in top.layers) == top.params == full.params
    assert sum(r.macs for r in top.layers) == top.macs
    assert max(r.depth for r in full.layers) == 4  # layer1.0.downsample.0
    assert summary("resnet50", depth=0).layers == ()
    # a collapsed run hides its contents; the first block of a stage does not
    names = {r.name for r in full.layers}
    assert "layer3.0.conv1" in names and "layer3.1.conv1" not in names


def test_only_identical_blocks_collapse() -> None:
    s = summary("""
    block b(k = 3, act = "relu", p = 0.1) {
      conv(8, k, padding=k // 2) -> if act == "relu" { relu } else { sigmoid } -> dropout(p)
    }
    network n {
      input [8, 16, 16]
      s: seq { b(); b(p=0.3); b(k=1); b(act="sigmoid"); b(act="sigmoid") }
    }""")
    # a dropout rate changes no parameter, MAC or shape: the first two are identical
    assert [(r.name, r.repeat) for r in s.layers if r.depth == 2] == [
        ("s.0", 2),
        ("s.2", 1),
        ("s.3", 2),
    ]
    # identical parallel branches are not a repetition
    s = summary(
        "network n { input [4, 8, 8]\n m: concat { a: seq { conv(8, 1) }; b: seq { conv(8, 1) } } }"
    )
    assert [(r.name, r.repeat) for r in s.layers if r.depth == 2] == [
        ("m.a", 1),
        ("m.b", 1),
        ("m.concat", 1),
    ]
    # same structure, different input channels: not identical
    s = summary("network n { input [4, 8, 8]\n s: seq { seq { conv(8, 1) }; seq { conv(8, 1) } } }")
    assert [r.repeat for r in s.layers if r.depth == 2] == [1, 1]


def test_efficientnet_blocks_collapse_despite_drop_path_rates() -> None:
    s = summary("efficientnet_b0", depth=3)
    run = s.layer("features.4.1")
    assert (run.display_name, run.display_op) == ("features.4.1-2", "mbconv x 2")


def test_span_names() -> None:
    assert span_name("layer3.1", "layer3.5") == "layer3.1-5"
    assert span_name("b.denselayer2", "b.denselayer6") == "b.denselayer2-6"
    assert span_name("x", "y") == "x .. y"
    assert span_name("layer1", "layer1") == "layer1"


def test_merges_are_named_by_scope() -> None:
    s = summary(
        "network n { input [4, 8, 8]\n b: seq { add { identity; relu }; concat { identity; relu } } -> add { identity; relu } }"
    )
    names = [r.name for r in s.layers if r.kind == "op"]
    assert "b.add" in names and "b.concat" in names and "add" in names


# ---- memory ---------------------------------------------------------------------------------

RESIDUAL = """network n {
  input [2, 4, 4]
  c: conv(4, 1, bias=false)
  -> r: add { identity; (relu -> conv(4, 1, bias=false)) }
  -> flatten
}"""


def test_memory_by_hand() -> None:
    # values per sample: input 32, c 64, relu 64, conv 64, add 64; identity and flatten
    # are views.
    # peak: while the inner conv runs, c (needed by the add), relu and conv are alive: 192
    s = summary(RESIDUAL)
    assert s.params == 8 + 16
    assert s.activation_bytes == 192 * 4
    assert s.saved_activation_bytes == (32 + 4 * 64) * 4
    assert s.param_bytes == 24 * 4
    assert s.training_bytes == 2 * s.param_bytes + s.buffer_bytes + s.saved_activation_bytes
    half = summary(RESIDUAL, batch=8, dtype="float16")
    assert half.activation_bytes == 192 * 8 * 2
    assert half.param_bytes == 24 * 2
    assert half.training_bytes == 2 * 48 + (32 + 4 * 64) * 8 * 2


def test_a_merge_reading_one_tensor_twice() -> None:
    # both branches empty: the concat reads the relu's output twice
    s = summary("network n { input [4, 8, 8]; r: relu -> c: concat { if false {}; if false {} } }")
    assert s.output_shape == (8, 8, 8)
    assert _rf(s, "c") == (1, 1)
    # input 256; relu 256 (input freed); concat 512 while the relu is still alive
    assert s.activation_bytes == (256 + 512) * 4
    assert s.saved_activation_bytes == (256 + 256 + 512) * 4


def test_resnet50_memory_is_plausible() -> None:
    s = summary("resnet50", batch=32)
    assert s.param_bytes == 25_557_032 * 4
    assert s.buffer_bytes == 53_173 * 4
    # the peak holds at least two 64x112x112 maps (conv1 and bn1 at once)
    assert 2 * 64 * 112 * 112 * 32 * 4 <= s.activation_bytes < s.saved_activation_bytes


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown dtype 'float13'"):
        summary("lenet5", dtype="float13")
    with pytest.raises(ValueError, match="batch"):
        summary("lenet5", batch=0)
    with pytest.raises(ValueError, match="unknown summary format"):
        summary("lenet5").render("yaml")
    with pytest.raises(archdsl.ArchError):
        summary("network n { input [3, 4, 4]; conv(8, 7) }")
    assert summary("lenet5", dtype="torch.bfloat16").param_bytes == 61_706 * 2


# ---- side outputs -----------------------------------------------------------------------------


def test_side_outputs_count_params_not_macs() -> None:
    s = summary("""network n {
      input [3, 16, 16]
      c: conv(8, 3, padding=1, bias=false)
      -> side aux: seq { global_avgpool(flatten=true); linear(10) }
      -> pool: global_avgpool(flatten=true) -> fc: linear(10)
    }""")
    conv, linear = 8 * 3 * 9 * 16 * 16, 8 * 10
    assert s.macs == conv + linear
    assert s.layer("aux").macs == linear
    assert s.params == 8 * 27 + 2 * 90
    assert s.side_outputs == ("aux",)
    assert s.training_outputs == (("out", "out"), ("aux", "aux"))
    assert "Side outputs" in s.to_text()


def test_training_outputs_follow_the_outputs_statement() -> None:
    s = summary(archdsl.load_graph("googlenet"))
    assert s.training_outputs == (
        ("logits", "out"),
        ("aux_logits2", "aux2"),
        ("aux_logits1", "aux1"),
    )
    assert "training mode returns (logits=out, aux_logits2=aux2, aux_logits1=aux1)" in s.to_text()
    assert s.to_dict()["training_outputs"] == [
        ["logits", "out"],
        ["aux_logits2", "aux2"],
        ["aux_logits1", "aux1"],
    ]
    assert summary(archdsl.load_graph("resnet18")).training_outputs == ()


# ---- renderers -------------------------------------------------------------------------------


def test_renderers() -> None:
    s = summary("resnet50", depth=2)
    data = json.loads(s.to_json())
    assert data == json.loads(json.dumps(s.to_dict()))
    for key in (
        "params",
        "trainable_params",
        "non_trainable_params",
        "buffers",
        "macs",
        "flops",
        "input_shape",
        "output_shape",
        "param_bytes",
        "activation_bytes",
        "training_bytes",
        "layers",
    ):
        assert key in data
    assert data["input_shape"] == [3, 224, 224] and data["output_shape"] == [1000]
    layer3 = next(r for r in data["layers"] if r["name"] == "layer3")
    assert {
        k: layer3[k]
        for k in (
            "op",
            "output_shape",
            "receptive_field",
            "stride",
            "depth",
            "repeat",
            "params",
            "macs",
        )
    } == {
        "op": "stage",
        "output_shape": [1024, 14, 14],
        "receptive_field": 267,
        "stride": 16,
        "depth": 1,
        "repeat": 1,
        "params": 7_098_368,
        "macs": 1_464_336_384,
    }
    rows = list(csv.DictReader(io.StringIO(s.to_csv())))
    assert len(rows) == len(s.layers)
    assert rows[10]["name"] == "layer3" and rows[10]["receptive_field"] == "267"
    assert rows[12]["repeat"] == "5" and rows[12]["output_shape"] == "1024x14x14"
    text = s.render("text")
    assert "layer3.1-5" in text and "bottleneck x 5" in text
    assert "4,089,184,256 (4.09 GMACs)" in text and "8,178,368,512 (8.18 GFLOPs) = 2 x MACs" in text
    table = [line for line in text.splitlines() if line.lstrip().startswith("layer3 ")]
    assert table and table[0].split()[-2:] == ["267", "16"]
    md = s.render("markdown")
    assert "| layer3.1-5 | bottleneck x 5 | [1024, 14, 14] |" in md
    assert s.render("json") == s.to_json() and s.render("csv") == s.to_csv()


def test_accepts_graph_path_name_and_text() -> None:
    path = archdsl.spec_path("resnet18")
    a, b, c = summary(archdsl.load_graph("resnet18")), summary(path), summary(str(path))
    assert a.to_dict() == b.to_dict() == c.to_dict() == summary("resnet18").to_dict()
    assert summary("resnet18", params={"num_classes": 10}).output_shape == (10,)
    # parameters as keywords, as archdsl.load takes them; both ways together
    assert (
        summary("resnet18", num_classes=10).to_dict()
        == summary("resnet18", params={"num_classes": 10}).to_dict()
    )
    assert summary("resnet18", params={"num_classes": 10}, resolution=64).input_shape == (3, 64, 64)
    # a checked graph has its parameters set: giving more is an error, not ignored
    with pytest.raises(ValueError, match="parameters apply to a spec"):
        summary(archdsl.load_graph("resnet18"), num_classes=10)


def test_analysis_never_imports_torch(tmp_path) -> None:
    code = f"""
import sys
import archdsl.analysis
from archdsl.backends.graphviz import render, to_dot
s = archdsl.analysis.summary("resnet50", depth=2)
s.to_text(); s.to_markdown(); s.to_json(); s.to_csv()
to_dot("resnet50")
render("resnet50", {str(tmp_path / "r.dot")!r})
assert "torch" not in sys.modules, sorted(m for m in sys.modules if m.startswith("torch"))
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
