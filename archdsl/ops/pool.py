"""Pooling ops over a [C, H, W] feature map: windowed, adaptive and global.

Windowed pooling follows torch's output-size rule exactly (see ``checks.pool_size``),
including ``ceil_mode`` dropping a last window that would start in the right padding and
the rule that padding may be at most half the kernel. Pooling costs no MACs in the
FlopCounterMode convention the reference uses.
"""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape
from archdsl.ops.checks import AXES, Attrs, InferFn, as_pair, feature_map, pool_size


def _window_infer(op: str, attrs: Attrs, inputs: list[Shape]) -> Shape:
    c, h, w = feature_map(op, inputs)
    kernel = as_pair(attrs["kernel"])
    stride = kernel if attrs["stride"] is None else as_pair(attrs["stride"])
    padding = as_pair(attrs["padding"])
    dilation = as_pair(attrs.get("dilation", 1))
    hw = tuple(
        pool_size(
            op,
            AXES[i],
            (h, w)[i],
            kernel[i],
            stride[i],
            padding[i],
            dilation[i],
            attrs["ceil_mode"],
        )
        for i in range(2)
    )
    return (c, *hw)


def _maxpool_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return _window_infer("maxpool", attrs, inputs)


def _avgpool_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return _window_infer("avgpool", attrs, inputs)


_KERNEL = Param("kernel", "pair", doc="window size: k or [kh, kw]")
_STRIDE = Param(
    "stride", "pair", None, doc="window step; none means the kernel size", nullable=True
)
_PADDING = Param(
    "padding", "nonneg_pair", 0, doc="implicit padding per side; at most half the kernel"
)
_CEIL = Param("ceil_mode", "bool", False, doc="round the output size up instead of down")

MAXPOOL = OpDef(
    name="maxpool",
    params=(
        _KERNEL,
        _STRIDE,
        _PADDING,
        Param("dilation", "pair", 1, doc="spacing between window taps"),
        _CEIL,
    ),
    infer=_maxpool_infer,
    doc="Max over sliding windows (torch.nn.MaxPool2d).",
    torch_class="MaxPool2d",
)

AVGPOOL = OpDef(
    name="avgpool",
    params=(
        _KERNEL,
        _STRIDE,
        _PADDING,
        _CEIL,
        Param(
            "count_include_pad",
            "bool",
            True,
            doc="count padded zeros in the average's divisor",
        ),
    ),
    infer=_avgpool_infer,
    doc="Average over sliding windows (torch.nn.AvgPool2d).",
    torch_class="AvgPool2d",
)


def _adaptive_infer(op: str) -> InferFn:
    def infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
        c, _, _ = feature_map(op, inputs)
        oh, ow = as_pair(attrs["size"])
        return (c, oh, ow)

    return infer


def _adaptive(name: str, torch_class: str, what: str) -> OpDef:
    return OpDef(
        name=name,
        params=(Param("size", "size", doc="output size: s or [sh, sw]"),),
        infer=_adaptive_infer(name),
        doc=f"{what} pooling to a fixed output size (torch.nn.{torch_class}).",
        torch_class=torch_class,
    )


def _global_infer(op: str) -> InferFn:
    def infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
        c, _, _ = feature_map(op, inputs)
        return (c,) if attrs["flatten"] else (c, 1, 1)

    return infer


def _global(name: str, what: str) -> OpDef:
    return OpDef(
        name=name,
        params=(
            Param("flatten", "bool", False, doc="return flat features [C] instead of [C, 1, 1]"),
        ),
        infer=_global_infer(name),
        doc=f"{what} over the whole map per channel: [C, 1, 1], or [C] with flatten.",
        torch_class="GlobalPool2d",
    )


DEFS: tuple[OpDef, ...] = (
    MAXPOOL,
    AVGPOOL,
    _adaptive("adaptive_avgpool", "AdaptiveAvgPool2d", "Average"),
    _adaptive("adaptive_maxpool", "AdaptiveMaxPool2d", "Max"),
    _global("global_avgpool", "Average"),
    _global("global_maxpool", "Maximum"),
)
