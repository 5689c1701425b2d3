"""Graphviz diagrams of a checked network, from the graph alone (no torch).

The default view is block level: a block instance is one box (a bottleneck, a dense
layer, an inverted residual), unless its block holds two or more scopes in some instance
(a ResNet or EfficientNet stage, an inception module): those open as clusters around
their contents, as do ``seq``s and labelled groups (VGG's ``features``). Consecutive identical blocks collapse
into one box, ``bottleneck x 5``. ``depth=N`` instead opens every scope above nesting
level N (1: the network's direct contents); ``expand=True`` draws repeats one by one.
A collapsed run that is opened shows its first instance inside a cluster marked
``x N``. Edges carry the tensor shape (per sample); boxes carry parameters and MACs.

Uses the ``graphviz`` Python package; images need Graphviz's ``dot`` program. Without it,
:func:`render` writes the ``.dot`` file and says in one line how to get images.

>>> import archdsl
>>> g = archdsl.check("network n { input [3, 8, 8]; c: conv(4, 3) -> relu }")
>>> [line.strip() for line in to_dot(g).source.splitlines() if "->" in line]
['input -> n1 [label=" 3×8×8"]', 'n1 -> n2 [label=" 4×6×6"]', 'n2 -> out_output']
"""

from __future__ import annotations

import html
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from archdsl.analysis.blocks import Item, block_tree, collapse, input_lists, span_name
from archdsl.ir.graph import Graph, OpNode, Shape
from archdsl.ops.base import SizeOf, reads_size

if TYPE_CHECKING:
    import graphviz

RANKDIRS = ("TB", "LR", "BT", "RL")

_FONT = "Helvetica,Arial,sans-serif"
_COLORS = {
    "conv": "#cfe2f3",
    "conv_transpose": "#cfe2f3",
    "linear": "#d9d2e9",
    "channel_linear": "#d9d2e9",
    "bn": "#eeeeee",
    "layernorm": "#eeeeee",
    "groupnorm": "#eeeeee",
    "lrn": "#eeeeee",
    "maxpool": "#fce5cd",
    "avgpool": "#fce5cd",
    "adaptive_avgpool": "#fce5cd",
    "adaptive_maxpool": "#fce5cd",
    "global_avgpool": "#fce5cd",
    "global_maxpool": "#fce5cd",
    "upsample": "#fce5cd",
}
_ACTIVATION_COLOR = "#d9ead3"
_ACTIVATIONS = frozenset(
    {
        "relu",
        "relu6",
        "leaky_relu",
        "silu",
        "gelu",
        "sigmoid",
        "tanh",
        "hardswish",
        "hardsigmoid",
        "softmax",
    }
)
_BLOCK_COLOR = "#fff2cc"
_CLUSTER_COLORS = ("#f6f8fb", "#eef2f8", "#e6ecf5", "#dfe6f1")
_MERGE_SYMBOLS = {"add": "+", "mul": "×", "concat": "concat"}


def _si(n: float) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= factor:
            return f"{n / factor:.3g}{prefix}"
    return f"{n:g}"


def _shape(shape: Shape) -> str:
    return "×".join(str(d) for d in shape)


def _pair(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return f"{value[0]}×{value[1]}" if value[0] != value[1] else f"{value[0]}×{value[0]}"
    return f"{value}×{value}"


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) and value[0] == value[1] else value


def op_text(node: OpNode) -> str:
    """A short description of an op: ``conv 3×3 /2``, ``maxpool 3×3 /2``, ``linear 1000``."""
    a = node.attrs
    if node.op == "conv" or "kernel" in a:
        text = f"{node.op} {_pair(a['kernel'])}"
        stride = a.get("stride")
        if stride is not None and _first(stride) != 1:
            step = "up " if node.op == "conv_transpose" else "/"  # a transposed one enlarges
            text += f" {step}{_first(stride)}"
        if a.get("dilation") not in (None, 1, (1, 1)):
            text += f" dil {_first(a['dilation'])}"
        if a.get("groups", 1) != 1:
            text += f" g{a['groups']}"
        return text
    if node.op == "linear":
        return f"linear {a['out']}"
    if node.op == "upsample":
        sh, sw = a["scale"]
        return f"upsample ×{sh if sh == sw else f'{sh}×{sw}'} {a['mode']}"
    if node.op == "resize":
        size = a["size"]
        to = size if isinstance(size, SizeOf) else "×".join(map(str, size))
        return f"resize to {to} {a['mode']}"
    if "size" in a and node.op.startswith("adaptive"):
        return f"{node.op} {_first(a['size'])}"
    if node.op == "dropout":
        return f"dropout {a['p']:g}"
    if node.op == "scale":
        return f"scale ×{a['factor']:g}"
    return node.op


def _cost(params: int, macs: int) -> str:
    parts = []
    if params:
        parts.append(f"{_si(params)} params")
    if macs:
        parts.append(f"{_si(macs)} MACs")
    return " · ".join(parts)


