"""Deformable convolution in plain torch: bilinear sampling by index arithmetic, then a
matmul over the sampled columns (no compiled extension, no torchvision).

Dai et al., "Deformable Convolutional Networks", ICCV 2017; modulated (v2): Zhu et al.,
"Deformable ConvNets v2: More Deformable, Better Results", CVPR 2019.

Layouts are torchvision.ops.deform_conv2d's, so offsets and masks trained with it mean the
same here: ``offset`` is ``(N, 2 * offset_groups * kh * kw, Ho, Wo)`` holding, per offset
group and per kernel tap ``(i, j)`` in row-major order, the pair ``(dy, dx)``; ``mask`` is
``(N, offset_groups * kh * kw, Ho, Wo)``; offset group ``g`` moves the input channels
``[g * C / offset_groups, (g + 1) * C / offset_groups)``. Tap ``(i, j)`` of output
position ``(y, x)`` samples the input at

    (y * stride_h - pad_h + i * dilation_h + dy,  x * stride_w - pad_w + j * dilation_w + dx)

bilinearly, reading zero outside the input (so with zero offsets it reads exactly what a
zero-padded convolution reads).

>>> import torch
>>> m = DeformConv2d(4, 8, 3, padding=1)
>>> x = torch.randn(1, 4, 6, 6)
>>> torch.allclose(m(x), torch.nn.functional.conv2d(x, m.weight, m.bias, padding=1), atol=1e-6)
True

The ``.py`` output (:mod:`archdsl.backends.python_source`) copies the definitions named in
:data:`STANDALONE` verbatim into a network file that uses ``deform_conv``, so that file
needs torch alone; they must therefore use nothing but ``torch`` and ``nn`` (no other
import, no name defined outside :data:`STANDALONE`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

STANDALONE = ("IntPair", "_pair", "_bilinear_columns", "deform_conv2d", "DeformConv2d")
"""The top-level definitions, in file order, that a standalone ``.py`` network carries."""

IntPair = int | tuple[int, int]


def _pair(value: IntPair | list[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    a, b = value
    return int(a), int(b)


def _bilinear_columns(
    x: torch.Tensor, y: torch.Tensor, xs: torch.Tensor, offset_groups: int
) -> torch.Tensor:
    """Sample ``x`` (N, C, H, W) at rows ``y`` and columns ``xs`` (each
    (N, offset_groups, K, Ho, Wo)): returns (N, C, K, Ho * Wo), zero outside the input.

    Each sample is the sum over its four neighbouring pixels of pixel * weight, the weights
    ``(1 - ly) (1 - lx)``, ``(1 - ly) lx``, ``ly (1 - lx)``, ``ly lx`` for the fractional
    parts ``ly``, ``lx``; a neighbour outside the input contributes zero. Gradients reach
    ``x`` through the gather and the offsets through the fractional parts.
    """
    n, c, h, w = x.shape
    groups, k = y.shape[1], y.shape[2]
    flat = x.reshape(n, groups, c // groups, h * w)
    y0, x0 = y.floor(), xs.floor()
    ly, lx = y - y0, xs - x0
    out = None
    for dy, wy in ((0, 1 - ly), (1, ly)):
        for dx, wx in ((0, 1 - lx), (1, lx)):
            yc, xc = y0 + dy, x0 + dx
            inside = (yc >= 0) & (yc <= h - 1) & (xc >= 0) & (xc <= w - 1)
            # outside (or NaN) positions read pixel 0 and get weight 0
            index = torch.where(inside, yc * w + xc, 0).long().reshape(n, groups, 1, -1)
            values = flat.gather(3, index.expand(n, groups, c // groups, index.shape[-1]))
            weight = (wy * wx * inside).reshape(n, groups, 1, -1)
            out = values * weight if out is None else out + values * weight
    assert out is not None
    return out.reshape(n, c, k, -1)


def deform_conv2d(
    input: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: IntPair = 1,
    padding: IntPair = 0,
    dilation: IntPair = 1,
    groups: int = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deformable convolution of ``input`` (N, C, H, W) with ``weight``
    (out, C / groups, kh, kw); offset and mask layouts as torchvision.ops.deform_conv2d's.

    The output size (Ho, Wo) is the offsets' spatial size; ``padding`` is the padding
    before the first row and column (the top-left of the sampling grid). The number of
    offset groups is ``offset.shape[1] // (2 * kh * kw)``. ``mask`` (v2) scales each tap's
    sample before the weighted sum.
    """
    n, c, _, _ = input.shape
    out_c, c_per_group, kh, kw = weight.shape
    k = kh * kw
    ho, wo = offset.shape[-2:]
    offset_groups = offset.shape[1] // (2 * k)
    if offset_groups < 1 or offset.shape[1] != 2 * k * offset_groups or c % offset_groups:
        raise ValueError(
            f"deform_conv2d: offset has {offset.shape[1]} channels; expected 2 * {kh} * {kw}"
            f" * offset_groups with offset_groups dividing the {c} input channels"
        )
    if c != c_per_group * groups or out_c % groups:
        raise ValueError(
            f"deform_conv2d: weight {tuple(weight.shape)} does not fit {c} input channels"
            f" in {groups} groups"
        )
    if mask is not None and mask.shape[1] != k * offset_groups:
        raise ValueError(
            f"deform_conv2d: mask has {mask.shape[1]} channels; expected {k * offset_groups}"
        )
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)

    def grid(size: int, step: int, pad: int, taps: int, spacing: int) -> torch.Tensor:
        """Regular grid positions along one axis: (taps, size)."""
        positions = torch.arange(size, dtype=input.dtype, device=input.device) * step - pad
        tap = torch.arange(taps, dtype=input.dtype, device=input.device) * spacing
        return tap[:, None] + positions[None, :]

    rows = grid(ho, sh, ph, kh, dh)[:, None, :, None].expand(kh, kw, ho, 1).reshape(k, ho, 1)
    cols = grid(wo, sw, pw, kw, dw)[None, :, None, :].expand(kh, kw, 1, wo).reshape(k, 1, wo)
    moves = offset.reshape(n, offset_groups, k, 2, ho, wo)
    columns = _bilinear_columns(
        input, rows + moves[:, :, :, 0], cols + moves[:, :, :, 1], offset_groups
    )
    if mask is not None:
        per_group = columns.reshape(n, offset_groups, c // offset_groups, k, ho * wo)
        columns = per_group * mask.reshape(n, offset_groups, 1, k, ho * wo)
    columns = columns.reshape(n, groups, c_per_group * k, ho * wo)
    out = weight.reshape(groups, out_c // groups, c_per_group * k) @ columns
    out = out.reshape(n, out_c, ho, wo)
    if bias is not None:
        out = out + bias.reshape(1, out_c, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """A deformable convolution whose offsets (and v2 masks) a convolution ``offset``
    predicts from the same input.

    ``offset`` is an ``nn.Conv2d`` with the same kernel, stride, padding and dilation,
    ``groups=1`` and a bias, producing ``2 * offset_groups * kh * kw`` offset channels,
    then (``modulated``) ``offset_groups * kh * kw`` mask logits that go through a sigmoid.
    It is zero-initialised, so at init the module equals ``nn.Conv2d`` with its ``weight``
    and ``bias`` (modulated: half its weighted sum, masks being sigmoid(0) = 0.5, as in
    the v2 paper). ``weight`` and ``bias`` are initialised as ``nn.Conv2d``'s. State dict:
    ``weight``, ``bias`` (if ``bias``), ``offset.weight``, ``offset.bias``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: IntPair,
        stride: IntPair = 1,
        padding: IntPair | str = 0,
        dilation: IntPair = 1,
        groups: int = 1,
        offset_groups: int = 1,
        bias: bool = True,
        modulated: bool = False,
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(
                f"DeformConv2d: groups {groups} must divide in_channels ({in_channels}) and"
                f" out_channels ({out_channels})"
            )
        if in_channels % offset_groups:
            raise ValueError(
                f"DeformConv2d: offset_groups {offset_groups} must divide in_channels"
                f" ({in_channels})"
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride, self.dilation = _pair(stride), _pair(dilation)
        self.padding: tuple[int, int] | str = (
            padding if isinstance(padding, str) else _pair(padding)
        )
        self.groups, self.offset_groups, self.modulated = groups, offset_groups, modulated
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        taps = (3 if modulated else 2) * offset_groups * kh * kw
        self.offset = nn.Conv2d(
            in_channels, taps, self.kernel_size, self.stride, padding, self.dilation
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``weight`` and ``bias`` as ``nn.Conv2d`` initialises them (its reset_parameters
        reads only those two); ``offset`` zero."""
        nn.Conv2d.reset_parameters(self)  # type: ignore[arg-type]
        for tensor in self.offset.parameters():  # its weight and bias
            nn.init.zeros_(tensor)

    def _top_left_padding(self) -> tuple[int, int]:
        """The padding before the first row and column (torch's "same" puts the odd pixel
        of an even total after the last)."""
        if self.padding == "valid":
            return 0, 0
        if self.padding == "same":
            (kh, kw), (dh, dw) = self.kernel_size, self.dilation
            return dh * (kh - 1) // 2, dw * (kw - 1) // 2
        return self.padding  # type: ignore[return-value]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        predicted = self.offset(x)
        kh, kw = self.kernel_size
        split = 2 * self.offset_groups * kh * kw
        mask = predicted[:, split:].sigmoid() if self.modulated else None
        return deform_conv2d(
            x,
            predicted[:, :split],
            self.weight,
            self.bias,
            self.stride,
            self._top_left_padding(),
            self.dilation,
            self.groups,
            mask,
        )

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}"
        )
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.offset_groups != 1:
            s += f", offset_groups={self.offset_groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.modulated:
            s += ", modulated=True"
        return s


def build_deform_conv(attrs: Mapping[str, Any], shapes: list[tuple[int, ...]]) -> nn.Module:
    """The builder of the ``deform_conv`` op (normalized attrs, per-sample input shapes)."""
    return DeformConv2d(
        shapes[0][0],
        attrs["out"],
        attrs["kernel"],
        stride=attrs["stride"],
        padding=attrs["padding"],
        dilation=attrs["dilation"],
        groups=attrs["groups"],
        offset_groups=attrs["offset_groups"],
        bias=attrs["bias"],
        modulated=attrs["modulated"],
    )
