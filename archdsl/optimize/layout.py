"""The channels-last (NHWC) layout, and its undoing for formats without a layout."""

from __future__ import annotations

import torch
from torch import fx, nn

from archdsl.optimize.graphs import bypass


def _layout_change(node: fx.Node) -> bool:
    """Whether ``node`` is the conversion of the input to channels-last that
    :func:`channels_last` inserts."""
    return (
        node.op == "call_method"
        and node.target == "contiguous"
        and node.kwargs.get("memory_format") == torch.channels_last
        and isinstance(node.args[0], fx.Node)
        and node.args[0].op == "placeholder"
    )


def channels_last(module: nn.Module) -> nn.Module:
    """Store 4-d weights channels-last (NHWC) and convert the input to it on entry: oneDNN's
    convolutions run faster on that layout, and every op here accepts either layout, so
    values are unchanged.

    >>> import torch, archdsl
    >>> m = channels_last(archdsl.compile("network t { input [3, 4, 4]; c: conv(2, 1) }"))
    >>> m.c.weight.is_contiguous(memory_format=torch.channels_last)
    True
    """
    module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # torch's stubs lack it
    if not isinstance(module, fx.GraphModule):
        return module
    graph = module.graph
    placeholder = next(n for n in graph.nodes if n.op == "placeholder")
    if any(_layout_change(n) for n in placeholder.users):
        return module  # already converted
    with graph.inserting_after(placeholder):
        converted = graph.call_method(
            "contiguous", (placeholder,), {"memory_format": torch.channels_last}
        )
    placeholder.replace_all_uses_with(converted, delete_user_cb=lambda n: n is not converted)
    module.recompile()
    return module


def default_layout(module: nn.Module) -> nn.Module:
    """Undo :func:`channels_last`: the weights in the default (contiguous) layout, the
    input no longer converted. For formats without a memory layout (ONNX), whose exporters
    need not see one: torch 2.9's, given a channels-last network, cannot keep the batch
    dimension dynamic down to 1.

    >>> import torch, archdsl
    >>> m = default_layout(channels_last(archdsl.compile("network t { input [3, 4, 4]; c: conv(2, 1) }")))
    >>> m.c.weight.is_contiguous(), "contiguous" in m.code
    (True, False)
    """
    module.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
    if isinstance(module, fx.GraphModule):
        bypass(module, _layout_change)
    return module
