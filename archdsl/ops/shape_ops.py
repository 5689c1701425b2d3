"""Ops that reshape, pass values through or scale them: ``flatten``, ``dropout``,
``identity``, ``scale``, ``channel_affine``, ``layer_scale``.

``scale`` multiplies by a constant, as Inception-ResNet scales a residual branch before the
sum (Szegedy et al., AAAI 2017, Section 3.3); like the others it keeps the shape (of any
rank) and has no parameters. ``channel_affine`` maps each channel through its own constant
``x * scale + shift``: torchvision's ``transform_input`` of GoogLeNet and Inception v3, with
which their published weights were trained, or an input normalization inside a network.

``layer_scale`` multiplies each channel by a learned factor (LayerScale: Touvron et al.,
ICCV 2021; ConvNeXt's residual branches). Unlike every other op's, its parameter is not a
module's: it belongs to the enclosing block itself, under the layer's label, as in the
libraries (torchvision's ``features.1.0.layer_scale``, timm's ``stages.0.blocks.0.gamma``),
and the block multiplies by it in its forward.
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


def _layer_scale_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return need_rank("layer_scale", single_input("layer_scale", inputs), (3,))


LAYER_SCALE = OpDef(
    name="layer_scale",
    params=(
        Param("init", "float", 1e-6, doc="every factor's initial value"),
        Param(
            "flat",
            "bool",
            False,
            doc="store the factors as [C] (timm's gamma), not [C, 1, 1] (torchvision's)",
        ),
    ),
    infer=_layer_scale_infer,
    count_params=lambda attrs, inputs: inputs[0][0],
    stateless=False,
    doc="A learned factor per channel, x[:, c] * gamma[c]; the parameter is the enclosing "
    "block's own, named by the label (LayerScale: CaiT, ConvNeXt).",
    torch_class="Parameter",
)

PARAMETER_OPS: frozenset[str] = frozenset({"layer_scale"})
"""Ops whose state is a parameter of the enclosing scope rather than a module of their own:
the torch backend and the ``.py`` output register it on the block and read it there."""

DEFS: tuple[OpDef, ...] = (FLATTEN, DROPOUT, IDENTITY, SCALE, CHANNEL_AFFINE, LAYER_SCALE)
