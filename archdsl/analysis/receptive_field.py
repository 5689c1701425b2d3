"""Receptive field and effective stride of every node, from the graph alone.

The theoretical receptive field of a node is the side of the input window (in input
pixels, padding included) that one of its output positions can see; its effective stride
(the "jump") is the distance in input pixels between two neighbouring output positions.
Per axis, through an op with kernel ``k``, stride ``s`` and dilation ``d``::

    k_eff   = d * (k - 1) + 1
    rf_out  = rf_in + (k_eff - 1) * jump_in
    jump_out = jump_in * s

A merge (``add``, ``concat``, ``mul``) takes the maximum over its inputs, and since nodes
are visited in topological order, every node reports the maximum over all paths from the
input: right for inception, residual and dense graphs alike.

Conventions:

- Element-wise ops, normalization and channel ops (relu, bn, lrn, dropout ...) keep the
  receptive field; so do ``padding`` choices (the theoretical field includes padding).
- A whole-map reduction -- global pooling, adaptive pooling to size 1, flatten -- over a
  map of more than one position makes the node **global**: each output sees the whole
  input. Everything computed from a global node is global too (a classifier after
  ``flatten``). Global nodes report no number (``"global"`` in summaries).
- Adaptive pooling to a size ``o`` other than 1 acts per axis like a pooling window of the
  largest bin (``ceil(H / o)`` or one more) with stride ``H / o`` (a fraction when ``o``
  does not divide ``H``; reported sizes are rounded up); ``o == H`` is the identity.
- A broadcast input of a merge -- a ``[C, 1, 1]`` gate multiplied into a ``[C, H, W]`` map,
  as in squeeze-and-excitation -- is left out of the maximum: it carries global context,
  but counting it would make every layer after the first SE block read "global" and hide
  the convolutional receptive field that the number is for.
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
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from archdsl.analysis.blocks import input_lists
from archdsl.ir.graph import Graph, OpNode, Shape

Number = int | Fraction


@dataclass(frozen=True)
class ReceptiveField:
    """Receptive field ``size`` and effective ``stride`` per axis (height, width), in input
    pixels; ``is_global`` when every output position sees the whole input (then ``size``
    and ``stride`` are those of the last local map, kept for reference)."""

    size: tuple[Number, Number]
    stride: tuple[Number, Number]
    is_global: bool = False

    def report(self) -> tuple[Any, Any]:
        """``(receptive_field, stride)`` as summaries show them: an int when both axes
        agree, else ``[h, w]``; ``("global", None)`` for a global node."""
        if self.is_global:
            return "global", None
        size = tuple(math.ceil(v) for v in self.size)
        stride = tuple(_plain(v) for v in self.stride)
        return _square(size), _square(stride)


def _plain(v: Number) -> int | float:
    if isinstance(v, Fraction):
        return v.numerator if v.denominator == 1 else round(float(v), 3)
    return v


def _square(pair: tuple[Any, ...]) -> Any:
    return pair[0] if pair[0] == pair[1] else list(pair)


_START = ReceptiveField((1, 1), (1, 1))

Rule = Callable[[OpNode, list[ReceptiveField], list[Shape]], ReceptiveField]


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _window(
    rf: ReceptiveField,
    kernel: tuple[int, int],
    stride: tuple[Number, Number],
    dilation: tuple[int, int] = (1, 1),
) -> ReceptiveField:
    size = tuple(rf.size[i] + dilation[i] * (kernel[i] - 1) * rf.stride[i] for i in range(2))
    jump = tuple(rf.stride[i] * stride[i] for i in range(2))
    return ReceptiveField(size, jump, rf.is_global)  # type: ignore[arg-type]


def _windowed(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField:
    """conv, maxpool, avgpool and any future op with ``kernel`` / ``stride`` attrs."""
    attrs = node.attrs
    kernel = _pair(attrs["kernel"])
    stride = kernel if attrs.get("stride") is None else _pair(attrs["stride"])
    dilation = _pair(attrs.get("dilation", 1))
    return _window(rfs[0], kernel, stride, dilation)


def _whole_map(rf: ReceptiveField, shape: Shape) -> ReceptiveField:
    """A reduction over the whole of a ``[C, H, W]`` input map."""
    if len(shape) != 3 or shape[1:] == (1, 1):
        return rf
    return ReceptiveField(rf.size, rf.stride, True)


def _global(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField:
    return _whole_map(rfs[0], shapes[0])


def _adaptive(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField:
    rf, (_, h, w) = rfs[0], shapes[0]
    out = node.shape[1:]
    if out == (1, 1):
        return _whole_map(rf, shapes[0])
    kernel, stride = [], []
    for size, o in zip((h, w), out):
        # torch's bins: [floor(i * size / o), ceil((i + 1) * size / o)) for i < o
        kernel.append(max(-(-(i + 1) * size // o) - (i * size // o) for i in range(o)))
        stride.append(Fraction(size, o) if size % o else size // o)
    return _window(rf, (kernel[0], kernel[1]), (stride[0], stride[1]))


def _resize(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField:
    """Unknown single-input ops: same spatial size keeps the field; a rank-3 -> rank-1 op
    is a whole-map reduction; a change of spatial size rescales the stride."""
    rf, shape = rfs[0], shapes[0]
    if len(shape) != 3:
        return rf
    if len(node.shape) != 3:
        return _whole_map(rf, shape)
    if node.shape[1:] == shape[1:]:
        return rf
    scaled = [rf.stride[i] * Fraction(shape[1 + i], node.shape[1 + i]) for i in range(2)]
    h, w = (j.numerator if j.denominator == 1 else j for j in scaled)
    return ReceptiveField(rf.size, (h, w), rf.is_global)


def _softmax(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField:
    # dim counts the batch as 0: dims 2 and 3 of a map normalize across positions
    if len(shapes[0]) == 3 and node.attrs.get("dim") in (2, 3):
        return _whole_map(rfs[0], shapes[0])
    return rfs[0]


def _merge(node: OpNode, rfs: list[ReceptiveField], shapes: list[Shape]) -> ReceptiveField:
    """The maximum over inputs, leaving out broadcast gates (see the module docstring)."""
    out = node.shape
    spatial = [
        rf
        for rf, shape in zip(rfs, shapes)
        if not (len(out) == 3 and shape[1:] == (1, 1) and out[1:] != (1, 1))
    ]
    pick = spatial or rfs
    return ReceptiveField(
        (max(rf.size[0] for rf in pick), max(rf.size[1] for rf in pick)),
        (max(rf.stride[0] for rf in pick), max(rf.stride[1] for rf in pick)),
        any(rf.is_global for rf in pick),
    )


RULES: Mapping[str, Rule] = {
    "conv": _windowed,
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
    with flat input). Linear in the size of the graph."""
    result: dict[str, ReceptiveField | None] = {}
    producers = input_lists(graph)
    for node in graph.nodes():
        inputs = producers[node.id]
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
