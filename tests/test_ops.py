"""The op registry against torch: shapes, parameter/buffer counts, MACs, errors.

torch is the oracle. For random configurations of every op the shape rule must agree with
the module ``build_module`` makes: the same output shape when the rule accepts, and a
torch error exactly when the rule raises ShapeProblem. Modules run on the meta device, so
no memory is touched and the whole file stays fast. The ops' attributes (``normalize_attrs``)
and the registry as documentation are tested in test_ops_attrs.py.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from archdsl.backends.torch_modules import (
    BUILDERS,
    GlobalPool2d,
    LayerNorm2d,
    build_module,
    build_parameter,
)
from archdsl.ops import (
    ALL_OPS,
    FUNCTIONAL_OPS,
    MERGE_OPS,
    OPS,
    PARAMETER_OPS,
    Shape,
    ShapeProblem,
    SizeOf,
    bind_defaults,
    get_op,
    normalize_attrs,
)
from archdsl.ops.checks import pool_size

BATCH = 2


def prepare(op: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Bind defaults and normalize, as the elaborator does."""
    return normalize_attrs(OPS[op], bind_defaults(OPS[op], raw))


def infer(op: str, raw: dict[str, Any], *shapes: Shape) -> Shape:
    return OPS[op].infer(prepare(op, raw), list(shapes))


def run_torch(
    op: str, attrs: dict[str, Any], shape: Shape, device: str = "meta"
) -> tuple[nn.Module, Shape, int]:
    """Build and run a batch; returns the module, the per-sample shape and FLOPs. An op whose
    parameter is its block's runs as the block's forward does: ``x * factors``."""
    with torch.device(device):
        if op in PARAMETER_OPS:
            module = _Holder(build_parameter(op, attrs, [shape]), attrs["flat"])
        elif op == "upsample":  # torch's own, told align_corners=True where the spec says
            # so (archdsl's leaves it out where torch refuses it: only torch says where)
            corners = attrs["align_corners"] or None
            module = nn.Upsample(
                scale_factor=attrs["scale"], mode=attrs["mode"], align_corners=corners
            )
        else:  # eval: BN's cumulative mode reads a counter with .item(), which meta cannot
            module = build_module(op, attrs, [shape]).eval()
        x = torch.empty(BATCH, *shape)
    counter = FlopCounterMode(display=False)
    with counter:
        y = module(x)
    if not y.numel():  # torch's transposed convolution makes an empty map of size 0
        raise ValueError(f"{op}: an empty output {tuple(y.shape)}")
    assert y.shape[0] == BATCH
    return module, tuple(y.shape[1:]), counter.get_total_flops()


class _Holder(nn.Module):
    def __init__(self, factors: nn.Parameter, flat: bool) -> None:
        super().__init__()
        self.factors = factors
        self.flat = flat

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.factors.view(-1, 1, 1) if self.flat else self.factors)


# --- strategies: random small configurations of every non-merge op ---------------------

size = st.integers(1, 12)
channels = st.integers(1, 8)
fmap = st.tuples(channels, size, size)
flat = st.tuples(st.integers(1, 16))
any_shape = st.one_of(fmap, flat)
small_float = st.floats(-2.0, 2.0, allow_nan=False)
prob = st.floats(0.0, 1.0)


def int_or_pair(lo: int, hi: int) -> st.SearchStrategy[Any]:
    ints = st.integers(lo, hi)
    return st.one_of(ints, st.lists(ints, min_size=2, max_size=2))


def case(attrs: st.SearchStrategy[dict[str, Any]], shape: st.SearchStrategy[Shape]) -> Any:
    return st.tuples(attrs, shape)


def no_args(shape: st.SearchStrategy[Shape] = any_shape) -> Any:
    return case(st.just({}), shape)


