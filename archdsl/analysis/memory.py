"""Memory estimates from shapes alone: parameters, activations of a forward pass, training.

All figures are bytes at a batch size and dtype (``float32`` is 4 bytes an element):

- ``param_bytes``: every parameter; ``buffer_bytes``: every buffer element (batch-norm
  running statistics; its scalar step counter is counted at the same width).
- ``activation_bytes``: the peak of live activations in an inference forward pass
  (``torch.no_grad()``), nodes run in order and each value freed after its last use; the
  network input counts. Views allocate nothing: ``identity``, ``flatten`` and, in eval
  mode, ``dropout``. Convolution workspaces and allocator rounding are not modelled, so
  this is a lower bound on what the allocator reports.
- ``saved_activation_bytes``: every node's output, the input included (``flatten`` and
  ``identity`` excepted): about what autograd keeps for the backward pass of one
  training step, side outputs (auxiliary classifiers) included.
- ``training_bytes``: ``2 * param_bytes`` (weights and their gradients) ``+ buffer_bytes
  + saved_activation_bytes``. Optimizer state is not included: add ``param_bytes`` for
  SGD with momentum, ``2 * param_bytes`` for Adam.

>>> import archdsl
>>> g = archdsl.check("network n { input [1, 4, 4]; conv(2, 1) -> relu -> flatten }")
>>> peak_activation_elements(g, eval_only=True), saved_activation_elements(g)
(64, 80)
"""

from __future__ import annotations

import math

from archdsl.analysis.blocks import eval_nodes, input_lists
from archdsl.ir.graph import Graph

DTYPE_BYTES: dict[str, int] = {
    "float64": 8,
    "double": 8,
    "fp64": 8,
    "float32": 4,
    "float": 4,
    "fp32": 4,
    "float16": 2,
    "half": 2,
    "fp16": 2,
    "bfloat16": 2,
    "bf16": 2,
    "int8": 1,
    "uint8": 1,
}
"""Bytes per element of the dtypes summaries accept (torch's names and common aliases)."""

_VIEWS_EVAL = frozenset({"identity", "flatten", "dropout", "channel_slice"})
_VIEWS_TRAIN = frozenset({"identity", "flatten", "channel_slice"})


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of ``dtype``; ``torch.`` prefixes are accepted. ValueError names
    the accepted dtypes."""
    name = dtype.lower().removeprefix("torch.")
    if name not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; one of: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[name]


def peak_activation_elements(graph: Graph, eval_only: bool = True) -> int:
    """Peak number of activation elements alive at once in a forward pass, per sample.

    Values that alias their input (views) share its storage; a storage is freed once every
    value on it has been consumed for the last time, except the network's output.
    """
    run = eval_nodes(graph) if eval_only else {n.id for n in graph.nodes()}
    views = _VIEWS_EVAL if eval_only else _VIEWS_TRAIN
    storage: dict[str, str] = {}  # node id -> id of the node that allocated its storage
    readers: dict[str, int] = {}  # storage -> uses still to come
    size: dict[str, int] = {}
    nodes = [n for n in graph.nodes() if n.id in run]
    inputs = input_lists(graph)
    for node in nodes:
        if inputs[node.id] and node.op in views:
            storage[node.id] = storage[inputs[node.id][0]]
        else:
            storage[node.id] = node.id
            size[node.id] = math.prod(node.shape)
            readers[node.id] = 0
        for src in inputs[node.id]:  # every read, a tensor read twice counts twice
            readers[storage[src]] += 1
    readers[storage[graph.output]] += 1  # the output outlives the pass
    live = peak = 0
    for node in nodes:
        if storage[node.id] == node.id:
            live += size[node.id]
            peak = max(peak, live)
        for src in inputs[node.id]:
            owner = storage[src]
            readers[owner] -= 1
            if readers[owner] == 0:
                live -= size[owner]
    return peak


def saved_activation_elements(graph: Graph) -> int:
    """Elements of every value a training step computes (views excepted), per sample."""
    return sum(
        math.prod(node.shape)
        for node in graph.nodes()
        if not (graph.nx.in_degree(node.id) and node.op in _VIEWS_TRAIN)
    )
