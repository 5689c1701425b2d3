"""Resampling a map: ``upsample`` by a whole factor (torch.nn.Upsample), the fixed
counterpart of ``conv_transpose``, and ``resize`` to a size, that of another value of the
network where the size is a reference (``F.interpolate(x, size=other.shape[-2:])``, as
torchvision's FPN, DeepLabV3 and LR-ASPP bring one map to another's size). Neither costs
MACs in the FlopCounterMode convention (interpolation is not a multiply-accumulate of
weights)."""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape, ShapeProblem, SizeOf
from archdsl.ops.checks import Attrs, as_pair, feature_map, need_rank

MODES = ("nearest", "nearest-exact", "bilinear", "bicubic")
INTERPOLATING = frozenset({"bilinear", "bicubic"})
"""The modes that read several input positions, the only ones where ``align_corners``
means something (torch refuses it with the others)."""


def _check_corners(op: str, attrs: Attrs) -> None:
    if attrs["align_corners"] and attrs["mode"] not in INTERPOLATING:
        raise ShapeProblem(
            f'{op}: align_corners=true needs mode "bilinear" or "bicubic", not "{attrs["mode"]}"'
        )


def _upsample_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    c, h, w = feature_map("upsample", inputs)
    _check_corners("upsample", attrs)
    sh, sw = as_pair(attrs["scale"])
    return (c, h * sh, w * sw)


def _resize_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    """``[C, H, W]`` to ``[C, h, w]``: the size given, or that of the value a reference
    names (the op's second input; only its height and width are read)."""
    size = attrs["size"]
    if size.__class__ is SizeOf:
        if len(inputs) != 2:
            raise ShapeProblem(f"resize takes two inputs with size={size}, got {len(inputs)}")
        other = need_rank("resize", tuple(inputs[1]), (3,), f" as its size ({size})")
        c, _, _ = feature_map("resize", inputs[:1])
        _check_corners("resize", attrs)
        return (c, other[1], other[2])
    c, _, _ = feature_map("resize", inputs)
    _check_corners("resize", attrs)
    h, w = as_pair(size)
    return (c, h, w)


# how both fill new positions: the mode and its corner alignment
RESAMPLING = (
    Param("mode", "str", "nearest", doc="how new positions are filled", choices=MODES),
    Param(
        "align_corners",
        "bool",
        False,
        doc="bilinear and bicubic: corner pixels' centres stay aligned (torch's option)",
    ),
)

UPSAMPLE = OpDef(
    name="upsample",
    params=(
        Param(
            "scale", "pair", doc="a whole factor: s or [sh, sw]; the output is [C, sh * H, sw * W]"
        ),
        *RESAMPLING,
    ),
    infer=_upsample_infer,
    doc="Enlarge a [C, H, W] map by a whole factor per axis, by nearest neighbour or "
    "interpolation (torch.nn.Upsample); no parameters.",
    torch_class="Upsample",
)

RESIZE = OpDef(
    name="resize",
    params=(
        Param(
            "size",
            "size_of",
            doc="the output's height and width: s, [h, w], or a reference to a value of "
            "the network (@label, @in) whose size it takes when the network runs",
        ),
        *RESAMPLING,
    ),
    infer=_resize_infer,
    functional=True,
    doc="Resample a [C, H, W] map to a size, by nearest neighbour or interpolation "
    "(F.interpolate(x, size=...)); with a reference, to the size of that value when the "
    "network runs (other.shape[-2:]), so inputs of any size are brought to it. A function "
    "in the forward: no module, no number in a sequence.",
)

DEFS: tuple[OpDef, ...] = (UPSAMPLE, RESIZE)
