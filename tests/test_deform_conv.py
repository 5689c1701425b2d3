"""The deformable convolution (``deform_conv``) and the deformable ResNet-50 (``dcn_resnet50``).

- zero offsets are an ordinary convolution, integer offsets a convolution of the shifted
  input, fractional offsets (v1, and modulated v2) a direct loop over bilinear samples;
- gradients by ``torch.autograd.gradcheck`` in float64;
- the op's shape rule, parameter count and MACs against the module torch builds;
- ``dcn_resnet50``: resnet50's weights plus the offset convolutions, equal to resnet50 at
  init.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import archdsl
from archdsl.backends.deform_conv import DeformConv2d, deform_conv2d
from archdsl.backends.torch_modules import build_module
from archdsl.ops import OPS, ShapeProblem, bind_defaults, normalize_attrs
from reference import fill, golden_input, load_reference

F64 = torch.float64


def conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def random_case(
    seed: int, n: int, c: int, h: int, w: int, out: int, k: tuple[int, int], groups: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, w, generator=g, dtype=F64)
    weight = torch.randn(out, c // groups, *k, generator=g, dtype=F64)
    bias = torch.randn(out, generator=g, dtype=F64)
    return x, weight, bias


# --- against an ordinary convolution ----------------------------------------------------

# (in, out, kernel, stride, padding, dilation, groups, offset_groups, H, W)
CONFIGS = [
    (3, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, 7, 6),
    (4, 6, (3, 3), (2, 2), (1, 1), (1, 1), 2, 2, 9, 8),
    (4, 4, (3, 2), (1, 2), (2, 0), (2, 1), 4, 4, 8, 7),
    (6, 3, (1, 1), (2, 1), (0, 0), (1, 1), 3, 1, 5, 5),
    (2, 4, (5, 5), (1, 1), (3, 1), (1, 2), 1, 2, 6, 10),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_zero_offsets_are_an_ordinary_convolution(config: tuple[Any, ...]) -> None:
    c, out, k, s, p, d, groups, og, h, w = config
    x, weight, bias = random_case(0, 2, c, h, w, out, k, groups)
    ho, wo = (conv_out((h, w)[i], k[i], s[i], p[i], d[i]) for i in range(2))
    offset = torch.zeros(2, 2 * og * k[0] * k[1], ho, wo, dtype=F64)
    got = deform_conv2d(x, offset, weight, bias, s, p, d, groups)
    want = F.conv2d(x, weight, bias, s, p, d, groups)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    # the module: zero-initialised offsets, the same weight
    module = DeformConv2d(c, out, k, s, p, d, groups, og).double()
    assert not module.offset.weight.any() and not module.offset.bias.any()
    want = F.conv2d(x, module.weight, module.bias, s, p, d, groups)
    torch.testing.assert_close(module(x), want, rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("kernel", "dilation"), [(3, 1), ((2, 4), (3, 1))])
def test_same_and_valid_padding_are_conv2ds(kernel: Any, dilation: Any) -> None:
    x = torch.randn(1, 2, 7, 6, dtype=F64)
    for padding in ("same", "valid"):
        module = DeformConv2d(2, 3, kernel, padding=padding, dilation=dilation).double()
        want = F.conv2d(x, module.weight, module.bias, padding=padding, dilation=dilation)
        torch.testing.assert_close(module(x), want, rtol=0, atol=1e-12)


def shifted(x: torch.Tensor, dy: int, dx: int, pad: tuple[int, int]) -> torch.Tensor:
    """``x`` zero-extended, read at (row + dy, column + dx), over the padded extent."""
    m = 32
    big = F.pad(x, (m, m, m, m))
    h, w = x.shape[-2:]
    (ph, pw) = pad
    return big[..., m - ph + dy : m + h + ph + dy, m - pw + dx : m + w + pw + dx]


@pytest.mark.parametrize(("dy", "dx"), [(1, 0), (0, -2), (-1, 2), (3, -4), (9, 0)])
def test_integer_offsets_are_a_shifted_convolution(dy: int, dx: int) -> None:
    c, out, k, s, p, d = 4, 5, (3, 3), (2, 1), (1, 2), (1, 2)
    x, weight, bias = random_case(1, 2, c, 7, 8, out, k)
    ho, wo = conv_out(7, 3, 2, 1, 1), conv_out(8, 3, 1, 2, 2)
    # offset group 0 (channels 0, 1) moves by (dy, dx), group 1 (channels 2, 3) by (dx, dy)
    offset = torch.empty(2, 2, 9, 2, ho, wo, dtype=F64)
    offset[:, 0, :, 0], offset[:, 0, :, 1] = dy, dx
    offset[:, 1, :, 0], offset[:, 1, :, 1] = dx, dy
    got = deform_conv2d(x, offset.reshape(2, 36, ho, wo), weight, bias, s, p, d)
    moved = torch.cat([shifted(x[:, :2], dy, dx, p), shifted(x[:, 2:], dx, dy, p)], 1)
    want = F.conv2d(moved, weight, bias, s, 0, d)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# --- against a direct loop over bilinear samples -----------------------------------------


def bilinear(image: list[list[float]], y: float, x: float) -> float:
    """The value at (y, x) interpolated from the four neighbouring pixels; zero outside."""
    h, w = len(image), len(image[0])
    y0, x0 = math.floor(y), math.floor(x)
    total = 0.0
    for row, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for col, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= row < h and 0 <= col < w:
                total += wy * wx * image[row][col]
    return total


def loop_deform_conv(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution as the papers write it: for every output, the sum over input
    channels and kernel taps of weight * (mask *) the input sampled at tap + offset."""
    n, c, _, _ = x.shape
    out_c, cg, kh, kw = weight.shape
    ho, wo = offset.shape[-2:]
    og = offset.shape[1] // (2 * kh * kw)
    xs, offs, ws, bs = x.tolist(), offset.tolist(), weight.tolist(), bias.tolist()
    masks = mask.tolist() if mask is not None else None
    result = torch.zeros(n, out_c, ho, wo, dtype=F64)
    for b in range(n):
        for o in range(out_c):
            group = o // (out_c // groups)
            for oy in range(ho):
                for ox in range(wo):
                    total = bs[o]
                    for ci in range(cg):
                        ch = group * cg + ci
                        g = ch // (c // og)  # the channel's offset group
                        for i in range(kh):
                            for j in range(kw):
                                tap = g * kh * kw + i * kw + j
                                y = oy * stride[0] - padding[0] + i * dilation[0]
                                xx = ox * stride[1] - padding[1] + j * dilation[1]
                                y += offs[b][2 * tap][oy][ox]
                                xx += offs[b][2 * tap + 1][oy][ox]
                                m = masks[b][tap][oy][ox] if masks is not None else 1.0
                                total += ws[o][ci][i][j] * m * bilinear(xs[b][ch], y, xx)
                    result[b, o, oy, ox] = total
    return result


