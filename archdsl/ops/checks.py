"""Shared pieces of the shape rules: input-count and rank checks, and window arithmetic.

The window arithmetic is exactly torch's (``aten/src/ATen/native/Pool.h`` and the conv
shape check), so that a spec that passes ``archdsl check`` never fails inside torch, and
one torch would reject is rejected here first, with the arithmetic that went wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from archdsl.ops.base import Shape, ShapeProblem, format_shape

Attrs = Mapping[str, Any]
InferFn = Callable[[Attrs, list[Shape]], Shape]

AXES = ("height", "width")

_RANK_NAMES = {1: "flat features [F]", 3: "a feature map [C, H, W]"}


def single_input(op: str, inputs: Sequence[Shape]) -> Shape:
    """The one input of a unary op; a defensive check, the elaborator enforces arity."""
    if len(inputs) != 1:
        raise ShapeProblem(f"{op} takes exactly one input, got {len(inputs)}")
    return tuple(inputs[0])


def need_rank(op: str, shape: Shape, ranks: tuple[int, ...], hint: str = "") -> Shape:
    """Check that ``shape`` has one of ``ranks``; the message names the op and both shapes."""
    if len(shape) not in ranks:
        wanted = " or ".join(_RANK_NAMES.get(r, f"a rank-{r} tensor") for r in ranks)
        raise ShapeProblem(f"{op} expects {wanted}, got {format_shape(shape)}{hint}")
    return shape


def feature_map(op: str, inputs: Sequence[Shape]) -> tuple[int, int, int]:
    """The single ``(C, H, W)`` input of a spatial op."""
    shape = need_rank(op, single_input(op, inputs), (3,))
    c, h, w = shape
    return c, h, w


def as_pair(value: Any) -> tuple[Any, Any]:
    """``3 -> (3, 3)``, ``[3, 5] -> (3, 5)``; lets the rules accept un-normalized attrs too."""
    if isinstance(value, (list, tuple)):
        a, b = value
        return a, b
    return value, value


def _kernel_words(kernel: int, dilation: int) -> str:
    if dilation == 1:
        return f"kernel {kernel}"
    return f"kernel {kernel} with dilation {dilation} (spans {dilation * (kernel - 1) + 1})"


def conv_size(
    op: str, axis: str, size: int, kernel: int, stride: int, padding: int, dilation: int
) -> int:
    """Output length of a convolution along one axis: floor division, as torch does."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out <= 0:
        arithmetic = f"({size} + 2*{padding} - {dilation}*({kernel}-1) - 1) // {stride} + 1 = {out}"
        raise ShapeProblem(
            f"{op}: output {axis} {out} <= 0: input too small for "
            f"{_kernel_words(kernel, dilation)}",
            arithmetic,
        )
    return out


def transposed_conv_size(
    op: str,
    axis: str,
    size: int,
    kernel: int,
    stride: int,
    padding: int,
    output_padding: int,
    dilation: int,
) -> int:
    """Output length of a transposed convolution along one axis, torch's rule: the length
    of the convolution it is the gradient of, ``output_padding`` choosing among the lengths
    a strided convolution maps to the same input length (so it must be below the stride or
    the dilation)."""
    if output_padding >= stride and output_padding >= dilation:
        raise ShapeProblem(
            f"{op}: {axis} output_padding {output_padding} must be smaller than the stride "
            f"({stride}) or the dilation ({dilation})"
        )
    out = (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1
    if out <= 0:
        arithmetic = (
            f"({size}-1)*{stride} - 2*{padding} + {dilation}*({kernel}-1) + {output_padding}"
            f" + 1 = {out}"
        )
        raise ShapeProblem(
            f"{op}: output {axis} {out} <= 0: padding {padding} too large", arithmetic
        )
    return out


def check_pool_padding(op: str, axis: str, kernel: int, padding: int) -> None:
    """torch rejects pooling padding above half the kernel (``kernel // 2``; not dilated)."""
    if padding > kernel // 2:
        raise ShapeProblem(
            f"{op}: {axis} padding {padding} is more than half the kernel "
            f"({kernel} // 2 = {kernel // 2})",
            f"{padding} > {kernel} // 2 = {kernel // 2}",
        )


def pool_size(
    op: str,
    axis: str,
    size: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    ceil_mode: bool,
) -> int:
    """Output length of a pooling window along one axis, torch's rule exactly.

    With ``ceil_mode`` the division rounds up, but a last window that would start in the
    right padding (at or past ``size + padding``) is dropped, so every window touches input.
    """
    check_pool_padding(op, axis, kernel, padding)
    extra = stride - 1 if ceil_mode else 0
    out = (size + 2 * padding - dilation * (kernel - 1) - 1 + extra) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1
    if out <= 0:
        ceil_term = f" + ({stride}-1)" if ceil_mode else ""
        arithmetic = (
            f"({size} + 2*{padding} - {dilation}*({kernel}-1) - 1{ceil_term}) // {stride} + 1"
            f" = {out}"
        )
        raise ShapeProblem(
            f"{op}: output {axis} {out} <= 0: input too small for "
            f"{_kernel_words(kernel, dilation)}",
            arithmetic,
        )
    return out
