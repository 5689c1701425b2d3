"""Receptive field and effective stride of every node, from the graph alone.

The theoretical receptive field of a node is the side of the input window (in input
pixels, padding included) that one of its output positions can see, the largest over
positions; its effective stride (the "jump") is the distance in input pixels between two
neighbouring output positions, on average. For a chain of strided windows this is the
classic recurrence, per axis, through an op with kernel ``k``, stride ``s`` and dilation
``d``::

    k_eff   = d * (k - 1) + 1
    rf_out  = rf_in + (k_eff - 1) * jump_in
    jump_out = jump_in * s

It stops being exact once outputs are no longer evenly spaced over the input: after an
upsampling (two outputs read the same input position, or a bilinear output reads two),
a transposed convolution (an output reads ``ceil(k_eff / s)`` inputs or fewer, depending on
its position) or an adaptive pooling whose bins differ in size. So each axis is tracked as
a function of the output position ``o``, the first and last input pixel it sees
(:class:`Span`); every op here maps positions to input positions periodically (``a``
outputs further on read ``b`` inputs further on), so the function is a table of one period
plus a shift, and the field is exact: the largest ``last - first + 1`` over positions, as
gradients show (tests/test_analysis.py checks that). Networks of strided windows alone keep
a period of one position, which is the recurrence above.

Conventions:

- Element-wise ops, normalization and channel ops (relu, bn, lrn, dropout ...) keep the
  receptive field; the theoretical field includes padding (positions past the map's edge
  count as pixels, as if the map went on).
- A whole-map reduction -- global pooling, adaptive pooling to size 1, flatten -- over a
  map of more than one position makes the node **global**: each output sees the whole
  input. Everything computed from a global node is global too (a classifier after
  ``flatten``). Global nodes report no number (``"global"`` in summaries).
- A merge (``add``, ``concat``, ``mul``) sees what each of its inputs sees at the same
  position: the union of their windows. A broadcast input -- a ``[C, 1, 1]`` gate
  multiplied into a ``[C, H, W]`` map, as in squeeze-and-excitation -- is left out: it
  carries global context, but counting it would make every layer after the first SE block
  read "global" and hide the convolutional receptive field that the number is for.
- Where inputs of a merge are spaced differently (possible only with sizes that do not
  divide, such as an adaptive pooling beside a strided convolution) or a period would pass
  :data:`MAX_PERIOD` positions (fewer in a graph of thousands of nodes: see :data:`WORK`),
  the field is not computed: ``None``, and so for every node after it, rather than a
  number that may be wrong.
- A network with flat input (``input [F]``) has no spatial receptive field: ``None``.

>>> import archdsl
>>> g = archdsl.check("network n { input [3, 32, 32]; conv(8, 3) -> maxpool(2) -> conv(8, 3) }")
>>> rf = receptive_fields(g)
>>> [(rf[n.id].size, rf[n.id].stride) for n in g.nodes()]
[((1, 1), (1, 1)), ((3, 3), (1, 1)), ((4, 4), (2, 2)), ((8, 8), (2, 2))]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archdsl.analysis.blocks import input_lists
from archdsl.ir.graph import Graph, OpNode, Shape
from archdsl.ops.base import reads_size

Number = int | Fraction

MAX_PERIOD = 64
"""The longest period of positions tracked exactly (U-Net's four upsamplings: 16; each
stride that follows divides it again)."""

WORK = 1 << 21
"""A bound on the work of a graph's fields: a period of ``P`` positions costs a node up to
``P * P`` lookups (a position whose first taps see nothing, between a transposed
convolution's outputs, looks up to a period further), so a graph of ``n`` nodes tracks
periods up to ``sqrt(WORK / n)``: 64 up to 512 nodes, 16 (U-Net's) up to 8,192, and the
analysis stays within a few seconds at the node limit however the network upsamples."""

_LIMIT: ContextVar[int] = ContextVar("archdsl_period_limit", default=MAX_PERIOD)


@dataclass(frozen=True)
class Span:
    """One axis of a field as a function of the output position ``o``: the first and last
    input pixel it sees are ``lo[o % P] + (o // P) * shift`` and likewise ``hi`` (``P =
    len(lo)``); None where a position sees no input (between the taps of a transposed
    convolution with a stride above its kernel)."""

    lo: tuple[int | None, ...]
    hi: tuple[int | None, ...]
    shift: int

    def at(self, i: int) -> tuple[int, int] | None:
        q, r = divmod(i, len(self.lo))
        lo, hi = self.lo[r], self.hi[r]
        if lo is None or hi is None:
            return None
        return lo + q * self.shift, hi + q * self.shift

    @property
    def size(self) -> int:
        return max(
            (h - lo + 1 for lo, h in zip(self.lo, self.hi) if lo is not None and h is not None),
            default=0,
        )

    @property
    def jump(self) -> Number:
        return _exact(Fraction(self.shift, len(self.lo)))


_ORIGIN = Span((0,), (0,), 1)

Taps = Callable[[int], range]


def _through(span: Span, taps: Taps, a: int, b: int) -> Span | None:
    """The span of an op whose output position ``o`` reads input positions ``taps(o)``,
    with ``taps(o + a)`` those of ``taps(o)`` moved ``b`` on; None past the period limit.

    Windows only move forward with the position, so a position sees from the first tap
    that sees anything to the last: each is found within a period's worth of taps from
    its end, however long the kernel."""
    period = len(span.lo)
    rounds = period // math.gcd(period, b)  # input shifts of b until a whole input period
    new_period = a * rounds
    if new_period > _LIMIT.get():
        return None
    lo: list[int | None] = []
    hi: list[int | None] = []
    for o in range(new_period):
        read = taps(o)
        first = next((w for w in map(span.at, read[: period + 1]) if w is not None), None)
        last = next((w for w in map(span.at, read[::-1][: period + 1]) if w is not None), None)
        lo.append(first[0] if first is not None else None)
        hi.append(last[1] if last is not None else None)
    return Span(tuple(lo), tuple(hi), rounds * b // period * span.shift)


def _union(spans: list[Span]) -> Span | None:
    """What a position sees through every input of a merge; None when they are spaced
    differently or the common period is too long."""
    if len({s.jump for s in spans}) != 1:
        return None
    period = math.lcm(*(len(s.lo) for s in spans))
    if period > _LIMIT.get():
        return None
    lo: list[int | None] = []
    hi: list[int | None] = []
    for o in range(period):
        seen = [w for w in (s.at(o) for s in spans) if w is not None]
        lo.append(min(w[0] for w in seen) if seen else None)
        hi.append(max(w[1] for w in seen) if seen else None)
    jump = spans[0].jump
    return Span(tuple(lo), tuple(hi), int(jump * period))


def _exact(v: Fraction) -> Number:
    return v.numerator if v.denominator == 1 else v


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field ``size`` and effective ``stride`` per axis (height, width), in input
    pixels; ``is_global`` when every output position sees the whole input (then ``size``
    and ``stride`` are those of the last local map, kept for reference). ``spans`` are the
    per-position windows the numbers come from."""

    spans: tuple[Span, Span]
    is_global: bool = False

    @property
    def size(self) -> tuple[int, int]:
        return self.spans[0].size, self.spans[1].size

    @property
    def stride(self) -> tuple[Number, Number]:
        return self.spans[0].jump, self.spans[1].jump

    def report(self) -> tuple[Any, Any]:
        """``(receptive_field, stride)`` as summaries show them: an int when both axes
        agree, else ``[h, w]``; ``("global", None)`` for a global node."""
        if self.is_global:
            return "global", None
        return _square(self.size), _square(tuple(_plain(v) for v in self.stride))


def _plain(v: Number) -> int | float:
    if isinstance(v, Fraction):
        return round(float(v), 3)
    return v


def _square(pair: tuple[Any, ...]) -> Any:
    return pair[0] if pair[0] == pair[1] else list(pair)


_START = ReceptiveField((_ORIGIN, _ORIGIN))

Rule = Callable[[OpNode, list[ReceptiveField], list[Shape]], ReceptiveField | None]
AxisRule = Callable[[Span, int, int, int], Span | None]  # span, axis, input size, output size


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _per_axis(rule: AxisRule) -> Rule:
    """A rule applied to each axis of the first input's field; None (not computed) where an
    axis would need a period past the limit."""

    def apply(
        node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]
    ) -> ReceptiveField | None:
        rf, shape = rfs[0], shapes[0]
        if rf.is_global:  # every position sees the whole input, however it is resampled
            return rf
        spans = [
            rule(rf.spans[axis], axis, shape[1 + axis], node.shape[1 + axis]) for axis in range(2)
        ]
        if spans[0] is None or spans[1] is None:
            return None
        return ReceptiveField((spans[0], spans[1]), rf.is_global)

    return apply


def _windowed(
    node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]
) -> ReceptiveField | None:
    """conv, maxpool, avgpool and any future op with ``kernel`` / ``stride`` attrs: output
    ``o`` reads inputs ``o * s - p + t * d`` for taps ``t < k``."""
    attrs = node.attrs
    kernel = _pair(attrs["kernel"])
    stride = kernel if attrs.get("stride") is None else _pair(attrs["stride"])
    dilation = _pair(attrs.get("dilation", 1))
    padding = _padding(attrs.get("padding", 0), kernel, dilation)

    def axis_rule(span: Span, axis: int, size_in: int, size_out: int) -> Span | None:
        k, s, d, p = kernel[axis], stride[axis], dilation[axis], padding[axis]
        return _through(span, lambda o: range(o * s - p, o * s - p + (k - 1) * d + 1, d), 1, s)

    return _per_axis(axis_rule)(node, rfs, shapes)