CASES: dict[str, Any] = {
    "conv": case(
        st.fixed_dictionaries(
            {
                "out": st.integers(1, 9),
                "kernel": int_or_pair(1, 5),
                "stride": int_or_pair(1, 3),
                "padding": st.one_of(int_or_pair(0, 3), st.sampled_from(["same", "valid"])),
                "dilation": int_or_pair(1, 3),
                "groups": st.integers(1, 3),
                "bias": st.booleans(),
            }
        ),
        st.tuples(st.integers(1, 9), size, size),
    ),
    "conv_transpose": case(
        st.fixed_dictionaries(
            {
                "out": st.integers(1, 9),
                "kernel": int_or_pair(1, 5),
                "stride": int_or_pair(1, 3),
                "padding": int_or_pair(0, 3),
                "output_padding": int_or_pair(0, 3),  # at or past the stride: an error
                "dilation": int_or_pair(1, 3),
                "groups": st.integers(1, 3),
                "bias": st.booleans(),
            }
        ),
        st.tuples(st.integers(1, 9), size, size),
    ),
    "upsample": case(
        st.fixed_dictionaries(
            {
                "scale": int_or_pair(1, 4),
                "mode": st.sampled_from(["nearest", "nearest-exact", "bilinear", "bicubic"]),
                "align_corners": st.booleans(),  # with a nearest mode: an error
            }
        ),
        fmap,
    ),
    "linear": case(st.fixed_dictionaries({"out": channels, "bias": st.booleans()}), flat),
    "channel_linear": case(
        st.fixed_dictionaries({"out": channels, "bias": st.booleans()}), any_shape
    ),
    # a feature map only: on [F] torch broadcasts [N, F] * [F, 1, 1] where the op refuses
    "layer_scale": case(st.fixed_dictionaries({"init": small_float, "flat": st.booleans()}), fmap),
    "bn": case(
        st.fixed_dictionaries(
            {
                "eps": st.floats(1e-6, 1e-2),
                "momentum": st.one_of(st.none(), prob),
                "affine": st.booleans(),
            }
        ),
        any_shape,
    ),
    "layernorm": case(st.fixed_dictionaries({"eps": st.floats(1e-6, 1e-2)}), any_shape),
    "groupnorm": case(st.fixed_dictionaries({"groups": st.integers(1, 4)}), any_shape),
    "lrn": case(
        st.fixed_dictionaries(
            {"size": st.integers(1, 5), "alpha": prob, "beta": prob, "k": st.floats(0.5, 2)}
        ),
        fmap,
    ),
    "relu": no_args(),
    "relu6": no_args(),
    "leaky_relu": case(st.fixed_dictionaries({"slope": small_float}), any_shape),
    "silu": no_args(),
    "gelu": case(
        st.fixed_dictionaries({"approximate": st.sampled_from(["none", "tanh"])}), any_shape
    ),
    "sigmoid": no_args(),
    "tanh": no_args(),
    "hardswish": no_args(),
    "hardsigmoid": no_args(),
    "softmax": case(st.fixed_dictionaries({"dim": st.integers(1, 4)}), any_shape),
    "maxpool": case(
        st.fixed_dictionaries(
            {
                "kernel": int_or_pair(1, 5),
                "stride": st.one_of(st.none(), int_or_pair(1, 3)),
                "padding": int_or_pair(0, 3),
                "dilation": int_or_pair(1, 3),
                "ceil_mode": st.booleans(),
            }
        ),
        fmap,
    ),
    "avgpool": case(
        st.fixed_dictionaries(
            {
                "kernel": int_or_pair(1, 5),
                "stride": st.one_of(st.none(), int_or_pair(1, 3)),
                "padding": int_or_pair(0, 3),
                "ceil_mode": st.booleans(),
                "count_include_pad": st.booleans(),
            }
        ),
        fmap,
    ),
    "adaptive_avgpool": case(st.fixed_dictionaries({"size": int_or_pair(1, 6)}), fmap),
    "adaptive_maxpool": case(st.fixed_dictionaries({"size": int_or_pair(1, 6)}), fmap),
    "global_avgpool": case(st.fixed_dictionaries({"flatten": st.booleans()}), fmap),
    "global_maxpool": case(st.fixed_dictionaries({"flatten": st.booleans()}), fmap),
    "flatten": no_args(),
    "dropout": case(st.fixed_dictionaries({"p": prob}), any_shape),
    "deform_conv": case(
        st.fixed_dictionaries(
            {
                "out": st.integers(1, 9),
                "kernel": int_or_pair(1, 5),
                "stride": int_or_pair(1, 3),
                "padding": st.one_of(int_or_pair(0, 3), st.sampled_from(["same", "valid"])),
                "dilation": int_or_pair(1, 3),
                "groups": st.integers(1, 3),
                "offset_groups": st.integers(1, 3),
                "bias": st.booleans(),
                "modulated": st.booleans(),
            }
        ),
        st.tuples(st.integers(1, 9), size, size),
    ),
    "drop_path": case(
        st.fixed_dictionaries({"p": prob, "mode": st.sampled_from(["row", "batch"])}), any_shape
    ),
    "identity": no_args(),
    "scale": case(st.fixed_dictionaries({"factor": small_float}), any_shape),
    # within the channels: Python's slice clamps where the op refuses (test_channel_ops)
    "channel_slice": channels.flatmap(
        lambda c: st.integers(0, c - 1).flatmap(
            lambda a: case(
                st.fixed_dictionaries({"start": st.just(a), "stop": st.integers(a + 1, c)}),
                st.one_of(st.tuples(st.just(c), size, size), st.just((c,))),
            )
        )
    ),
    "channel_shuffle": case(st.fixed_dictionaries({"groups": st.integers(1, 4)}), fmap),
    # one constant per channel (a wrong count is an error test_channel_affine_... checks)
    "channel_affine": channels.flatmap(
        lambda c: case(
            st.fixed_dictionaries(
                {
                    "scale": st.lists(small_float, min_size=c, max_size=c),
                    "shift": st.lists(small_float, min_size=c, max_size=c),
                }
            ),
            st.one_of(st.tuples(st.just(c), size, size), st.just((c,))),
        )
    ),
}


