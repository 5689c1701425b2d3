"""The block tree: a graph's nodes nested in its scopes, with costs summed per block.

Summaries and diagrams both show a network as this tree: op nodes are leaves, scopes
(block instances, ``seq``s, labelled groups) are inner items listing their contents in
execution order. Sibling scopes chained one after the other with the same structure
(same kind and name, input shape, ops, wiring, non-float attributes, and shapes,
parameters and MACs of every op) are *identical* and can be collapsed into one item
repeated N times -- ``bottleneck x 5``.

Costs per node come from the op registry: ``params`` and ``buffers`` of every node, and
``macs`` per sample. A training-only side output (an auxiliary classifier) keeps its
costs in its own items but is left out of the network's eval-mode totals (see
:func:`eval_nodes`).

>>> import archdsl
>>> g = archdsl.check("block b { conv(8, 3, padding=1) -> relu }\\n"
...                   "network n { input [8, 16, 16]; s: seq { b x 3 } }")
>>> root = block_tree(g)
>>> [(item.name, item.op, item.repeat) for item in collapse(root.children[0].children)]
[('s.0', 'b', 3)]
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from archdsl.ir.graph import Graph, OpNode, Scope
from archdsl.ops import get_op


@dataclass(frozen=True)
class Cost:
    """Parameters, buffer elements and multiply-accumulates (per sample) of a node."""

    params: int = 0
    buffers: int = 0
    macs: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.params + other.params, self.buffers + other.buffers, self.macs + other.macs
        )


def input_lists(graph: Graph) -> dict[str, list[str]]:
    """Every node's producers in port order (a producer read twice appears twice), all at
    once: one pass over the edges instead of ``graph.inputs`` per node."""
    ported: dict[str, list[tuple[int, str]]] = {nid: [] for nid in graph.nx.nodes}
    for src, dst, port in graph.nx.edges(data="port"):
        ported[dst].append((port, src))
    return {nid: [src for _, src in sorted(edges)] for nid, edges in ported.items()}


def node_cost(graph: Graph, node: OpNode, inputs: list[str] | None = None) -> Cost:
    """What one node costs, by its op's rules; the input and unknown ops cost nothing."""
    opdef = get_op(node.op)
    if opdef is None:
        return Cost()
    inputs = graph.inputs(node.id) if inputs is None else inputs
    shapes = [graph.node(i).shape for i in inputs]
    return Cost(
        opdef.count_params(node.attrs, shapes),
        opdef.count_buffers(node.attrs, shapes),
        opdef.macs(node.attrs, shapes, node.shape),
    )


def eval_nodes(graph: Graph) -> set[str]:
    """Ids of the nodes an eval-mode forward pass runs: the main output and its ancestors
    (side outputs, computed in training mode only, are left out)."""
    if not getattr(graph, "side_outputs", None):
        return set(graph.nx.nodes)
    keep = {graph.output}
    stack = [graph.output]
    while stack:
        for src in graph.nx.predecessors(stack.pop()):
            if src not in keep:
                keep.add(src)
                stack.append(src)
    return keep


@dataclass
class Item:
    """One row of the tree: an op node (``kind == "op"``) or a scope.

    ``name`` is the module path (for a merge, which has none: ``<scope>.add``, numbered
    ``add#2`` ... when a scope holds several); ``op`` the op or block name; ``depth`` 1 for
    the network's direct contents; ``output`` the id of the node whose value the item
    produces; ``nodes`` the ids of every node inside, in execution order; ``cost`` the sum
    over them; ``members`` the identical scopes a collapsed item stands for (``repeat``
    of them, the first being the item's own content).
    """

    kind: str  # "op", "block", "seq", "group" or "network"
    name: str
    op: str
    depth: int
    output: str
    input: str
    nodes: list[str]
    cost: Cost = field(default_factory=Cost)
    children: list[Item] = field(default_factory=list)
    node: OpNode | None = None
    scope: Scope | None = None
    signature: tuple[Any, ...] = ()
    members: list[Item] = field(default_factory=list)

    @property
    def repeat(self) -> int:
        return max(1, len(self.members))

    @property
    def last(self) -> Item:
        """The last of the repeats (the item itself when not collapsed)."""
        return self.members[-1] if self.members else self

    def walk(self) -> Iterator[Item]:
        """This item and everything below it, depth first, in execution order."""
        yield self
        for child in self.children:
            yield from child.walk()


def _int_attrs(node: OpNode) -> tuple[tuple[str, Any], ...]:
    """The attributes that shape a computation (kernel, stride, groups ...), leaving out
    rates and constants (dropout p, batch-norm eps and momentum), which are floats."""
    return tuple(
        (k, tuple(v) if isinstance(v, list) else v)
        for k, v in sorted(node.attrs.items())
        if not isinstance(v, float)
    )


def _relative(path: str | None, prefix: str) -> str | None:
    if path is None:
        return None
    return path[len(prefix) + 1 :] if prefix and path.startswith(prefix + ".") else path


