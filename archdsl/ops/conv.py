"""Ops with weights that mix channels: ``conv`` (nn.Conv2d), ``conv_transpose``
(nn.ConvTranspose2d), ``linear`` (nn.Linear) and ``channel_linear`` (nn.Linear at every position of a feature map, as ConvNeXt's MLP: Liu et
al., CVPR 2022, which computes its pointwise layers channels-last; the weight is
``[out, in]``, where a 1x1 convolution's is ``[out, in, 1, 1]``).

MACs follow the convention of torch's FlopCounterMode (the reference FLOPs are 2 x MACs):
one multiply-accumulate per weight per output position; the bias add is not counted.
"""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape, ShapeProblem, format_value
from archdsl.ops.checks import (
    AXES,
    Attrs,
    as_pair,
    conv_size,
    feature_map,
    need_rank,
    single_input,
    transposed_conv_size,
)


def _grouped(op: str, c: int, attrs: Attrs) -> int:
    """The output channels, once ``groups`` is known to divide them and the input's."""
    out, groups = attrs["out"], attrs["groups"]
    if c % groups or out % groups:
        raise ShapeProblem(
            f"{op}: groups {groups} must divide both the input channels ({c}) "
            f"and the output channels ({out})"
        )
    return int(out)


_OUT = Param("out", "posint", doc="output channels")
_KERNEL = Param("kernel", "pair", doc="kernel size: k or [kh, kw]")
_DILATION = Param("dilation", "pair", 1, doc="spacing between kernel taps")
_GROUPS = Param("groups", "posint", 1, doc="channel groups; must divide in and out channels")
_BIAS = Param("bias", "bool", True, doc="add a learned bias per output channel")


def _conv_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    c, h, w = feature_map("conv", inputs)
    out = _grouped("conv", c, attrs)
    kernel, stride, dilation = (as_pair(attrs[k]) for k in ("kernel", "stride", "dilation"))
    padding = attrs["padding"]
    if padding == "same":
        if stride != (1, 1):
            raise ShapeProblem(
                f'conv: padding="same" needs stride 1 (torch has no strided "same"), '
                f"got stride {format_value(attrs['stride'])}"
            )
        return (out, h, w)
    pads = (0, 0) if padding == "valid" else as_pair(padding)
    hw = tuple(
        conv_size("conv", AXES[i], (h, w)[i], kernel[i], stride[i], pads[i], dilation[i])
        for i in range(2)
    )
    return (out, *hw)


