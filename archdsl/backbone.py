"""Backbones: a network cut down to the feature maps a detector or segmenter reads.

:func:`prune` keeps the requested outputs and their ancestors, nothing computed after them
(a ResNet cut at ``layer4`` has no ``avgpool`` or ``fc``). The torch backend then builds a
module whose ``forward`` returns ``{name: tensor}`` in the order asked for. Module paths do
not change, so the pruned module's ``state_dict`` keys are a subset of the full
network's and its weights load with ``strict=False``.

An output is named by a module path: a scope (block instance, ``seq``, labelled group,
e.g. ``layer3``) or an op (``layer3.5.conv2``), or by a label of no module (``p3: ()``, a
feature pyramid's level). A scope that is only partly kept, or that
holds a requested output inside it, is dissolved: its ops are built directly into the
parent (under the same dotted paths), so an inner value can be returned.

>>> import archdsl
>>> g = archdsl.load_graph("resnet18")
>>> small, names = prune(g, ["layer2", "layer3"])
>>> "fc" in {n.path for n in small.nodes()}, list(names)
(False, ['layer2', 'layer3'])
>>> [(f.name, f.shape, f.stride) for f in feature_info(g, ["layer2", "layer4"])]
[('layer2', (128, 28, 28), 8), ('layer4', (512, 7, 7), 32)]
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archdsl.errors import ArchNameError, Span
from archdsl.ir import Graph
from archdsl.ir.graph import Shape


@dataclass(frozen=True)
class FeatureInfo:
    """One backbone output: its name, per-sample shape ``(C, H, W)`` and effective stride
    in input pixels (an int, ``[h, w]`` when the axes differ, None for flat features)."""

    name: str
    shape: Shape
    stride: Any

    @property
    def channels(self) -> int:
        return self.shape[0]


Outputs = Sequence[str] | Mapping[str, str]
"""Module paths (``["layer2", "layer3"]``), each returned under its own name, or
``{name: path}`` (``{"0": "fpn.layer_blocks.0", "pool": "pool"}``, the keys torchvision's
detection heads read), returned under those names."""


def _named(outputs: Outputs) -> dict[str, str]:
    """``{name: module path}`` of each requested output."""
    if isinstance(outputs, str):
        return {outputs: outputs}
    if isinstance(outputs, Mapping):
        return dict(outputs)
    return {path: path for path in outputs}


def output_nodes(graph: Graph, outputs: Outputs) -> dict[str, str]:
    """``{output name: id of the node whose value it is}``; ArchNameError for a path that
    is neither a scope nor an op's module path."""
    named = _named(outputs)
    if not named:
        raise ArchNameError("outputs: name at least one module path", _span(graph))
    by_path = {n.path: n.id for n in graph.nodes() if n.path is not None}
    result: dict[str, str] = {}
    for key, name in named.items():
        if name in graph.scopes:
            result[key] = graph.scopes[name].output
        elif name in by_path:
            result[key] = by_path[name]
        elif name in graph.points:
            result[key] = graph.points[name]
        else:
            from archdsl.elaborate.values import did_you_mean

            known = [*graph.scopes, *by_path, *graph.points]
            raise ArchNameError(
                f"network '{graph.name}' has no module '{name}' to output"
                f"{did_you_mean(name, known)}",
                _span(graph),
            )
    return result


def prune(graph: Graph, outputs: Outputs) -> tuple[Graph, dict[str, str]]:
    """A copy of ``graph`` with only the requested outputs and their ancestors, and the
    map from output name to node id. Side outputs are dropped (unless asked for, when they
    become ordinary outputs); the graph's ``output`` is the last requested node."""
    wanted = output_nodes(graph, outputs)
    keep: set[str] = set()
    stack = list(wanted.values())
    while stack:
        nid = stack.pop()
        if nid not in keep:
            keep.add(nid)
            stack.extend(graph.nx.predecessors(nid))
    order = [n.id for n in graph.nodes()]
    partial = _partial_scopes(graph, keep)
    pruned = copy.copy(graph)
    pruned.nx = graph.nx.subgraph([nid for nid in order if nid in keep]).copy()
    pruned.output = max(wanted.values(), key=order.index)
    pruned.side_outputs = {}
    pruned.points = {name: nid for name, nid in graph.points.items() if nid in keep}
    pruned.output_fields = {}
    pruned.scopes = {path: copy.copy(scope) for path, scope in graph.scopes.items()}
    paths = _named(outputs).values()
    pruned.open_scopes({p for p in graph.scopes if p in partial or _holds_output(p, paths)})
    return pruned, wanted


def feature_info(graph: Graph, outputs: Outputs) -> list[FeatureInfo]:
    """Name, shape and effective stride of each requested output (no torch)."""
    from archdsl.analysis.receptive_field import receptive_fields

    wanted = output_nodes(graph, outputs)
    fields = receptive_fields(graph)
    result = []
    for name, nid in wanted.items():
        rf = fields[nid]
        stride = rf.report()[1] if rf is not None else None
        result.append(FeatureInfo(name, graph.node(nid).shape, stride))
    return result


def shape_stride(input_shape: Shape, shape: Shape) -> tuple[Any, str]:
    """The stride of a feature map relative to the network input, from the two shapes
    alone (input size / output size per axis), and a note when it is not one clean number.

    The stride is an int when both axes divide evenly and agree, ``[h, w]`` when they
    differ, a ratio rounded to three decimals on an axis that does not divide (where the
    receptive-field analysis' effective stride is the better figure), and None for flat
    features. The note is empty for a clean int.

    >>> shape_stride((3, 224, 224), (512, 28, 28))
    (8, '')
    >>> shape_stride((3, 299, 299), (288, 35, 35))
    (8.543, '299/35 does not divide')
    >>> shape_stride((3, 64, 32), (8, 8, 8))
    ([8, 4], 'H and W strides differ')
    """
    if len(input_shape) != 3 or len(shape) != 3:
        return None, "flat features: no spatial stride"
    axes = list(zip(input_shape[1:], shape[1:]))
    strides = [i // o if i % o == 0 else round(i / o, 3) for i, o in axes]
    notes = []
    if strides[0] != strides[1]:
        notes.append("H and W strides differ")
    uneven = list(dict.fromkeys(f"{i}/{o}" for i, o in axes if i % o))  # H first
    if uneven:
        notes.append(f"{' and '.join(uneven)} {'does' if len(uneven) == 1 else 'do'} not divide")
    return (strides[0] if strides[0] == strides[1] else strides), "; ".join(notes)


def backbone_strides(graph: Graph, outputs: Outputs) -> dict[str, Any]:
    """``{output name: effective stride}``, e.g. ``{"layer2": 8, "layer3": 16}``."""
    return {f.name: f.stride for f in feature_info(graph, outputs)}


def _partial_scopes(graph: Graph, keep: set[str]) -> set[str]:
    """Paths of the scopes that hold a node not kept (their ancestors are partial too)."""
    partial: set[str] = set()
    for node in graph.nodes():
        scope = node.scope
        if node.id in keep or scope in partial:
            continue
        while scope:
            partial.add(scope)
            scope = scope.rsplit(".", 1)[0] if "." in scope else ""
    return partial


def _holds_output(path: str, wanted: Iterable[str]) -> bool:
    prefix = path + "."
    return any(name.startswith(prefix) for name in wanted)


def _span(graph: Graph) -> Span:
    return graph.span or Span("<network>", 0, 0)
