"""Ops that reshape or pass values through: ``flatten``, ``dropout``, ``identity``,
``scale``, ``channel_affine``.

``scale`` multiplies by a constant, as Inception-ResNet scales a residual branch before the
sum (Szegedy et al., AAAI 2017, Section 3.3); like the others it keeps the shape (of any
rank) and has no parameters. ``channel_affine`` maps each channel through its own constant
``x * scale + shift``: torchvision's ``transform_input`` of GoogLeNet and Inception v3, with
which their published weights were trained, or an input normalization inside a network.
"""

from __future__ import annotations

import math

from archdsl.ops.base import OpDef, Param, Shape, ShapeProblem
from archdsl.ops.checks import Attrs, need_rank, single_input


def _flatten_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return (math.prod(single_input("flatten", inputs)),)


def _dropout_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return single_input("dropout", inputs)


def _identity_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return single_input("identity", inputs)


FLATTEN = OpDef(
    name="flatten",
    params=(),
    infer=_flatten_infer,
    doc="Flatten everything but the batch: [C, H, W] -> [C*H*W] (torch.nn.Flatten).",
    torch_class="Flatten",
)

DROPOUT = OpDef(
    name="dropout",
    params=(Param("p", "prob", 0.5, doc="probability of zeroing an element in training"),),
    infer=_dropout_infer,
    doc="Randomly zero elements in training mode; identity in eval (torch.nn.Dropout).",
    torch_class="Dropout",
)

IDENTITY = OpDef(
    name="identity",
    params=(),
    infer=_identity_infer,
    doc="Pass the input through unchanged (torch.nn.Identity).",
    torch_class="Identity",
)


def _scale_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return single_input("scale", inputs)


SCALE = OpDef(
    name="scale",
    params=(Param("factor", "float", doc="the constant every element is multiplied by"),),
    infer=_scale_infer,
    doc="Multiply by a constant: x * factor; no parameters (Inception-ResNet's residual scaling).",
    torch_class="Scale",
)


def _channel_affine_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    shape = need_rank("channel_affine", single_input("channel_affine", inputs), (3, 1))
    for name in ("scale", "shift"):
        if len(attrs[name]) != shape[0]:
            channels = f"{shape[0]} channel" + "s" * (shape[0] != 1)
            raise ShapeProblem(
                f"channel_affine: {name} has {len(attrs[name])} values for {channels}"
            )
    return shape


CHANNEL_AFFINE = OpDef(
    name="channel_affine",
    params=(
        Param("scale", "floats", doc="each channel's factor, one per channel"),
        Param("shift", "floats", doc="what is then added to each channel, one per channel"),
    ),
    infer=_channel_affine_infer,
    doc="Per-channel constants: x[:, c] * scale[c] + shift[c]; no parameters (torchvision's "
    "transform_input for GoogLeNet and Inception v3, or an input normalization).",
    torch_class="ChannelAffine",
)

DEFS: tuple[OpDef, ...] = (FLATTEN, DROPOUT, IDENTITY, SCALE, CHANNEL_AFFINE)