@pytest.mark.parametrize("modulated", [False, True])
@pytest.mark.parametrize(
    "config",
    [
        # (in, out, kernel, stride, padding, dilation, groups, offset_groups, H, W)
        (2, 3, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, 4, 5),
        (4, 4, (2, 3), (2, 1), (1, 0), (1, 2), 2, 2, 5, 6),
    ],
)
def test_fractional_offsets_match_a_direct_loop(config: tuple[Any, ...], modulated: bool) -> None:
    c, out, k, s, p, d, groups, og, h, w = config
    x, weight, bias = random_case(2, 2, c, h, w, out, k, groups)
    ho, wo = (conv_out((h, w)[i], k[i], s[i], p[i], d[i]) for i in range(2))
    gen = torch.Generator().manual_seed(3)
    # up to 3 pixels either way: samples between pixels, on the border and outside
    offset = (torch.rand(2, 2 * og * k[0] * k[1], ho, wo, generator=gen, dtype=F64) - 0.5) * 6
    mask = torch.rand(2, og * k[0] * k[1], ho, wo, generator=gen, dtype=F64) if modulated else None
    got = deform_conv2d(x, offset, weight, bias, s, p, d, groups, mask)
    want = loop_deform_conv(x, offset, weight, bias, s, p, d, groups, mask)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_modulated_module_applies_the_sigmoid_of_its_mask_logits() -> None:
    x, _, _ = random_case(4, 1, 2, 4, 4, 3, (3, 3))
    module = DeformConv2d(2, 3, 3, padding=1, modulated=True).double()
    with torch.no_grad():
        module.offset.bias.uniform_(-1, 1)  # constant offsets and masks
    predicted = module.offset(x)
    offset, mask = predicted[:, :18], predicted[:, 18:].sigmoid()
    weight, bias = module.weight.detach(), module.bias.detach()
    want = loop_deform_conv(x, offset, weight, bias, (1, 1), (1, 1), (1, 1), 1, mask)
    torch.testing.assert_close(module(x), want, rtol=0, atol=1e-10)
    # at init the masks are sigmoid(0) = 1/2, as in the v2 paper
    nn.init.zeros_(module.offset.bias)
    half = F.conv2d(x, module.weight / 2, module.bias, padding=1)
    torch.testing.assert_close(module(x), half, rtol=0, atol=1e-12)


