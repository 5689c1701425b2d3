"""The graph IR.

A :class:`Graph` holds op nodes in a ``networkx.DiGraph`` keyed by node id. Every edge
carries ``port``: the index of the consumer's input it feeds (concat order matters).
Node ids are allocated in creation order, which the elaborator guarantees is a
topological order; passes and backends iterate in that order, so output is deterministic.

Namespaces (block instances, ``seq``s, labelled groups) are recorded as :class:`Scope`s:
each has exactly one input and one output node, so a backend can compile every scope
into a callable submodule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx

from archdsl.errors import Span

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpNode:
    """One op application.

    ``path`` is the module path (the state_dict prefix) for ops that become modules;
    ``None`` for the graph input and for merges, which are plain functions.
    ``scope`` is the path of the innermost namespace the node belongs to.
    ``shape`` is the inferred per-sample output shape (no batch dimension).
    """

    id: str
    op: str
    attrs: Mapping[str, Any]
    path: str | None
    span: Span
    shape: Shape
    scope: str = ""


@dataclass
class Scope:
    """A namespace that compiles to a callable submodule."""

    path: str
    kind: str  # "block", "seq", "group"
    name: str  # block name, "seq" or the label
    span: Span
    input: str  # id of the node whose output feeds the scope
    output: str = ""  # id of the scope's last node (== input when the scope is empty)


@dataclass
class Graph:
    """A checked network: nodes, ordered edges, scopes and network-level facts."""

    name: str
    input_shape: Shape
    nx: nx.MultiDiGraph = field(default_factory=nx.MultiDiGraph)  # a merge may read one tensor twice
    output: str = ""
    side_outputs: dict[str, str] = field(default_factory=dict)  # training-only: name -> node id
    scaling: Mapping[str, float] = field(default_factory=dict)  # width, depth, resolution
    scopes: dict[str, Scope] = field(default_factory=dict)
    init: tuple[tuple[str, str, str, tuple[Any, ...], Mapping[str, Any]], ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    span: Span | None = None
    _counter: int = 0

    # --- construction -------------------------------------------------------------
    def new_id(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def add(self, node: OpNode, inputs: list[str]) -> OpNode:
        self.nx.add_node(node.id, node=node)
        for port, src in enumerate(inputs):
            self.nx.add_edge(src, node.id, port=port)
        return node

    # --- queries ------------------------------------------------------------------
    def _repr_svg_(self) -> str | None:  # a notebook shows a checked graph as its diagram
        from archdsl import _svg

        return _svg(self)

    def node(self, node_id: str) -> OpNode:
        return self.nx.nodes[node_id]["node"]

    def nodes(self) -> Iterator[OpNode]:
        """All nodes in creation (topological) order."""
        for nid in self.nx.nodes:
            yield self.nx.nodes[nid]["node"]

    def inputs(self, node_id: str) -> list[str]:
        """Producers of ``node_id`` ordered by port."""
        preds = self.nx.in_edges(node_id, data="port")
        return [src for src, _, _ in sorted(preds, key=lambda e: e[2])]  # type: ignore[no-any-return]

    def users(self, node_id: str) -> list[str]:
        return list(dict.fromkeys(self.nx.successors(node_id)))

    @property
    def output_shape(self) -> Shape:
        return self.node(self.output).shape

    def replace_node(self, node_id: str, **changes: Any) -> OpNode:
        new = replace(self.node(node_id), **changes)
        self.nx.nodes[node_id]["node"] = new
        return new

    def __len__(self) -> int:
        return self.nx.number_of_nodes()


def describe(op: str, path: str | None) -> str:
    """How messages name a node: ``conv 'layer1.0.conv1'``, ``relu (module '3')``, ``add``."""
    if not path:
        return op
    if path.rsplit(".", 1)[-1].isdigit():
        return f"{op} (module '{path}')"
    return f"{op} '{path}'"
