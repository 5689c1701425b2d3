"""The graph IR.

A :class:`Graph` holds op nodes keyed by node id, and for each node its producers in
input-port order (concat order matters) and its consumers. Node ids are allocated in
creation order, which the elaborator guarantees is a topological order; passes and
backends iterate in that order, so output is deterministic.

The adjacency is plain dicts and lists rather than a graph library: building and walking
the graph is the hot path of ``check``, which must stay linear in the size of the spec
and must not pay for importing a graph library. ``Graph.nx`` offers a networkx view for
analyses that want graph algorithms.

Namespaces (block instances, ``seq``s, labelled groups) are recorded as :class:`Scope`s:
each has exactly one input and one output node, so a backend can compile every scope
into a callable submodule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from archdsl.errors import Span

if TYPE_CHECKING:
    import networkx

    from archdsl.elaborate.network_rules import InitRule
    from archdsl.frontend.ast import Expr

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OpNode:
    """One op application.

    ``path`` is the module path (the state_dict prefix) for ops that become modules;
    ``None`` for the graph input and for merges, which are plain functions.
    ``scope`` is the path of the innermost namespace the node belongs to.
    ``shape`` is the inferred per-sample output shape (no batch dimension).
    ``exprs`` holds the spec's expression for each attribute written as one rather than
    as a literal (``padding=(kernel - 1) // 2``): the ``.py`` output writes such an
    argument as the spec does where it holds in every instance of a class.
    """

    id: str
    op: str
    attrs: Mapping[str, Any]
    path: str | None
    span: Span
    shape: Shape
    scope: str = ""
    exprs: Mapping[str, Expr] = field(default_factory=dict)


@dataclass
class Scope:
    """A namespace that compiles to a callable submodule."""

    path: str
    kind: str  # "block", "seq", "group"
    name: str  # block name, "seq" or the label
    span: Span
    input: str  # id of the node whose output feeds the scope
    output: str = ""  # id of the scope's last node (== input when the scope is empty)
    # a block's parameters and top-level locals, the plain values (numbers, strings) only:
    # the spec's own words for the numbers inside it (the .py output names by them)
    values: Mapping[str, Any] = field(default_factory=dict)
    defaults: Mapping[str, Any] = field(default_factory=dict)  # a block's literal defaults
    defined: Span | None = None  # where a block is defined (``span`` is where it is called)


@dataclass
class Graph:
    """A checked network: nodes, ordered edges, scopes and network-level facts."""

    name: str
    input_shape: Shape
    output: str = ""
    side_outputs: dict[str, str] = field(default_factory=dict)  # training-only: name -> node id
    points: dict[str, str] = field(
        default_factory=dict
    )  # `p3: ()`, a name with no module: path -> node id
    # the fields of Outputs, in order: field name -> node id. With side outputs, what
    # training mode returns (the main output and every side output once); without, the
    # values an outputs(...) statement names, returned in both modes (returns_fields);
    # empty when the network returns its main output alone
    output_fields: dict[str, str] = field(default_factory=dict)
    scaling: Mapping[str, float] = field(default_factory=dict)  # width, depth, resolution
    scopes: dict[str, Scope] = field(default_factory=dict)
    init: tuple[InitRule, ...] = ()  # the network's `init` statements, in order
    params: Mapping[str, Any] = field(default_factory=dict)
    span: Span | None = None
    _counter: int = 0
    _nodes: dict[str, OpNode] = field(default_factory=dict, repr=False)
    _inputs: dict[str, list[str]] = field(default_factory=dict, repr=False)  # by port
    # one entry per edge, in creation order: a merge that reads a tensor twice is listed twice
    _users: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _nx: Any = field(default=None, repr=False, compare=False)  # cached networkx view

    # --- construction -------------------------------------------------------------
    def new_id(self, hint: str) -> str:
        self._counter += 1
        return f"{hint}_{self._counter}"

    def add(self, node: OpNode, inputs: list[str]) -> OpNode:
        """Add ``node`` reading ``inputs`` (producers, by port), all already in the graph."""
        nid = node.id
        if nid in self._nodes:
            raise ValueError(f"node {nid} is already in the graph")
        for src in inputs:
            self._users[src].append(nid)  # KeyError for an unknown producer
        self._nodes[nid] = node
        self._inputs[nid] = list(inputs)
        self._users[nid] = []
        self._nx = None
        return node

    # --- queries ------------------------------------------------------------------
    def _repr_svg_(self) -> str | None:  # a notebook shows a checked graph as its diagram
        from archdsl import _svg

        return _svg(self)

    @property
    def returns_fields(self) -> bool:
        """Whether the forward returns ``Outputs`` (its :attr:`output_fields`) in eval mode
        too: values named by ``outputs(...)`` in a network without side outputs (a feature
        pyramid's levels), rather than training-only side outputs."""
        return bool(self.output_fields) and not self.side_outputs

    def node(self, node_id: str) -> OpNode:
        return self._nodes[node_id]

    def nodes(self) -> Iterator[OpNode]:
        """All nodes in creation (topological) order."""
        return iter(self._nodes.values())

    def inputs(self, node_id: str) -> list[str]:
        """Producers of ``node_id`` ordered by port."""
        return list(self._inputs[node_id])

    def users(self, node_id: str) -> list[str]:
        """Consumers of ``node_id``, each once, in creation order."""
        return list(dict.fromkeys(self._users[node_id]))

    def edges(self) -> Iterator[tuple[str, str, int]]:
        """Every edge as ``(producer, consumer, port)``, consumers in creation order."""
        for nid, srcs in self._inputs.items():
            for port, src in enumerate(srcs):
                yield src, nid, port

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    @property
    def output_shape(self) -> Shape:
        return self.node(self.output).shape

    def replace_node(self, node_id: str, **changes: Any) -> OpNode:
        new = replace(self._nodes[node_id], **changes)
        self._nodes[node_id] = new
        self._nx = None
        return new

    def __len__(self) -> int:
        return len(self._nodes)

    def open_scopes(self, paths: set[str]) -> None:
        """Dissolve the scopes ``paths``: they stop being callable submodules, and their
        nodes, under the same module paths, join the nearest scope around them that stays.
        A value read from outside the scope it is computed in (a backbone's output, a
        reference ``@backbone.layer3``) needs the scopes between the two opened."""
        if not paths:
            return
        self.scopes = {path: scope for path, scope in self.scopes.items() if path not in paths}
        for node in list(self._nodes.values()):
            scope = node.scope
            while scope and scope not in self.scopes:
                scope = scope.rsplit(".", 1)[0] if "." in scope else ""
            if scope != node.scope:
                self.replace_node(node.id, scope=scope)

    # --- a networkx view, for graph algorithms outside the hot path -------------------
    @property
    def nx(self) -> networkx.MultiDiGraph:
        """The graph as a ``networkx.MultiDiGraph`` (node attribute ``node``: the OpNode;
        edge attribute ``port``), built on first use and rebuilt after a change. Read it;
        to change the graph, use :meth:`add` and :meth:`replace_node`, or assign a whole
        networkx graph of the same form."""
        if self._nx is None:
            import networkx

            view = networkx.MultiDiGraph()
            for nid, node in self._nodes.items():
                view.add_node(nid, node=node)
            for src, dst, port in self.edges():
                view.add_edge(src, dst, port=port)
            self._nx = view
        return self._nx

    @nx.setter
    def nx(self, view: networkx.MultiDiGraph) -> None:
        # networkx's subgraph views may iterate in set order: keep this graph's order
        order = {nid: k for k, nid in enumerate(self._nodes)}
        ids = sorted(view.nodes, key=lambda nid: order.get(nid, len(order)))
        nodes = {nid: view.nodes[nid]["node"] for nid in ids}
        inputs: dict[str, list[str]] = {}
        users: dict[str, list[str]] = {nid: [] for nid in nodes}
        for nid in nodes:
            ported = sorted((port, src) for src, _, port in view.in_edges(nid, data="port"))
            if [port for port, _ in ported] != list(range(len(ported))):
                raise ValueError(f"{nid}: input ports {[p for p, _ in ported]} are not 0..n-1")
            inputs[nid] = [src for _, src in ported]
            for src in inputs[nid]:
                users[src].append(nid)
        self._nodes, self._inputs, self._users, self._nx = nodes, inputs, users, None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_nx": None}


def describe(op: str, path: str | None) -> str:
    """How messages name a node: ``conv 'layer1.0.conv1'``, ``relu (module '3')``, ``add``."""
    if not path:
        return op
    if path.rsplit(".", 1)[-1].isdigit():
        return f"{op} (module '{path}')"
    return f"{op} '{path}'"