def _padding(value: Any, kernel: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    """Padding before the first position; ``"same"`` pads ``d * (k - 1) // 2`` there."""
    if value == "same":
        return dilation[0] * (kernel[0] - 1) // 2, dilation[1] * (kernel[1] - 1) // 2
    if value == "valid" or value is None:
        return 0, 0
    return _pair(value)


def _transposed(
    node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]
) -> ReceptiveField | None:
    """conv_transpose: output ``o`` reads the inputs ``i`` with ``i * s + t * d - p == o``
    for taps ``t < k``: up to ``ceil(k_eff / s)`` of them, fewer at some positions."""
    attrs = node.attrs
    kernel, stride, dilation, padding = (
        _pair(attrs[k]) for k in ("kernel", "stride", "dilation", "padding")
    )

    def axis_rule(span: Span, axis: int, size_in: int, size_out: int) -> Span | None:
        k, s, d, p = kernel[axis], stride[axis], dilation[axis], padding[axis]
        g = math.gcd(d, s)
        step = s // g  # between the taps t that land on an input: t * d = o + p (mod s)
        inverse = pow(d // g, -1, step)

        def taps(o: int) -> range:
            if (o + p) % g:
                return range(0)
            first = (o + p) // g * inverse % step  # the smallest such tap
            if first >= k:
                return range(0)
            last = first + (k - 1 - first) // step * step
            # tap t reads input (o + p - t * d) / s: the last tap the lowest input
            return range((o + p - last * d) // s, (o + p - first * d) // s + 1, d // g)

        return _through(span, taps, s, 1)

    return _per_axis(axis_rule)(node, rfs, shapes)


_TAPS = {"bilinear": 2, "bicubic": 4}  # input positions an interpolated output reads


def _resample(
    node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]
) -> ReceptiveField | None:
    """upsample and resize, from input size ``H`` to output size ``O`` on each axis:
    nearest copies input ``floor(o * H / O)``; bilinear reads the two inputs around the
    output's centre mapped back, ``(o + 1/2) * H / O - 1/2`` (``o * (H - 1) / (O - 1)`` with
    ``align_corners``), and bicubic four, one alone where that lands on an input. A
    resize's second input gives only its size: the field is its first input's."""
    mode, corners = node.attrs["mode"], node.attrs["align_corners"]
    reach = _TAPS.get(mode, 0)

    def axis_rule(span: Span, axis: int, size_in: int, size_out: int) -> Span | None:
        if not reach:
            return _nearest(span, axis, size_in, size_out)
        if corners:
            a, b = size_out - 1, size_in - 1

            def source(o: int) -> Fraction:
                return Fraction(o * (size_in - 1), size_out - 1) if size_out > 1 else Fraction(0)

        else:
            a, b = size_out, size_in

            def source(o: int) -> Fraction:
                return Fraction((2 * o + 1) * size_in - size_out, 2 * size_out)

        g = math.gcd(a, b) or 1
        a, b = max(a // g, 1), b // g

        def taps(o: int) -> range:
            src = source(o)
            first = math.floor(src)
            if src == first:
                return range(first, first + 1)
            return range(first - reach // 2 + 1, first + reach // 2 + 1)

        return _through(span, taps, a, b)

    return _per_axis(axis_rule)(node, rfs[:1], shapes[:1])


def _whole_map(rf: ReceptiveField, shape: Shape) -> ReceptiveField:
    """A reduction over the whole of a ``[C, H, W]`` input map."""
    if len(shape) != 3 or shape[1:] == (1, 1):
        return rf
    return ReceptiveField(rf.spans, True)


def _global(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField:
    return _whole_map(rfs[0], shapes[0])


def _bins(span: Span, axis: int, size_in: int, size_out: int) -> Span | None:
    """torch's adaptive bins: output ``o`` reads ``[floor(o * H / O), ceil((o + 1) * H / O))``."""
    g = math.gcd(size_in, size_out)
    return _through(
        span,
        lambda o: range(o * size_in // size_out, -(-(o + 1) * size_in // size_out)),
        size_out // g,
        size_in // g,
    )


def _adaptive(
    node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]
) -> ReceptiveField | None:
    if node.shape[1:] == (1, 1):
        return _whole_map(rfs[0], shapes[0])
    return _per_axis(_bins)(node, rfs, shapes)


def _nearest(span: Span, axis: int, size_in: int, size_out: int) -> Span | None:
    """An op of unknown kind that resizes: as nearest resampling, ``o * H // O``."""
    g = math.gcd(size_in, size_out)
    return _through(
        span,
        lambda o: range(o * size_in // size_out, o * size_in // size_out + 1),
        size_out // g,
        size_in // g,
    )


def _resize(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField | None:
    """Unknown single-input ops: same spatial size keeps the field; a rank-3 -> rank-1 op
    is a whole-map reduction; a change of spatial size resamples as nearest neighbour."""
    rf, shape = rfs[0], shapes[0]
    if len(shape) != 3:
        return rf
    if len(node.shape) != 3:
        return _whole_map(rf, shape)
    if node.shape[1:] == shape[1:]:
        return rf
    return _per_axis(_nearest)(node, rfs, shapes)


def _softmax(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField:
    # dim counts the batch as 0: dims 2 and 3 of a map normalize across positions
    if len(shapes[0]) == 3 and node.attrs.get("dim") in (2, 3):
        return _whole_map(rfs[0], shapes[0])
    return rfs[0]


def _merge(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField | None:
    """The union over inputs, leaving out broadcast gates (see the module docstring)."""
    out = node.shape
    spatial = [
        rf
        for rf, shape in zip(rfs, shapes)
        if not (len(out) == 3 and shape[1:] == (1, 1) and out[1:] != (1, 1))
    ]
    pick = spatial or rfs
    spans = [_union([rf.spans[axis] for rf in pick]) for axis in range(2)]
    if spans[0] is None or spans[1] is None:
        return None
    return ReceptiveField((spans[0], spans[1]), any(rf.is_global for rf in pick))


RULES: Mapping[str, Rule] = {
    "conv": _windowed,
    "conv_transpose": _transposed,
    "upsample": _resample,
    "resize": _resample,
    "maxpool": _windowed,
    "avgpool": _windowed,
    "adaptive_avgpool": _adaptive,
    "adaptive_maxpool": _adaptive,
    "global_avgpool": _global,
    "global_maxpool": _global,
    "flatten": _global,
    "softmax": _softmax,
    "add": _merge,
    "concat": _merge,
    "mul": _merge,
}
"""Ops with a rule of their own; any other op keeps its input's field, unless it has a
``kernel`` attribute (a window) or changes the spatial size (see ``_resize``)."""


def _rule(node: OpNode) -> Rule:
    rule = RULES.get(node.op)
    if rule is not None:
        return rule
    if "kernel" in node.attrs:
        return _windowed
    return _resize


def receptive_fields(graph: Graph) -> dict[str, ReceptiveField | None]:
    """The receptive field of every node, by node id (``None`` throughout for a network
    with flat input, and from a node whose field is not computed on). Linear in the size
    of the graph."""
    token = _LIMIT.set(max(1, min(MAX_PERIOD, math.isqrt(WORK // max(len(graph), 1)))))
    try:
        return _fields(graph)
    finally:
        _LIMIT.reset(token)


def _fields(graph: Graph) -> dict[str, ReceptiveField | None]:
    result: dict[str, ReceptiveField | None] = {}
    producers = input_lists(graph)
    for node in graph.nodes():
        inputs = producers[node.id]
        if reads_size(node.attrs):  # the value it takes a size from: not what it sees
            inputs = inputs[:1]
        if not inputs:
            result[node.id] = _START if len(node.shape) == 3 else None
            continue
        rfs = [result[i] for i in inputs]
        if any(rf is None for rf in rfs):
            result[node.id] = None
            continue
        shapes = [graph.node(i).shape for i in inputs]
        result[node.id] = _rule(node)(node, rfs, shapes)  # type: ignore[arg-type]
    return result
