"""Merges: variadic ops joining branches. They become plain tensor functions, not modules.

Each shape rule names the input (by index, in port order) that disagrees and both shapes,
so the elaborator can point at the offending branch.
"""

from __future__ import annotations

from collections.abc import Sequence

from archdsl.ops.base import OpDef, Shape, ShapeProblem, format_shape
from archdsl.ops.checks import Attrs


def _need_inputs(op: str, inputs: Sequence[Shape]) -> list[Shape]:
    if not inputs:
        raise ShapeProblem(f"{op} needs at least one input, got none")
    return [tuple(s) for s in inputs]


def _need_same_rank(op: str, shapes: list[Shape]) -> None:
    first = shapes[0]
    for i, shape in enumerate(shapes[1:], 1):
        if len(shape) != len(first):
            raise ShapeProblem(
                f"{op}: input {i} {format_shape(shape)} has rank {len(shape)} "
                f"but input 0 {format_shape(first)} has rank {len(first)}"
            )


def _add_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    shapes = _need_inputs("add", inputs)
    first = shapes[0]
    for i, shape in enumerate(shapes[1:], 1):
        if shape != first:
            raise ShapeProblem(
                f"add: input {i} has shape {format_shape(shape)} but input 0 has "
                f"{format_shape(first)}; add needs identical shapes"
            )
    return first


def _mul_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    """Broadcast per dimension: sizes equal or 1, e.g. a [C, 1, 1] gate times [C, H, W]."""
    shapes = _need_inputs("mul", inputs)
    _need_same_rank("mul", shapes)
    result = list(shapes[0])
    source = [0] * len(result)  # which input set each result dim (for the message)
    for i, shape in enumerate(shapes[1:], 1):
        for d, size in enumerate(shape):
            if size == result[d] or size == 1:
                continue
            if result[d] != 1:
                j = source[d]
                raise ShapeProblem(
                    f"mul: input {i} {format_shape(shape)} does not broadcast with input {j} "
                    f"{format_shape(shapes[j])}: dim {d} is {size} vs {result[d]} "
                    "(sizes must be equal or 1)"
                )
            result[d], source[d] = size, i
    return tuple(result)


def _concat_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    """Join along channels (features for flat inputs); all other dims must agree."""
    shapes = _need_inputs("concat", inputs)
    _need_same_rank("concat", shapes)
    first = shapes[0]
    for i, shape in enumerate(shapes[1:], 1):
        if shape[1:] != first[1:]:
            what = "spatial size" if len(first) == 3 else "trailing dims"
            raise ShapeProblem(
                f"concat: input {i} {format_shape(shape)} and input 0 {format_shape(first)} "
                f"differ in {what} ({'x'.join(map(str, shape[1:]))} vs "
                f"{'x'.join(map(str, first[1:]))}); only channels may differ"
            )
    return (sum(s[0] for s in shapes), *first[1:])


ADD = OpDef(
    name="add",
    params=(),
    infer=_add_infer,
    arity=-1,
    functional=True,
    doc="Element-wise sum of branches with identical shapes (residual connections).",
)

MUL = OpDef(
    name="mul",
    params=(),
    infer=_mul_infer,
    arity=-1,
    functional=True,
    doc="Element-wise product with per-dim broadcasting (gating, squeeze-excitation).",
)

CONCAT = OpDef(
    name="concat",
    params=(),
    infer=_concat_infer,
    arity=-1,
    functional=True,
    doc="Concatenate branches along channels (features for flat inputs); torch.cat(dim=1).",
)

DEFS: tuple[OpDef, ...] = (ADD, CONCAT, MUL)