def _signature(
    graph: Graph,
    scope: Scope,
    nodes: list[str],
    inputs: dict[str, list[str]],
    costs: dict[str, Cost],
) -> tuple[Any, ...]:
    """A scope's structure, independent of where it sits in the network: its
    ops, their relative paths, wiring, shapes, parameters and MACs, and every attribute but
    floats. Rates and constants (dropout and drop-path rates, batch-norm eps) do not
    count, so EfficientNet's blocks with rising stochastic-depth rates read ``mbconv x 3``."""
    position = {nid: i for i, nid in enumerate(nodes)}
    parts: list[Any] = [scope.kind, scope.name, graph.node(scope.input).shape]
    for nid in nodes:
        node = graph.node(nid)
        wiring = tuple(position.get(src, -1) for src in inputs[nid])
        parts.append(
            (
                _relative(node.path, scope.path),
                node.op,
                _int_attrs(node),
                node.shape,
                costs[nid],
                wiring,
            )
        )
    parts.append(position.get(scope.output, -1))
    return tuple(parts)


def _parent(path: str, scopes: dict[str, Scope]) -> str:
    """The innermost scope strictly enclosing ``path`` ("" for the network)."""
    while "." in path:
        path = path.rsplit(".", 1)[0]
        if path in scopes:
            return path
    return ""


def block_tree(graph: Graph) -> Item:
    """The network as a tree of items (the root has ``kind == "network"``)."""
    order = {n.id: i for i, n in enumerate(graph.nodes())}
    eval_ids = eval_nodes(graph)
    inputs = input_lists(graph)
    costs: dict[str, Cost] = {}
    root = Item("network", graph.name, graph.name, 0, graph.output, "", [])
    items: dict[str, Item] = {"": root}
    for path, scope in graph.scopes.items():
        items[path] = Item(
            scope.kind, path, scope.name, 0, scope.output, scope.input, [], scope=scope
        )
    parents = {path: _parent(path, graph.scopes) for path in graph.scopes}
    start: dict[str, float] = {}  # scope -> position of its first node, for ordering
    merges: dict[tuple[str, str], int] = {}
    leaves: list[tuple[str, Item]] = []
    for node in graph.nodes():
        if not inputs[node.id]:
            continue  # the network input
        cost = costs[node.id] = node_cost(graph, node, inputs[node.id])
        name = node.path
        if name is None:
            count = merges[(node.scope, node.op)] = merges.get((node.scope, node.op), 0) + 1
            base = f"{node.scope}.{node.op}" if node.scope else node.op
            name = base if count == 1 else f"{base}#{count}"
        leaf = Item("op", name, node.op, 0, node.id, "", [node.id], cost, node=node)
        leaves.append((node.scope if node.scope in graph.scopes else "", leaf))
        enclosing = node.scope
        while enclosing in graph.scopes:
            items[enclosing].nodes.append(node.id)
            items[enclosing].cost += cost
            start.setdefault(enclosing, order[node.id])
            enclosing = parents.get(enclosing, "")
        root.nodes.append(node.id)
        if node.id in eval_ids:
            root.cost += cost
        else:
            root.cost += replace(cost, macs=0)
    children: dict[str, list[tuple[float, Item]]] = {}
    for scope_path, leaf in leaves:
        children.setdefault(scope_path, []).append((order[leaf.output], leaf))
    for path, scope in graph.scopes.items():
        key = start.get(path, order[scope.input] + 0.5)
        children.setdefault(parents[path], []).append((key, items[path]))
    for path, item in items.items():
        item.children = [c for _, c in sorted(children.get(path, []), key=lambda kc: kc[0])]
        if item.scope is not None:
            item.signature = _signature(graph, item.scope, item.nodes, inputs, costs)
    _set_depth(root, 0)
    return root


def _set_depth(item: Item, depth: int) -> None:
    item.depth = depth
    for child in item.children:
        _set_depth(child, depth + 1)


def collapse(items: list[Item]) -> list[Item]:
    """Siblings with consecutive identical scopes merged into one item per run, its
    ``members`` the run and its cost the run's total. Op items are never merged."""
    out: list[Item] = []
    for item in items:
        prev = out[-1] if out else None
        if (
            prev is not None
            and item.kind != "op"
            and prev.kind == item.kind
            and prev.signature == item.signature
            and item.input == prev.output  # a chain, not parallel branches
        ):
            if not prev.members:
                prev = out[-1] = replace(prev, members=[prev])
            prev.members.append(item)
            prev.cost += item.cost
            prev.output = item.output
            continue
        out.append(item)
    return out


_NUMBERED = re.compile(r"^(.*?)(\d+)$")


def span_name(first: str, last: str) -> str:
    """The name of a run of repeats for display: ``layer3.1-5``, ``stage.block2-4``, else
    ``first .. last``; ``first`` alone when ``first == last``."""
    if first == last:
        return first
    head, _, tail = first.rpartition(".")
    last_head, _, last_tail = last.rpartition(".")
    a, b = _NUMBERED.match(tail), _NUMBERED.match(last_tail)
    if a and b and a.group(1) == b.group(1) and last_head == head:
        return f"{first}-{b.group(2)}"
    return f"{first} .. {last}"