def test_every_module_op_has_a_builder_and_a_case() -> None:
    module_ops = {d.name for d in ALL_OPS if d.name not in FUNCTIONAL_OPS}
    assert set(BUILDERS) == module_ops - PARAMETER_OPS
    assert set(CASES) == module_ops
    assert {"add", "concat", "mul"} == MERGE_OPS
    assert FUNCTIONAL_OPS == MERGE_OPS | {"resize"}


@pytest.mark.parametrize("op", sorted(CASES))
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_rule_matches_torch(op: str, data: st.DataObject) -> None:
    """Shape, params, buffers and MACs agree with torch; ShapeProblem iff torch raises."""
    raw, shape = data.draw(CASES[op])
    attrs = prepare(op, raw)
    opdef = OPS[op]
    try:
        expected = opdef.infer(attrs, [shape])
    except ShapeProblem as problem:
        assert problem.message.startswith(op)
        # on CPU: meta kernels skip some checks (softmax's dim range)
        with pytest.raises((RuntimeError, ValueError, IndexError)):
            run_torch(op, attrs, shape, device="cpu")
        return
    module, got, flops = run_torch(op, attrs, shape)
    assert got == expected
    assert opdef.count_params(attrs, [shape]) == sum(p.numel() for p in module.parameters())
    assert opdef.count_buffers(attrs, [shape]) == sum(b.numel() for b in module.buffers())
    # torch counts 2 FLOPs per multiply-accumulate, for the whole batch
    assert 2 * BATCH * opdef.macs(attrs, [shape], expected) == flops
    if opdef.stateless:
        assert not list(module.parameters()) and not list(module.buffers())


# --- pooling arithmetic: an exhaustive small grid against torch on CPU -------------------