def _html(lines: Iterable[tuple[str, str]]) -> str:
    """An HTML-like label from (style, text) lines: style ``b`` bold, ``s`` small grey."""
    out = []
    for style, text in lines:
        if not text:
            continue
        text = html.escape(text)
        if style == "b":
            out.append(f"<b>{text}</b>")
        elif style == "s":
            out.append(f'<font point-size="9" color="#555555">{text}</font>')
        else:
            out.append(text)
    return "<" + "<br/>".join(out) + ">"


def _local(name: str, parent: str) -> str:
    return name[len(parent) + 1 :] if parent and name.startswith(parent + ".") else name


def _titles(item: Item, parent: str) -> tuple[str, str]:
    """A scope's name, relative to the enclosing cluster but with at least one segment that
    is not a number (``layer1.0``, ``branch2.0``), and what it is (``bottleneck x 5``)."""
    name = span_name(item.name, item.last.name)
    parts = name.split(".")
    keep = len(_local(name, parent).split("."))
    while keep < len(parts) and all(p.split("-")[0].isdigit() for p in parts[-keep:]):
        keep += 1
    title = ".".join(parts[-keep:])
    return title, f"{item.op} × {item.repeat}" if item.repeat > 1 else item.op


class _Drawer:
    """Walks the block tree once, drawing units and clusters and recording which unit
    stands for each graph node."""

    def __init__(self, graph: Graph, root: Item, depth: int | None, expand: bool) -> None:
        self.graph = graph
        # block level: blocks whose instances (any of them) hold two or more scopes, such
        # as stages and inception modules, are opened; other blocks are one box each
        self.containers = {
            item.op
            for item in root.walk()
            if item.kind == "block" and sum(c.kind != "op" for c in item.children) >= 2
        }
        self.depth = depth
        self.expand = expand
        self.unit: dict[str, str] = {}  # graph node id -> dot node id
        # graph node id -> the node it is drawn as: an identity's input, or the same node
        # of the first instance of a run drawn once
        self.redirect: dict[str, str] = {}
        # node id -> {run: member index} for the runs of repeats drawn once
        self.member: dict[str, dict[int, int]] = {}
        self.counter = 0
        self.runs = 0

    def new_id(self) -> str:
        self.counter += 1
        return f"n{self.counter}"

    def unit_of(self, node_id: str) -> str | None:
        while node_id in self.redirect:
            node_id = self.redirect[node_id]
        return self.unit.get(node_id)

    def opens(self, item: Item) -> bool:
        if item.kind == "op" or not item.children:
            return False
        if self.depth is not None:
            return item.depth < self.depth
        return item.kind != "block" or item.op in self.containers

    def items(self, dot: graphviz.Digraph, items: list[Item], parent: str) -> None:
        for item in items if self.expand else collapse(items):
            if not item.nodes:
                continue  # an empty scope draws nothing; edges pass through it
            if self.opens(item):
                self.cluster(dot, item, parent)
            else:
                self.box(dot, item, parent)

    def box(self, dot: graphviz.Digraph, item: Item, parent: str) -> None:
        if item.node is not None and item.node.op == "identity":
            # an identity (the shortcut of a residual or dense merge) is drawn as an edge
            self.redirect[item.output] = next(iter(self.graph.nx.predecessors(item.output)))
            return
        nid = self.new_id()
        for member in item.members or [item]:
            for node_id in member.nodes:
                self.unit[node_id] = nid
        if item.kind == "op":
            node = item.node
            assert node is not None
            if node.op in _MERGE_SYMBOLS:
                shape = "box" if node.op == "concat" else "circle"
                dot.node(
                    nid,
                    _html([("b", _MERGE_SYMBOLS[node.op])]),
                    shape=shape,
                    style="filled",
                    fillcolor="white",
                    margin="0.04",
                    width="0.3",
                    height="0.3",
                )
                return
            name = _local(item.name, parent)
            shown = "" if name.split(".")[-1].isdigit() or name == node.op else name
            color = _COLORS.get(node.op, _ACTIVATION_COLOR if node.op in _ACTIVATIONS else "white")
            dot.node(
                nid,
                _html(
                    [
                        ("b", op_text(node)),
                        ("", shown),
                        ("s", _cost(item.cost.params, item.cost.macs)),
                    ]
                ),
                fillcolor=color,
            )
            return
        title, what = _titles(item, parent)
        dot.node(
            nid,
            _html([("b", what), ("", title), ("s", _cost(item.cost.params, item.cost.macs))]),
            fillcolor=_BLOCK_COLOR,
            peripheries="2" if item.repeat > 1 else "1",
        )

    def cluster(self, dot: graphviz.Digraph, item: Item, parent: str) -> None:
        title, what = _titles(item, parent)
        cost = _cost(item.cost.params, item.cost.macs)
        if item.repeat > 1 and cost:
            cost += f" in all; one {item.op} drawn"
        color = _CLUSTER_COLORS[min(item.depth, len(_CLUSTER_COLORS)) - 1]
        with dot.subgraph(name=f"cluster_{self.new_id()}") as sub:
            sub.attr(
                label=_html([("b", f"{title}: {what}"), ("s", cost)]),
                style="rounded,filled",
                fillcolor=color,
                color="#8fa3bf",
                labeljust="l",
                penwidth="2" if item.repeat > 1 else "1",
            )
            self.items(sub, item.children, item.name)
        if item.repeat > 1:
            self.runs += 1
            first = item.members[0].nodes
            for index, member in enumerate(item.members):
                for node_id, same in zip(member.nodes, first):
                    if node_id != same:
                        self.redirect[node_id] = same
                    self.member.setdefault(node_id, {})[self.runs] = index


