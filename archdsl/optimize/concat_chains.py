"""Chains of channel concatenations (dense blocks) written into one tensor."""

from __future__ import annotations

import operator

import torch
from torch import fx, nn

from archdsl.optimize.graphs import ELEMENTWISE, _finish, submodule


def _channel_cat(node: fx.Node) -> bool:
    """Whether ``node`` is ``torch.cat([a, b], 1)``: two tensors joined along channels."""
    if node.op != "call_function" or node.target is not torch.cat or not node.args:
        return False
    pieces = node.args[0]
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    return (
        isinstance(pieces, (list, tuple))
        and len(pieces) == 2
        and all(isinstance(p, fx.Node) for p in pieces)
        and isinstance(dim, int)
        and dim == 1
    )


def _channels_of(gm: fx.GraphModule, node: fx.Node) -> int | None:
    """How many channels ``node``'s value has, where its producer says so: a convolution,
    possibly through elementwise activations, or a channel slice of such a value (a merged
    convolution's). Never a view of another tensor's channels, so never of a chain's."""
    while node.op == "call_module" and len(node.args) == 1 and not node.kwargs:
        sub = submodule(gm, node)
        if isinstance(sub, nn.Conv2d):
            return sub.out_channels
        if not isinstance(sub, ELEMENTWISE):
            return None
        node = node.args[0]  # type: ignore[assignment]
    if node.op == "call_function" and node.target is torch.narrow and node.args[1] == 1:
        source, length = node.args[0], node.args[3]
        if isinstance(length, int) and _channels_of(gm, source) is not None:  # type: ignore[arg-type]
            return length
    return None


_IN_PLACE_OPERATORS = (operator.iadd, operator.isub, operator.imul, operator.itruediv)


def _may_write_its_input(gm: fx.GraphModule, node: fx.Node) -> bool:
    """Whether ``node`` may overwrite a tensor it reads (``ReLU(inplace=True)``, ``+=``,
    a method or function named with a trailing underscore)."""
    if node.op == "call_module":
        return bool(getattr(submodule(gm, node), "inplace", False))
    if node.op == "call_function" and node.target in _IN_PLACE_OPERATORS:
        return True
    name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
    return node.op in ("call_method", "call_function") and name.endswith("_")


def _channel_buffer(x: torch.Tensor, y: torch.Tensor, extra: int) -> torch.Tensor:
    """``x`` with ``extra`` zero channels after its own, in ``x``'s memory format and the
    dtype ``torch.cat([x, y])`` would have: the tensor a chain of concatenations that
    starts with ``x`` and ``y`` is written into."""
    dtype = torch.promote_types(x.dtype, y.dtype)
    pad = (0, 0) * (x.dim() - 2) + (0, extra)
    nhwc = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if nhwc else torch.contiguous_format
    return nn.functional.pad(x.to(dtype), pad).contiguous(memory_format=layout)


def _append_channels(buffer: torch.Tensor, before: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``torch.cat([before, y], 1)``, where ``before`` is the first channels of
    ``buffer``: ``y`` is written into the channels after them, in place, and the result is
    a view of ``buffer``."""
    start, end = before.shape[1], before.shape[1] + y.shape[1]
    channels = torch.arange(start, end, device=buffer.device)
    # index_put_, not a slice's copy_: inductor writes it in place into the buffer it keeps
    torch.ops.aten.index_put_(buffer, [None, channels], y.to(buffer.dtype))
    return buffer.narrow(1, 0, end)


def concat_chains_in_place(module: nn.Module) -> nn.Module:
    """Write each chain of channel concatenations, ``x1 = cat([x0, y0])``,
    ``x2 = cat([x1, y1])``, ..., into one tensor: a DenseNet block, whose layers each
    concatenate their output to all before it. The tensor is allocated once with room for
    every ``y`` (its channels counted from the convolutions that make them), each ``y``
    is written into its channels in place, and each ``x`` is a view of the first channels.
    Where each ``cat`` copies everything so far once more (a block's copying grows with the
    square of its depth), only the new channels are written. Compiled, inductor writes each
    ``y`` in the kernel that normalises the next layer's input (densenet121, in one
    process: 0.88 of the time at batch 8, 0.92 at batch 1, docs/performance.md); in eager
    mode it is slower (1.21 of the time at batch 8), so it is not one of :data:`RULES`.
    Only chains of two or more, whose views nothing overwrites. The concatenated values are
    the same copies; what reads them reads a view (in eager mode a batch norm may then
    round differently in the last bit).

    >>> import archdsl
    >>> from archdsl.optimize import inline_scopes
    >>> net = archdsl.compile("network t { input [3, 4, 4]; "
    ...     "concat { (); a: conv(2, 1) } -> concat { (); b: conv(5, 1) } }")
    >>> fast = concat_chains_in_place(inline_scopes(net))
    >>> [n.target.__name__ for n in fast.graph.nodes if n.op == "call_function"]
    ['_channel_buffer', '_append_channels', '_append_channels']
    """
    if not isinstance(module, fx.GraphModule):
        return module
    gm, graph = module, module.graph
    cats = [n for n in graph.nodes if _channel_cat(n)]
    extended: dict[fx.Node, list[fx.Node]] = {}  # a cat -> the cats that extend it
    for node in cats:
        extended.setdefault(node.args[0][0], []).append(node)  # type: ignore[index]
    chains: list[list[fx.Node]] = []
    for node in cats:
        first = node.args[0][0]  # type: ignore[index]
        if _channel_cat(first) and len(extended[first]) == 1:
            continue  # the chain it continues starts earlier
        chain = [node]
        while len(extended.get(chain[-1], [])) == 1:
            chain.append(extended[chain[-1]][0])
        chains.append(chain)
    rewritten = 0
    for chain in chains:
        ys = [node.args[0][1] for node in chain]  # type: ignore[index]
        counts = [_channels_of(gm, y) for y in ys]  # type: ignore[arg-type]
        users = [u for node in chain for u in node.users]
        if len(chain) < 2 or None in counts or any(_may_write_its_input(gm, u) for u in users):
            continue
        before = chain[0].args[0][0]  # type: ignore[index]
        with graph.inserting_before(chain[0]):
            buffer = graph.call_function(_channel_buffer, (before, ys[0], sum(counts)))  # type: ignore[arg-type]
        for node, y in zip(chain, ys):
            with graph.inserting_before(node):
                before = graph.call_function(_append_channels, (buffer, before, y))
            node.replace_all_uses_with(before)
        for node in reversed(chain):
            graph.erase_node(node)
        rewritten += 1
    if rewritten:
        _finish(gm)
    return module