def test_pool_size_matches_torch_on_a_grid() -> None:
    """Every kernel/stride/padding/dilation/ceil_mode combination on small inputs."""
    grid = itertools.product(
        range(1, 8), range(1, 5), range(1, 4), range(0, 3), range(1, 3), (False, True)
    )
    for h, k, s, p, d, ceil in grid:
        module = nn.MaxPool2d(k, s, p, d, ceil_mode=ceil)
        try:
            want: int | None = module(torch.zeros(1, 1, h, 1 + 2 * p + d * (k - 1))).shape[2]
        except RuntimeError:
            want = None
        try:
            got: int | None = pool_size("maxpool", "height", h, k, s, p, d, ceil)
        except ShapeProblem:
            got = None
        assert got == want, (h, k, s, p, d, ceil)


@pytest.mark.parametrize(
    ("raw", "size", "want"),
    [
        ({"kernel": 3, "stride": 2}, 55, 27),  # AlexNet
        ({"kernel": 3, "stride": 2, "padding": 1}, 112, 56),  # ResNet stem
        ({"kernel": 3, "stride": 2, "ceil_mode": True}, 112, 56),  # GoogLeNet
        ({"kernel": 3, "stride": 2}, 112, 55),
        ({"kernel": 2, "stride": 2, "ceil_mode": True}, 5, 3),
        ({"kernel": 2, "ceil_mode": True}, 5, 3),  # stride none = kernel
        ({"kernel": 2}, 5, 2),
        # ceil would give 4, but the 4th window would start in the right padding: dropped
        ({"kernel": 2, "stride": 2, "padding": 1, "ceil_mode": True}, 5, 3),
        ({"kernel": 3, "stride": 1, "padding": 1, "ceil_mode": True}, 14, 14),
    ],
)
def test_pool_hand_worked(raw: dict[str, Any], size: int, want: int) -> None:
    for op in ("maxpool", "avgpool"):
        assert infer(op, raw, (8, size, size)) == (8, want, want)
        attrs = prepare(op, raw)
        torch_out = build_module(op, attrs, [(8, size, size)])(torch.zeros(1, 8, size, size))
        assert torch_out.shape[2:] == (want, want)


def test_pool_padding_more_than_half_kernel() -> None:
    assert infer("maxpool", {"kernel": 3, "padding": 1}, (1, 9, 9)) == (1, 3, 3)
    with pytest.raises(ShapeProblem, match="more than half the kernel"):
        infer("maxpool", {"kernel": 3, "padding": 2}, (1, 9, 9))
    with pytest.raises(RuntimeError):
        nn.MaxPool2d(3, padding=2)(torch.zeros(1, 1, 9, 9))
    # torch compares with the plain kernel even when dilated
    with pytest.raises(ShapeProblem):
        infer("maxpool", {"kernel": 2, "padding": 2, "dilation": 3}, (1, 9, 9))
    with pytest.raises(RuntimeError):
        nn.MaxPool2d(2, padding=2, dilation=3)(torch.zeros(1, 1, 9, 9))


def test_pool_too_small_shows_arithmetic() -> None:
    with pytest.raises(ShapeProblem) as err:
        infer("maxpool", {"kernel": 3, "stride": 2}, (4, 2, 9))
    assert err.value.message == "maxpool: output height 0 <= 0: input too small for kernel 3"
    assert err.value.arithmetic == "(2 + 2*0 - 1*(3-1) - 1) // 2 + 1 = 0"


# --- conv and linear, hand-worked -------------------------------------------------------


def test_alexnet_conv1() -> None:
    raw = {"out": 64, "kernel": 11, "stride": 4, "padding": 2}
    attrs = prepare("conv", raw)
    conv = OPS["conv"]
    assert conv.infer(attrs, [(3, 224, 224)]) == (64, 55, 55)
    assert conv.count_params(attrs, [(3, 224, 224)]) == 64 * 3 * 11 * 11 + 64
    assert conv.macs(attrs, [(3, 224, 224)], (64, 55, 55)) == 64 * 55 * 55 * 3 * 11 * 11