# --- gradients ---------------------------------------------------------------------------


@pytest.mark.parametrize("modulated", [False, True])
def test_gradcheck(modulated: bool) -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 4, 4, 4, generator=gen, dtype=F64, requires_grad=True)
    weight = torch.randn(2, 2, 3, 3, generator=gen, dtype=F64, requires_grad=True)
    bias = torch.randn(2, generator=gen, dtype=F64, requires_grad=True)
    # keep every sample away from pixel lines, where bilinear sampling has kinks
    whole = torch.randint(-2, 2, (1, 36, 4, 4), generator=gen).to(F64)
    frac = torch.rand(1, 36, 4, 4, generator=gen, dtype=F64) * 0.8 + 0.1
    offset = (whole + frac).requires_grad_()
    inputs: tuple[torch.Tensor, ...] = (x, offset, weight, bias)
    if modulated:
        inputs += (torch.rand(1, 18, 4, 4, generator=gen, dtype=F64, requires_grad=True),)

    def fn(
        x: torch.Tensor,
        offset: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return deform_conv2d(x, offset, weight, bias, 1, 1, 1, 2, mask)

    assert torch.autograd.gradcheck(fn, inputs)


def test_offset_conv_learns_from_zero() -> None:
    """Zero offsets still pass a gradient to the offset conv, so training can move them."""
    module = DeformConv2d(3, 4, 3, padding=1, modulated=True)
    module(torch.randn(2, 3, 6, 6)).square().sum().backward()
    assert module.offset.weight.grad is not None
    assert module.offset.weight.grad[:18].abs().sum() > 0  # offsets
    assert module.offset.weight.grad[18:].abs().sum() > 0  # masks


# --- the op: shape rule, parameters and MACs against torch ----------------------------------


def prepare(raw: dict[str, Any]) -> dict[str, Any]:
    return normalize_attrs(OPS["deform_conv"], bind_defaults(OPS["deform_conv"], raw))


RULE_CASES = [
    ({"out": 8, "kernel": 3}, (4, 9, 9)),
    ({"out": 6, "kernel": [3, 2], "stride": 2, "padding": 1, "groups": 2}, (4, 9, 7)),
    ({"out": 4, "kernel": 3, "dilation": [2, 1], "offset_groups": 2, "bias": False}, (6, 8, 8)),
    ({"out": 4, "kernel": 3, "modulated": True, "offset_groups": 3}, (3, 5, 5)),
    ({"out": 5, "kernel": [2, 4], "padding": "same", "dilation": 3, "modulated": True}, (2, 7, 6)),
    ({"out": 5, "kernel": 3, "padding": "valid", "stride": [1, 3]}, (2, 5, 9)),
    # rejected
    ({"out": 4, "kernel": 3, "offset_groups": 2}, (3, 5, 5)),
    ({"out": 5, "kernel": 3, "groups": 2}, (4, 5, 5)),
    ({"out": 4, "kernel": 7}, (3, 5, 5)),
    ({"out": 4, "kernel": 3, "padding": "same", "stride": 2}, (3, 5, 5)),
]


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("raw", "shape"), RULE_CASES)
def test_rule_matches_torch(raw: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Shape, parameters, buffers and MACs agree with torch; ShapeProblem iff torch raises."""
    attrs, opdef = prepare(raw), OPS["deform_conv"]
    try:
        expected = opdef.infer(attrs, [shape])
    except ShapeProblem as problem:
        assert problem.message.startswith("deform_conv: ")
        with pytest.raises((RuntimeError, ValueError)):
            build_module("deform_conv", attrs, [shape])(torch.empty(2, *shape))
        return
    with torch.device("meta"):
        module = build_module("deform_conv", attrs, [shape])
        x = torch.empty(2, *shape)
    counter = FlopCounterMode(display=False)
    with counter:
        y = module(x)
    assert tuple(y.shape) == (2, *expected)
    assert opdef.count_params(attrs, [shape]) == sum(p.numel() for p in module.parameters())
    assert opdef.count_buffers(attrs, [shape]) == 0 == len(list(module.buffers()))
    assert 2 * 2 * opdef.macs(attrs, [shape], expected) == counter.get_total_flops()
    keys = ["weight", "bias", "offset.weight", "offset.bias"]
    assert list(module.state_dict()) == (keys if attrs["bias"] else [keys[0], *keys[2:]])


def test_rule_errors_name_the_op() -> None:
    with pytest.raises(ShapeProblem, match=r"offset_groups 2 must divide the input channels \(3\)"):
        OPS["deform_conv"].infer(prepare({"out": 4, "kernel": 3, "offset_groups": 2}), [(3, 5, 5)])
    with pytest.raises(ShapeProblem, match=r"^deform_conv: output height -1 <= 0") as info:
        OPS["deform_conv"].infer(prepare({"out": 4, "kernel": 7}), [(3, 5, 5)])
    assert info.value.arithmetic == "(5 + 2*0 - 1*(7-1) - 1) // 1 + 1 = -1"


# --- dcn_resnet50 ---------------------------------------------------------------------------

DEFORMABLE_STAGES = {"layer2": (4, 128), "layer3": (6, 256), "layer4": (3, 512)}
"""Stage -> (blocks, width of its 3x3 conv2) in ResNet-50 (He et al. 2016, Table 1)."""


def offset_keys() -> list[str]:
    return [
        f"{stage}.{i}.conv2.offset.{t}"
        for stage, (blocks, _) in DEFORMABLE_STAGES.items()
        for i in range(blocks)
        for t in ("weight", "bias")
    ]


@pytest.mark.parametrize("modulated", [False, True])
def test_dcn_resnet50_is_resnet50_plus_offset_convs(modulated: bool) -> None:
    opdef = OPS["deform_conv"]
    extra = 0
    for blocks, width in DEFORMABLE_STAGES.values():
        attrs = prepare({"out": width, "kernel": 3, "padding": 1, "modulated": modulated})
        conv2 = opdef.count_params(attrs, [(width, 28, 28)])
        extra += blocks * (conv2 - (width * width * 9 + width))  # less conv's weight, bias
    assert extra == (580_842 if not modulated else 871_263)
    resnet50 = archdsl.count_params(archdsl.load_graph("resnet50"))
    graph = archdsl.load_graph("dcn_resnet50", modulated=modulated)
    assert archdsl.count_params(graph) == resnet50 + extra
    dcn = archdsl.load("dcn_resnet50", device="meta", modulated=modulated)
    ref = archdsl.load("resnet50", device="meta").state_dict()
    sd = dcn.state_dict()
    assert sum(p.numel() for p in dcn.parameters()) == resnet50 + extra
    assert sorted(set(sd) - set(ref)) == sorted(offset_keys()) and set(ref) <= set(sd)
    assert all(sd[k].shape == ref[k].shape for k in ref)
    taps = 27 if modulated else 18
    assert sd["layer3.0.conv2.offset.weight"].shape == (taps, 256, 3, 3)
    kinds = {type(m).__name__ for name, m in dcn.named_modules() if name.endswith("conv2")}
    assert kinds == {"Conv2d", "DeformConv2d"}
    assert isinstance(dcn.get_submodule("layer1.0.conv2"), nn.Conv2d)
    assert all(
        isinstance(dcn.get_submodule(k.rsplit(".", 2)[0]), DeformConv2d) for k in offset_keys()
    )


def test_dcn_resnet50_equals_resnet50_at_init() -> None:
    """resnet50's weights (the reference fill) load with strict=False, missing exactly the
    offset convs; with the zero offsets of init the network computes resnet50: the golden
    logits, which are torchvision's resnet50 with those weights (float64, 224 x 224)."""
    torch.manual_seed(0)
    dcn = archdsl.load("dcn_resnet50")
    conv2 = dcn.get_submodule("layer3.1.conv2")
    assert not conv2.offset.weight.any() and not conv2.offset.bias.any()
    # the network's He-normal (fan_out) init reaches the deformable weights too
    std = conv2.weight.std().item()
    assert abs(std - math.sqrt(2 / (256 * 9))) < 0.05 * std
    resnet50 = fill(archdsl.load("resnet50", device="meta").to_empty(device="cpu"))
    result = dcn.load_state_dict(resnet50.state_dict(), strict=False)
    assert sorted(result.missing_keys) == sorted(offset_keys()) and not result.unexpected_keys
    ref = load_reference("resnet50")
    with torch.no_grad():
        got = dcn.double().eval()(golden_input(ref["resolution"]))
    golden = torch.tensor(ref["golden_logits"], dtype=F64)
    assert got.shape == golden.shape == (2, 1000)
    assert (got - golden).abs().max().item() <= 1e-6 * golden.abs().max().item()
