"""Shape inference as a pass: every node's output shape from its inputs' shapes.

The elaborator already infers shapes while it builds the graph (the language can branch
on them), using the same per-op rules; this pass recomputes them from the input shape
alone, so a graph built or edited by other means is checked the same way.

>>> import archdsl
>>> g = archdsl.check("network n { input [3, 32, 32]; conv(8, 3, stride=2) -> flatten }")
>>> [n.shape for n in infer_shapes(g).nodes()]
[(3, 32, 32), (8, 15, 15), (1800,)]
"""

from __future__ import annotations

from archdsl.errors import ArchShapeError
from archdsl.ir import Graph
from archdsl.ir.graph import describe
from archdsl.ops import get_op
from archdsl.ops.base import ShapeProblem


def infer_shapes(graph: Graph) -> Graph:
    """Set ``shape`` on every node, in topological order; raise ArchShapeError at the span
    of the first node whose inputs do not fit."""
    for node in list(graph.nodes()):
        if node.op == "input":
            if node.shape != graph.input_shape:
                graph.replace_node(node.id, shape=graph.input_shape)
            continue
        opdef = get_op(node.op)
        if opdef is None:
            raise ArchShapeError(f"unknown op '{node.op}' in the graph", node.span)
        inputs = [graph.node(i) for i in graph.inputs(node.id)]
        try:
            shape = tuple(opdef.infer(node.attrs, [i.shape for i in inputs]))
        except ShapeProblem as e:
            message = e.message.removeprefix(f"{node.op}: ").removeprefix(f"{node.op} ")
            err = ArchShapeError(f"{describe(node.op, node.path)}: {message}", node.span)
            if e.arithmetic:
                err.notes.append(e.arithmetic)
            err.notes.extend(
                f"input {k} {list(i.shape)} comes from "
                f"{'the network input' if i.op == 'input' else describe(i.op, i.path)} at {i.span}"
                for k, i in enumerate(inputs)
            )
            raise err from None
        if shape != node.shape:
            graph.replace_node(node.id, shape=shape)
    return graph