def test_conv_grouped_dilated_params_and_macs() -> None:
    raw = {"out": 8, "kernel": [3, 1], "dilation": 2, "groups": 4, "bias": False}
    attrs = prepare("conv", raw)
    assert OPS["conv"].infer(attrs, [(12, 10, 10)]) == (8, 6, 10)
    assert OPS["conv"].count_params(attrs, [(12, 10, 10)]) == 8 * 3 * 3 * 1
    assert OPS["conv"].macs(attrs, [(12, 10, 10)], (8, 6, 10)) == 8 * 6 * 10 * 3 * 3


def test_conv_too_small_shows_arithmetic() -> None:
    with pytest.raises(ShapeProblem) as err:
        infer("conv", {"out": 64, "kernel": 11, "stride": 4}, (3, 7, 7))
    assert err.value.message == "conv: output height 0 <= 0: input too small for kernel 11"
    assert err.value.arithmetic == "(7 + 2*0 - 1*(11-1) - 1) // 4 + 1 = 0"
    with pytest.raises(ShapeProblem, match="output width -1 <= 0") as err:
        infer("conv", {"out": 4, "kernel": [1, 5], "dilation": 2}, (3, 7, 7))
    assert err.value.arithmetic == "(7 + 2*0 - 2*(5-1) - 1) // 1 + 1 = -1"


def test_conv_same_and_valid_padding() -> None:
    assert infer("conv", {"out": 4, "kernel": 4, "padding": "same", "dilation": 3}, (2, 5, 7)) == (
        4,
        5,
        7,
    )
    assert infer("conv", {"out": 4, "kernel": 3, "padding": "valid"}, (2, 5, 7)) == (4, 3, 5)
    with pytest.raises(ShapeProblem, match='padding="same" needs stride 1'):
        infer("conv", {"out": 4, "kernel": 3, "stride": [1, 2], "padding": "same"}, (2, 5, 7))


def test_conv_groups_name_both_channel_counts() -> None:
    with pytest.raises(
        ShapeProblem, match=r"groups 3 .* input channels \(4\).* output channels \(6\)"
    ):
        infer("conv", {"out": 6, "kernel": 1, "groups": 3}, (4, 5, 5))
    with pytest.raises(ShapeProblem, match=r"output channels \(5\)"):
        infer("conv", {"out": 5, "kernel": 1, "groups": 3}, (6, 5, 5))


def test_rank_errors_name_op_need_and_got() -> None:
    with pytest.raises(ShapeProblem) as err:
        infer("linear", {"out": 10}, (512, 7, 7))
    assert err.value.message == (
        "linear expects flat features [F], got [512, 7, 7]; add flatten before it"
    )
    with pytest.raises(ShapeProblem, match=r"conv expects a feature map \[C, H, W\], got \[512\]"):
        infer("conv", {"out": 4, "kernel": 1}, (512,))
    for op, raw in [("maxpool", {"kernel": 2}), ("lrn", {"size": 3}), ("global_avgpool", {})]:
        with pytest.raises(ShapeProblem, match=rf"^{op} expects a feature map"):
            infer(op, raw, (16,))
    with pytest.raises(ShapeProblem, match=r"bn expects a feature map .* or flat features"):
        infer("bn", {}, (3, 4))


def test_softmax_dim_counts_the_batch() -> None:
    assert infer("softmax", {"dim": 3}, (4, 5, 6)) == (4, 5, 6)
    for dim in (0, -1, 2):
        with pytest.raises(ShapeProblem, match=rf"softmax: dim {dim} is out of range"):
            infer("softmax", {"dim": dim}, (10,))


# --- norms and custom modules -----------------------------------------------------------


def test_bn_counts_and_module_class() -> None:
    bn = get_op("batchnorm")
    assert bn is OPS["bn"]
    attrs = prepare("bn", {"affine": False})
    assert bn.count_params(attrs, [(64, 7, 7)]) == 0
    assert bn.count_buffers(attrs, [(64, 7, 7)]) == 64 * 2 + 1
    assert isinstance(build_module("batchnorm", {}, [(64, 7, 7)]), nn.BatchNorm2d)
    assert isinstance(build_module("bn", {}, [(64,)]), nn.BatchNorm1d)


