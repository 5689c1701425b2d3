"""``deform_conv``: a deformable convolution whose sampling offsets are learned.

Dai et al., "Deformable Convolutional Networks", ICCV 2017 (v1: each kernel tap samples
the input at its regular grid position plus a learned 2-D offset, bilinearly);
Zhu et al., "Deformable ConvNets v2", CVPR 2019 (``modulated=true``: each tap's sample is
also scaled by a learned mask in (0, 1)).

The offsets (and masks) are predicted from the op's own input by an ordinary convolution
with the same kernel, stride, padding and dilation (``groups`` 1, with bias), named
``offset`` in the module: its state_dict keys are ``weight``, ``bias`` (with ``bias``),
``offset.weight`` and ``offset.bias``. That convolution starts at zero, so an untrained
``deform_conv`` computes exactly the ``conv`` with the same arguments; when modulated its
masks start at sigmoid(0) = 0.5, as in the v2 paper, so the weighted sum starts at half the
conv's (the bias is not scaled). Shapes follow ``conv``'s rule, with ``offset_groups``
also dividing the input channels.

MACs count the main convolution, one per weight per output position as ``conv``, plus the
offset convolution's; the bilinear sampling (four weighted reads per tap) and the mask
product are element-wise work and not counted, as the MAC convention counts no
element-wise work anywhere.
"""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape, ShapeProblem
from archdsl.ops.checks import Attrs, as_pair
from archdsl.ops.conv import CONV


def offset_channels(attrs: Attrs) -> int:
    """Output channels of the offset convolution: a (dy, dx) pair per kernel tap and offset
    group, plus one mask per tap and group when modulated."""
    kh, kw = as_pair(attrs["kernel"])
    per_tap = 3 if attrs["modulated"] else 2
    return per_tap * kh * kw * attrs["offset_groups"]


def _offset_conv_attrs(attrs: Attrs) -> dict[str, object]:
    return {**attrs, "out": offset_channels(attrs), "groups": 1, "bias": True}


def _infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    try:
        shape = CONV.infer(attrs, inputs)
    except ShapeProblem as problem:  # conv's messages start with "conv"
        raise ShapeProblem("deform_" + problem.message, problem.arithmetic) from None
    c, og = inputs[0][0], attrs["offset_groups"]
    if c % og:
        raise ShapeProblem(f"deform_conv: offset_groups {og} must divide the input channels ({c})")
    return shape


def _params(attrs: Attrs, inputs: list[Shape]) -> int:
    return CONV.count_params(attrs, inputs) + CONV.count_params(_offset_conv_attrs(attrs), inputs)


def _macs(attrs: Attrs, inputs: list[Shape], output: Shape) -> int:
    offset_output = (offset_channels(attrs), *output[1:])
    return CONV.macs(attrs, inputs, output) + CONV.macs(
        _offset_conv_attrs(attrs), inputs, offset_output
    )


DEFORM_CONV = OpDef(
    name="deform_conv",
    params=(
        Param("out", "posint", doc="output channels"),
        Param("kernel", "pair", doc="kernel size: k or [kh, kw]"),
        Param("stride", "pair", 1, doc="stride: s or [sh, sw]"),
        Param(
            "padding",
            "padding",
            0,
            doc='zero padding per side: p, [ph, pw], "same" (stride 1 only) or "valid"; '
            "samples that land outside the input read zeros",
        ),
        Param("dilation", "pair", 1, doc="spacing between the kernel taps' grid positions"),
        Param("groups", "posint", 1, doc="channel groups; must divide in and out channels"),
        Param(
            "offset_groups",
            "posint",
            1,
            doc="groups of input channels that share one set of offsets; must divide the "
            "input channels",
        ),
        Param("bias", "bool", True, doc="add a learned bias per output channel"),
        Param(
            "modulated",
            "bool",
            False,
            doc="v2 (Zhu et al. 2019): also scale each tap's sample by a learned mask in (0, 1)",
        ),
    ),
    infer=_infer,
    count_params=_params,
    macs=_macs,
    stateless=False,
    doc="Deformable 2-D convolution, offsets predicted by a zero-initialised conv 'offset' "
    "(Dai et al. 2017; modulated: Zhu et al. 2019).",
    torch_class="DeformConv2d",
)

DEFS: tuple[OpDef, ...] = (DEFORM_CONV,)
