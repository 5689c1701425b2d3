"""Upsampling by a whole factor: ``upsample`` (torch.nn.Upsample), the fixed counterpart of
``conv_transpose``. Costs no MACs in the FlopCounterMode convention (interpolation is not a
multiply-accumulate of weights)."""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape, ShapeProblem
from archdsl.ops.checks import Attrs, as_pair, feature_map

MODES = ("nearest", "nearest-exact", "bilinear", "bicubic")
INTERPOLATING = frozenset({"bilinear", "bicubic"})
"""The modes that read several input positions, the only ones where ``align_corners``
means something (torch refuses it with the others)."""


def _upsample_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    c, h, w = feature_map("upsample", inputs)
    if attrs["align_corners"] and attrs["mode"] not in INTERPOLATING:
        raise ShapeProblem(
            f'upsample: align_corners=true needs mode "bilinear" or "bicubic", '
            f'not "{attrs["mode"]}"'
        )
    sh, sw = as_pair(attrs["scale"])
    return (c, h * sh, w * sw)


UPSAMPLE = OpDef(
    name="upsample",
    params=(
        Param(
            "scale", "pair", doc="a whole factor: s or [sh, sw]; the output is [C, sh * H, sw * W]"
        ),
        Param("mode", "str", "nearest", doc="how new positions are filled", choices=MODES),
        Param(
            "align_corners",
            "bool",
            False,
            doc="bilinear and bicubic: corner pixels' centres stay aligned (torch's option)",
        ),
    ),
    infer=_upsample_infer,
    doc="Enlarge a [C, H, W] map by a whole factor per axis, by nearest neighbour or "
    "interpolation (torch.nn.Upsample); no parameters.",
    torch_class="Upsample",
)

DEFS: tuple[OpDef, ...] = (UPSAMPLE,)
