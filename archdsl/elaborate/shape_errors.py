"""Shape errors: what went wrong at which layer, where each input came from, and, for the
common mistakes, how to fix it (the projection a residual needs, the padding that keeps an
inception branch's size, the ``flatten=true`` that flattened a map).

>>> import archdsl
>>> try:
...     archdsl.check("network t { input [3, 8, 8]; conv(4, 3) -> add { (); conv(8, 1) } }")
... except archdsl.ArchShapeError as e:
...     print(e.notes[-1])
input 0 is the add's input passed on unchanged ('()', or an 'if' that built nothing); project it to [8, 6, 6] as ResNet's downsample does: 'seq { conv(8, 1, bias=false); bn }'
"""

from __future__ import annotations

from archdsl.errors import ArchLimitError, ArchShapeError, Span
from archdsl.frontend import ast
from archdsl.ir import Graph, OpNode
from archdsl.ir.graph import describe
from archdsl.ops.base import ShapeProblem


def shape_error(
    e: ShapeProblem, op: str, path: str | None, span: Span, producers: list[OpNode]
) -> ArchShapeError:
    """``e``, raised by ``op``'s shape rule, as an error at ``span`` with a note for each
    input saying which layer made it."""
    message = e.message.removeprefix(f"{op}: ").removeprefix(f"{op} ")
    err = ArchShapeError(f"{describe(op, path)}: {message}", span)
    if e.arithmetic:
        err.notes.append(e.arithmetic)
    for i, p in enumerate(producers):
        who = "the network input" if p.op == "input" else describe(p.op, p.path)
        port = f"input {i}" if len(producers) > 1 else "its input"
        err.notes.append(f"{port} {list(p.shape)} comes from {who} at {p.span}")
    return err


def op_shape_error(
    e: ShapeProblem, op: str, path: str | None, span: Span, producer: OpNode, *sized: OpNode
) -> ArchShapeError:
    """:func:`shape_error` for a layer (``sized``: the value a reference gives its size, a
    second input); after a global pooling with ``flatten=true`` that left a convolution no
    map, it says so."""
    err = shape_error(e, op, path, span, [producer, *sized])
    flattened = producer.attrs.get("flatten") is True and len(producer.shape) == 1
    if flattened and "[C, H, W]" in e.message:
        err.notes.append(
            f"{describe(producer.op, producer.path)} flattens its output "
            f"(flatten=true); without it the output is [{producer.shape[0]}, 1, 1]"
        )
    return err


def merge_shape_error(
    e: ShapeProblem,
    merge: ast.Merge,
    graph: Graph,
    producers: list[OpNode],
    passed_on: int | None,
) -> ArchShapeError:
    """:func:`shape_error` for a merge, whose branch ``passed_on`` (if any) is its input
    itself, with the projection or padding that would make the branches fit."""
    err = shape_error(e, merge.kind, None, merge.span, producers)
    if merge.kind == "add" and passed_on is not None:
        err.notes += filter(None, [_projection_note(passed_on, producers)])
    if merge.kind == "concat":
        err.notes += _padding_notes(graph, producers)
    return err


def _projection_note(i: int, producers: list[OpNode]) -> str | None:
    """For an ``add`` whose branch ``i`` passes its input on unchanged while another branch
    changes the shape: the projection that makes the two fit, as ResNet's downsample."""
    have = producers[i].shape
    want = next((p.shape for p in producers if p.shape != have), None)
    if want is None:
        return None
    what = f"input {i} is the add's input passed on unchanged ('()', or an 'if' that built nothing)"
    if len(have) == len(want) == 3:
        c, h, w = want
        strides = [
            s for s in range(1, 9) if (have[1] - 1) // s + 1 == h and (have[2] - 1) // s + 1 == w
        ]
        if strides:
            stride = f", stride={strides[0]}" if strides[0] != 1 else ""
            return (
                f"{what}; project it to {list(want)} as ResNet's downsample does: "
                f"'seq {{ conv({c}, 1{stride}, bias=false); bn }}'"
            )
    return f"{what}; it needs the other branch's shape {list(want)}"


_WINDOWED = ("conv", "deform_conv", "maxpool", "avgpool")


def _output_padding_note(p: OpNode, target: tuple[int, ...]) -> list[str]:
    """For a transposed convolution a few rows or columns short of the size the others
    have (a decoder's way back up, one size of several a strided convolution maps to the
    same size): the ``output_padding`` that gives that size, where torch allows it."""
    attrs = p.attrs
    pads = []
    for axis in range(2):
        extra = target[axis] - p.shape[1 + axis] + attrs["output_padding"][axis]
        if not 0 <= extra < max(attrs["stride"][axis], attrs["dilation"][axis]):
            return []
        pads.append(extra)
    text = str(pads[0]) if pads[0] == pads[1] else str(pads)
    return [
        f"{describe(p.op, p.path)} gives {'x'.join(map(str, p.shape[1:]))}: "
        f"output_padding={text} gives {'x'.join(map(str, target))}"
    ]


def _padding_notes(graph: Graph, producers: list[OpNode]) -> list[str]:
    """For a ``concat`` whose inputs differ in size: each input made by a stride-1
    convolution or pooling that shrank the size the others have, with the padding that
    keeps it (a 3x3 convolution in an inception branch without ``padding=1``), and each
    transposed convolution that fell short of it (see :func:`_output_padding_note`)."""
    sizes = [p.shape[1:] for p in producers]
    target = max(sizes, key=sizes.count)
    notes = []
    for p in producers:
        if p.shape[1:] == target:
            continue
        while len(graph.inputs(p.id)) == 1:  # back to the layer that changed the size
            before = graph.node(graph.inputs(p.id)[0])
            if before.shape[1:] != p.shape[1:]:
                break
            p = before
        if p.op == "conv_transpose" and len(p.shape) == 3:
            notes += _output_padding_note(p, target)
            continue
        if p.op not in _WINDOWED or len(p.shape) != 3:
            continue
        source = graph.node(graph.inputs(p.id)[0])
        attrs = p.attrs
        stride = attrs.get("stride") or attrs["kernel"]  # a pooling's default: its kernel
        if source.shape[1:] != target or stride != (1, 1):
            continue
        kernel, dilation = attrs["kernel"], attrs.get("dilation", (1, 1))
        span = [d * (k - 1) for k, d in zip(kernel, dilation)]
        if any(x % 2 for x in span) or not isinstance(attrs.get("padding"), tuple):
            continue  # no symmetric padding keeps the size
        need = [x // 2 for x in span]
        text = str(need[0]) if need[0] == need[1] else str(need)
        size = "x".join(map(str, target))
        notes.append(
            f"{describe(p.op, p.path)} turns {size} into "
            f"{'x'.join(map(str, p.shape[1:]))}: padding={text} keeps {size}"
        )
    return notes


MAX_DIM = 2**31 - 1
MAX_ELEMENTS = 2**40


def check_dims(shape: tuple[int, ...], span: Span) -> None:
    """Refuse tensor shapes no machine could hold (per sample)."""
    elements = 1
    for d in shape:
        if d > MAX_DIM:
            raise ArchLimitError(f"shape {list(shape)} has a dimension above {MAX_DIM:,}", span)
        elements *= d
    if elements > MAX_ELEMENTS:
        raise ArchLimitError(
            f"shape {list(shape)} has {elements:,} elements per sample, above {MAX_ELEMENTS:,}",
            span,
        )