def to_dot(
    spec: Graph | str | os.PathLike[str],
    depth: int | None = None,
    expand: bool = False,
    rankdir: str = "TB",
    *,
    network: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> graphviz.Digraph:
    """The diagram as a ``graphviz.Digraph`` (see the module docstring for the view);
    ``spec`` is anything :func:`archdsl.analysis.summary` takes."""
    try:
        import graphviz
    except ImportError:
        raise ModuleNotFoundError(
            "rendering needs the graphviz Python package: pip install 'archdsl[render]'"
        ) from None
    from archdsl.analysis.summary import as_graph

    if rankdir not in RANKDIRS:
        raise ValueError(f"unknown rankdir {rankdir!r}; one of: {', '.join(RANKDIRS)}")
    if depth is not None and depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    graph = as_graph(spec, network, params)
    dot = graphviz.Digraph(graph.name)
    dot.attr(
        rankdir=rankdir,
        nodesep="0.25",
        ranksep="0.3",
        fontname=_FONT,
        fontsize="11",
        newrank="true",
    )
    dot.attr(
        "node",
        shape="box",
        style="rounded,filled",
        fontname=_FONT,
        fontsize="10",
        margin="0.08,0.03",
        height="0.3",
        penwidth="0.8",
    )
    dot.attr(
        "edge", fontname=_FONT, fontsize="8", fontcolor="#555555", arrowsize="0.6", color="#666666"
    )
    root = block_tree(graph)
    drawer = _Drawer(graph, root, depth, expand)
    inputs = input_lists(graph)
    input_id = next(n.id for n in graph.nodes() if not inputs[n.id])
    drawer.unit[input_id] = "input"
    dot.node(
        "input",
        _html([("b", "input"), ("", _shape(graph.input_shape))]),
        shape="box",
        style="filled",
        fillcolor="#f3f3f3",
    )
    drawer.items(dot, root.children, "")
    drawn: set[tuple[str, str]] = set()
    for node in graph.nodes():
        sized = reads_size(node.attrs)  # its last input gives a size: a dashed edge
        for port, src in enumerate(inputs[node.id]):
            a, b = drawer.unit_of(src), drawer.unit_of(node.id)
            if a is None or b is None or a == b or (a, b) in drawn:
                continue
            ma, mb = drawer.member.get(src, {}), drawer.member.get(node.id, {})
            if any(ma[run] != mb[run] for run in ma.keys() & mb.keys()):
                continue  # between repeats of a run drawn once
            drawn.add((a, b))
            if sized and port == len(inputs[node.id]) - 1:
                dot.edge(a, b, label=" size", style="dashed")
            else:
                dot.edge(a, b, label=" " + _shape(graph.node(src).shape))
    # the outputs in the order the network returns them, by their field names
    fields = getattr(graph, "output_fields", None) or {"out": graph.output}
    for name, node_id in fields.items():
        if graph.returns_fields:  # values returned in both modes
            what, out_id = f"output {name}", f"out_{name}"
        elif node_id != graph.output:
            what, out_id = f"{name} (training only)", f"out_{name}"
        else:
            what, out_id = ("output" if name == "out" else f"output ({name})"), "out_output"
        dot.node(
            out_id,
            _html([("b", what), ("", _shape(graph.node(node_id).shape))]),
            shape="box",
            style="filled",
            fillcolor="#f3f3f3",
        )
        dot.edge(drawer.unit_of(node_id) or "input", out_id)
    return dot


def render(
    spec: Graph | str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    depth: int | None = None,
    expand: bool = False,
    rankdir: str = "TB",
    *,
    network: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> Path:
    """Draw a network to ``out_path``, the format from its extension (``.svg``, ``.png``,
    ``.pdf``, ``.dot`` / ``.gv`` for the Graphviz source, or any format Graphviz knows).
    Returns the path written: the ``.dot`` file instead of the image when Graphviz's
    ``dot`` program is missing (after one line on stderr saying how to get images).
    ValueError for an unknown extension, rankdir or depth."""
    import graphviz

    out = Path(out_path)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in graphviz.FORMATS:
        known = "svg, png, pdf, dot"
        raise ValueError(f"cannot tell the image format from {str(out)!r}; use one of: {known}")
    dot = to_dot(spec, depth, expand, rankdir, network=network, params=params)
    if fmt in ("dot", "gv"):
        out.write_text(dot.source)
        return out
    try:
        data = dot.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        source = out.with_suffix(".dot")
        source.write_text(dot.source)
        print(
            f"archdsl: Graphviz's 'dot' program was not found, so wrote {source} instead; "
            f"install Graphviz (e.g. apt-get install graphviz) and run "
            f"'dot -T{fmt} {source} -o {out}'",
            file=sys.stderr,
        )
        return source
    out.write_bytes(data)
    return out
