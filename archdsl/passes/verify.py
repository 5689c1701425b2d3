"""IR verifier: the structural invariants the backends rely on. Run between passes in tests.

>>> import archdsl
>>> verify(archdsl.check("network n { input [3, 8, 8]; add { relu; identity } }")).output_shape
(3, 8, 8)
"""

from __future__ import annotations

import networkx as nx

from archdsl.ir import Graph
from archdsl.ops import get_op


class IRError(AssertionError):
    """An internal invariant of the IR is broken: a compiler bug, not a user error."""


def verify(graph: Graph) -> Graph:
    """Check: acyclic; creation order is topological; input ports 0..n-1; arity; module
    paths unique; every scope has one entry and one exit; shapes are set."""
    order = {nid: k for k, nid in enumerate(graph.nx.nodes)}
    if not nx.is_directed_acyclic_graph(graph.nx):
        raise IRError("graph has a cycle")
    paths: dict[str, str] = {}
    for node in graph.nodes():
        ins = graph.inputs(node.id)
        ports = sorted(p for _, _, p in graph.nx.in_edges(node.id, data="port"))
        if ports != list(range(len(ins))):
            raise IRError(f"{node.id}: input ports {ports} are not 0..{len(ins) - 1}")
        if any(order[i] >= order[node.id] for i in ins):
            raise IRError(f"{node.id}: an input is created after it")
        if node.op == "input":
            if ins:
                raise IRError("the input node has inputs")
        else:
            opdef = get_op(node.op)
            if opdef is None:
                raise IRError(f"{node.id}: unknown op {node.op}")
            if opdef.arity >= 0 and len(ins) != opdef.arity:
                raise IRError(f"{node.id}: {len(ins)} inputs for an op of arity {opdef.arity}")
            if opdef.arity < 0 and not ins:
                raise IRError(f"{node.id}: a merge without inputs")
        if not node.shape or any(d < 1 for d in node.shape):
            raise IRError(f"{node.id}: bad shape {node.shape}")
        if node.path is not None:
            if node.path in paths or node.path in graph.scopes:
                raise IRError(f"module path {node.path} used twice")
            paths[node.path] = node.id
    for scope in graph.scopes.values():
        inside = {
            n.id for n in graph.nodes() if n.scope == scope.path or n.scope.startswith(scope.path + ".")
        }
        if scope.output not in inside:
            raise IRError(f"scope {scope.path}: its output {scope.output} is not inside it")
        for nid in inside:
            for src in graph.inputs(nid):
                if src not in inside and src != scope.input:
                    raise IRError(f"scope {scope.path}: {nid} reads {src} from outside")
            for dst in graph.users(nid):
                if dst not in inside and nid != scope.output:
                    raise IRError(f"scope {scope.path}: {nid} leaks to {dst}")
    if graph.output not in graph.nx:
        raise IRError("graph output is not a node")
    return graph
