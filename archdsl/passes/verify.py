"""IR verifier: the structural invariants the backends rely on. Run between passes in tests.

>>> import archdsl
>>> verify(archdsl.check("network n { input [3, 8, 8]; add { relu; identity } }")).output_shape
(3, 8, 8)
"""

from __future__ import annotations

from archdsl.ir import Graph
from archdsl.ops import get_op, reads_size


class IRError(AssertionError):
    """An internal invariant of the IR is broken: a compiler bug, not a user error."""


def verify(graph: Graph) -> Graph:
    """Check: creation order is topological (so the graph is acyclic); arity; module paths
    unique; every scope has one entry and one exit; shapes are set. Linear in the size of
    the graph (times the nesting depth of scopes)."""
    order = {node.id: k for k, node in enumerate(graph.nodes())}
    paths: dict[str, str] = {}
    for node in graph.nodes():
        ins = graph.inputs(node.id)
        if any(order[i] >= order[node.id] for i in ins):
            raise IRError(f"{node.id}: an input is created after it")
        if node.op == "input":
            if ins:
                raise IRError("the input node has inputs")
        else:
            opdef = get_op(node.op)
            if opdef is None:
                raise IRError(f"{node.id}: unknown op {node.op}")
            arity = opdef.arity + reads_size(node.attrs) if opdef.arity >= 0 else -1
            if arity >= 0 and len(ins) != arity:
                raise IRError(f"{node.id}: {len(ins)} inputs for an op of arity {arity}")
            if opdef.arity < 0 and not ins:
                raise IRError(f"{node.id}: a merge without inputs")
        if not node.shape or any(d < 1 for d in node.shape):
            raise IRError(f"{node.id}: bad shape {node.shape}")
        if node.path is not None:
            if node.path in paths or node.path in graph.scopes:
                raise IRError(f"module path {node.path} used twice")
            paths[node.path] = node.id
    _verify_scopes(graph)
    if graph.output not in graph:
        raise IRError("graph output is not a node")
    return graph


def _verify_scopes(graph: Graph) -> None:
    """Every edge that enters a scope starts at the scope's input; every edge that leaves
    one starts at its output; a scope's output is inside it."""
    enclosing: dict[str, frozenset[str]] = {}

    def scopes_of(node_id: str) -> frozenset[str]:
        """The scopes a node is inside: its own namespace and those around it."""
        path = graph.node(node_id).scope
        if path not in enclosing:
            parts = path.split(".") if path else []
            prefixes = (".".join(parts[:k]) for k in range(1, len(parts) + 1))
            enclosing[path] = frozenset(p for p in prefixes if p in graph.scopes)
        return enclosing[path]

    for scope in graph.scopes.values():
        if scope.output not in graph or scope.path not in scopes_of(scope.output):
            raise IRError(f"scope {scope.path}: its output {scope.output} is not inside it")
    for src, dst, _ in graph.edges():
        inner, outer = scopes_of(dst), scopes_of(src)
        for path in sorted(inner - outer):
            if src != graph.scopes[path].input:
                raise IRError(f"scope {path}: {dst} reads {src} from outside")
        for path in sorted(outer - inner):
            if src != graph.scopes[path].output:
                raise IRError(f"scope {path}: {src} leaks to {dst}")