def _conv_params(attrs: Attrs, inputs: list[Shape]) -> int:
    kh, kw = as_pair(attrs["kernel"])
    out = attrs["out"]
    weight = out * (inputs[0][0] // attrs["groups"]) * kh * kw
    return weight + (out if attrs["bias"] else 0)


def _conv_macs(attrs: Attrs, inputs: list[Shape], output: Shape) -> int:
    kh, kw = as_pair(attrs["kernel"])
    out_c, oh, ow = output
    return out_c * oh * ow * (inputs[0][0] // attrs["groups"]) * kh * kw


CONV = OpDef(
    name="conv",
    params=(
        _OUT,
        _KERNEL,
        Param("stride", "pair", 1, doc="stride: s or [sh, sw]"),
        Param(
            "padding",
            "padding",
            0,
            doc='zero padding per side: p, [ph, pw], "same" (stride 1 only) or "valid"',
        ),
        _DILATION,
        _GROUPS,
        _BIAS,
    ),
    infer=_conv_infer,
    count_params=_conv_params,
    macs=_conv_macs,
    stateless=False,
    doc="2-D convolution over a [C, H, W] feature map (torch.nn.Conv2d).",
    torch_class="Conv2d",
)


def _conv_transpose_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    c, h, w = feature_map("conv_transpose", inputs)
    out = _grouped("conv_transpose", c, attrs)
    kernel, stride, padding, output_padding, dilation = (
        as_pair(attrs[k]) for k in ("kernel", "stride", "padding", "output_padding", "dilation")
    )
    hw = tuple(
        transposed_conv_size(
            "conv_transpose",
            AXES[i],
            (h, w)[i],
            kernel[i],
            stride[i],
            padding[i],
            output_padding[i],
            dilation[i],
        )
        for i in range(2)
    )
    return (out, *hw)


def _conv_transpose_params(attrs: Attrs, inputs: list[Shape]) -> int:
    kh, kw = as_pair(attrs["kernel"])
    out = attrs["out"]
    weight = inputs[0][0] * (out // attrs["groups"]) * kh * kw  # stored [in, out / groups, ...]
    return weight + (out if attrs["bias"] else 0)


def _conv_transpose_macs(attrs: Attrs, inputs: list[Shape], output: Shape) -> int:
    # each input position is scattered through the whole kernel (FlopCounterMode counts so)
    kh, kw = as_pair(attrs["kernel"])
    c, h, w = inputs[0]
    return c * h * w * (attrs["out"] // attrs["groups"]) * kh * kw


CONV_TRANSPOSE = OpDef(
    name="conv_transpose",
    params=(
        _OUT,
        _KERNEL,
        Param("stride", "pair", 1, doc="stride: s or [sh, sw]; the output is about s times larger"),
        Param(
            "padding",
            "nonneg_pair",
            0,
            doc="rows and columns taken off each side of the output: p or [ph, pw]",
        ),
        Param(
            "output_padding",
            "nonneg_pair",
            0,
            doc="rows and columns added to one side of the output; below the stride or dilation",
        ),
        _DILATION,
        _GROUPS,
        _BIAS,
    ),
    infer=_conv_transpose_infer,
    count_params=_conv_transpose_params,
    macs=_conv_transpose_macs,
    stateless=False,
    doc="2-D transposed convolution, the gradient of conv: output (H - 1) * stride - 2 * "
    "padding + dilation * (kernel - 1) + output_padding + 1 (torch.nn.ConvTranspose2d; "
    "U-Net's up-convolution, FCN's learned upsampling).",
    torch_class="ConvTranspose2d",
)


def _linear_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    shape = single_input("linear", inputs)
    hint = "; add flatten before it" if len(shape) > 1 else ""
    need_rank("linear", shape, (1,), hint)
    return (attrs["out"],)


def _linear_params(attrs: Attrs, inputs: list[Shape]) -> int:
    out = attrs["out"]
    return inputs[0][0] * out + (out if attrs["bias"] else 0)


def _linear_macs(attrs: Attrs, inputs: list[Shape], output: Shape) -> int:
    return inputs[0][0] * attrs["out"]


LINEAR = OpDef(
    name="linear",
    params=(
        Param("out", "posint", doc="output features"),
        Param("bias", "bool", True, doc="add a learned bias per output feature"),
    ),
    infer=_linear_infer,
    count_params=_linear_params,
    macs=_linear_macs,
    stateless=False,
    doc="Fully connected layer over flat features [F] (torch.nn.Linear).",
    torch_class="Linear",
)


def _channel_linear_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    hint = "; on flat features use linear" if len(inputs[0]) == 1 else ""
    _, h, w = need_rank("channel_linear", single_input("channel_linear", inputs), (3,), hint)
    return (attrs["out"], h, w)


def _channel_linear_macs(attrs: Attrs, inputs: list[Shape], output: Shape) -> int:
    c, h, w = inputs[0]
    return c * attrs["out"] * h * w


CHANNEL_LINEAR = OpDef(
    name="channel_linear",
    params=(
        Param("out", "posint", doc="output channels"),
        Param("bias", "bool", True, doc="add a learned bias per output channel"),
    ),
    infer=_channel_linear_infer,
    count_params=_linear_params,
    macs=_channel_linear_macs,
    stateless=False,
    doc="Fully connected layer over the channels at every position of a [C, H, W] map, "
    "weight [out, in] (torch.nn.Linear channels-last: ConvNeXt's MLP).",
    torch_class="ChannelLinear",
)

DEFS: tuple[OpDef, ...] = (CONV, CONV_TRANSPOSE, LINEAR, CHANNEL_LINEAR)