def test_groupnorm_groups_must_divide_channels() -> None:
    with pytest.raises(ShapeProblem, match=r"groupnorm: groups 4 must divide the channels \(6\)"):
        infer("groupnorm", {"groups": 4}, (6, 3, 3))


def test_layernorm2d_normalizes_channels() -> None:
    module = build_module("layernorm", {"eps": 1e-6}, [(5, 3, 4)])
    assert isinstance(module, LayerNorm2d)
    assert list(module.state_dict()) == ["weight", "bias"]
    with torch.no_grad():
        module.weight.uniform_()
        module.bias.uniform_()
    x = torch.randn(2, 5, 3, 4)
    mean = x.mean(1, keepdim=True)
    var = x.var(1, keepdim=True, unbiased=False)
    want = (x - mean) / torch.sqrt(var + 1e-6) * module.weight.view(1, 5, 1, 1)
    want = want + module.bias.view(1, 5, 1, 1)
    torch.testing.assert_close(module(x), want)
    assert isinstance(build_module("layernorm", {}, [(5,)]), nn.LayerNorm)


def test_global_pool_matches_adaptive_pool() -> None:
    x = torch.randn(2, 3, 5, 7)
    avg = build_module("global_avgpool", {}, [(3, 5, 7)])
    assert isinstance(avg, GlobalPool2d)
    assert torch.equal(avg(x), nn.AdaptiveAvgPool2d(1)(x))
    flat = build_module("global_maxpool", {"flatten": True}, [(3, 5, 7)])
    assert torch.equal(flat(x), x.amax((2, 3)))
    assert infer("global_maxpool", {"flatten": True}, (3, 5, 7)) == (3,)


def test_pooling_reprs_match_torchvision() -> None:
    module = build_module("maxpool", {"kernel": 3, "stride": 2, "padding": 1}, [(64, 112, 112)])
    assert (
        repr(module) == "MaxPool2d(kernel_size=3, stride=2, padding=1, dilation=1, ceil_mode=False)"
    )
    module = build_module("avgpool", {"kernel": 2, "stride": 2}, [(64, 8, 8)])
    assert repr(module) == "AvgPool2d(kernel_size=2, stride=2, padding=0)"
    assert repr(build_module("adaptive_avgpool", {"size": 1}, [(8, 7, 7)])) == (
        "AdaptiveAvgPool2d(output_size=(1, 1))"
    )


def test_functions_have_no_module() -> None:
    for op in sorted(FUNCTIONAL_OPS):
        with pytest.raises(ValueError, match="no module: the backend applies it as a function"):
            build_module(op, {}, [(3, 4, 4), (3, 4, 4)])
    with pytest.raises(KeyError):
        build_module("nope", {}, [(3,)])


# --- resize: F.interpolate to a size, given or another value's ----------------------------

resize_size = st.integers(1, 9)


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(1, 4),
    size_in=st.tuples(resize_size, resize_size),
    size_out=st.tuples(resize_size, resize_size),
    mode=st.sampled_from(["nearest", "nearest-exact", "bilinear", "bicubic"]),
    align_corners=st.booleans(),
    by_reference=st.booleans(),
)
def test_resize_rule_matches_torch(
    c: int,
    size_in: tuple[int, int],
    size_out: tuple[int, int],
    mode: str,
    align_corners: bool,
    by_reference: bool,
) -> None:
    """The shape rule against F.interpolate, the size given or another map's (whose
    channels do not matter); align_corners with a nearest mode is an error in both."""
    size = SizeOf("@other") if by_reference else size_out
    attrs = prepare("resize", {"size": size, "mode": mode, "align_corners": align_corners})
    shapes: list[Shape] = [(c, *size_in)] + ([(c + 3, *size_out)] if by_reference else [])
    x = torch.empty(BATCH, c, *size_in, device="meta")
    corners = align_corners if mode in ("bilinear", "bicubic") or align_corners else None
    try:
        got = OPS["resize"].infer(attrs, shapes)
    except ShapeProblem as problem:
        assert problem.message.startswith("resize: align_corners=true")
        with pytest.raises(ValueError):
            F.interpolate(x, size=size_out, mode=mode, align_corners=corners)
        return
    out = F.interpolate(x, size=size_out, mode=mode, align_corners=corners)
    assert got == tuple(out.shape[1:]) == (c, *size_out)


def test_resize_refuses_what_is_not_a_map() -> None:
    with pytest.raises(ShapeProblem, match=r"resize expects a feature map .* got \[10\]$"):
        infer("resize", {"size": 4}, (10,))
    with pytest.raises(ShapeProblem, match=r"got \[10\] as its size \(@fc\)"):
        infer("resize", {"size": SizeOf("@fc")}, (3, 4, 4), (10,))
    assert infer("resize", {"size": [2, 5]}, (3, 4, 4)) == (3, 2, 5)
    assert infer("resize", {"size": SizeOf("@in")}, (3, 4, 4), (1, 7, 9)) == (3, 7, 9)


# --- merges -----------------------------------------------------------------------------

merge_dim = st.sampled_from([1, 2, 3])


@st.composite
def merge_inputs(draw: st.DrawFn) -> list[Shape]:
    rank = draw(st.sampled_from([1, 3]))
    n = draw(st.integers(1, 4))
    return [tuple(draw(st.lists(merge_dim, min_size=rank, max_size=rank))) for _ in range(n)]


def torch_merge(op: str, shapes: list[Shape]) -> Shape:
    xs = [torch.empty(BATCH, *s, device="meta") for s in shapes]
    if op == "concat":
        return tuple(torch.cat(xs, dim=1).shape[1:])
    fold = torch.add if op == "add" else torch.mul
    y = xs[0]
    for x in xs[1:]:
        y = fold(y, x)
    return tuple(y.shape[1:])


@pytest.mark.parametrize("op", ["add", "concat", "mul"])
@settings(max_examples=60, deadline=None)
@given(shapes=merge_inputs())
def test_merge_rule_matches_torch(op: str, shapes: list[Shape]) -> None:
    try:
        got = OPS[op].infer({}, shapes)
    except ShapeProblem as problem:
        assert problem.message.startswith(f"{op}: input ")
        if op == "add":  # stricter than torch on purpose: no implicit broadcasting
            assert len(set(shapes)) > 1
        else:
            with pytest.raises(RuntimeError):
                torch_merge(op, shapes)
        return
    assert got == torch_merge(op, shapes)
    if op == "add":
        assert len(set(shapes)) == 1


def test_merge_messages_name_the_input_and_both_shapes() -> None:
    with pytest.raises(ShapeProblem) as err:
        OPS["add"].infer({}, [(64, 56, 56), (64, 56, 56), (64, 28, 28)])
    assert err.value.message == (
        "add: input 2 has shape [64, 28, 28] but input 0 has [64, 56, 56]; "
        "add needs identical shapes"
    )
    assert OPS["mul"].infer({}, [(64, 1, 1), (64, 7, 7)]) == (64, 7, 7)
    with pytest.raises(ShapeProblem, match=r"input 2 \[32, 7, 7\].* input 1 \[64, 7, 7\]"):
        OPS["mul"].infer({}, [(1, 1, 1), (64, 7, 7), (32, 7, 7)])
    with pytest.raises(ShapeProblem, match=r"rank"):
        OPS["mul"].infer({}, [(64,), (64, 7, 7)])
    assert OPS["concat"].infer({}, [(64, 7, 7), (32, 7, 7), (8, 7, 7)]) == (104, 7, 7)
    assert OPS["concat"].infer({}, [(10,), (5,)]) == (15,)
    with pytest.raises(ShapeProblem, match=r"input 1 \[32, 14, 14\] and input 0 \[64, 7, 7\]"):
        OPS["concat"].infer({}, [(64, 7, 7), (32, 14, 14)])
    with pytest.raises(ShapeProblem, match=r"input 1 .* rank 1 but input 0 .* rank 3"):
        OPS["concat"].infer({}, [(64, 7, 7), (64,)])
