"""Sibling convolutions of one input merged into one."""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import fx, nn

from archdsl.optimize.graphs import ELEMENTWISE, _finish, submodule

_HYPER = ("kernel_size", "stride", "padding", "dilation", "padding_mode")


def _same_activation(a: nn.Module, b: nn.Module) -> bool:
    return type(a) is type(b) and isinstance(a, ELEMENTWISE) and a.extra_repr() == b.extra_repr()


def _mergeable(gm: fx.GraphModule, node: fx.Node) -> tuple | None:
    """What a convolution must share with its siblings to merge with them (its input and
    hyperparameters), or None when it cannot: it is not a plain ungrouped ``nn.Conv2d``,
    or its output feeds anything but one elementwise activation."""
    if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return None
    conv = submodule(gm, node)
    if type(conv) is not nn.Conv2d or conv.groups != 1 or len(node.users) != 1:
        return None
    (user,) = node.users
    if user.op != "call_module" or not isinstance(submodule(gm, user), ELEMENTWISE):
        return None
    hyper = tuple(getattr(conv, name) for name in _HYPER)
    return (node.args[0], *hyper, conv.bias is not None, conv.weight.dtype, conv.weight.device)


def merge_sibling_convs(module: nn.Module) -> nn.Module:
    """Merge convolutions of the same input, with the same hyperparameters and the same
    activation after them, into one convolution with their filters stacked, whose output
    is sliced by channel: ``[relu(conv_a(x)), relu(conv_b(x))] == split(relu(conv_ab(x)))``,
    channel for channel. An inception block's 1x1 branch and its 1x1 reductions become one
    oneDNN call instead of three (googlenet at batch 1, compiled: 0.96 of the time; eager
    PyTorch would copy each slice before the next convolution). Works on one graph (after :func:`inline_scopes`); each
    merged convolution is named ``merged{i}`` after its members' common scope, and its
    members leave the state_dict.

    >>> import archdsl
    >>> net = archdsl.compile("network t { input [3, 4, 4]; "
    ...     "concat { (a: conv(2, 1) -> relu); (b: conv(3, 1) -> relu); (c: conv(4, 3, padding=1) -> relu) } }")
    >>> [(n, m.out_channels) for n, m in merge_sibling_convs(net).named_children() if isinstance(m, nn.Conv2d)]
    [('c', 4), ('merged0', 5)]
    """
    if not isinstance(module, fx.GraphModule):
        return module
    gm, graph = module, module.graph
    groups: dict[tuple, list[fx.Node]] = {}
    for node in graph.nodes:
        key = _mergeable(gm, node)
        if key is not None:
            groups.setdefault(key, []).append(node)
    merged = 0
    for nodes in groups.values():
        acts = [next(iter(n.users)) for n in nodes]
        first_act = submodule(gm, acts[0])
        nodes = [n for n, a in zip(nodes, acts) if _same_activation(submodule(gm, a), first_act)]
        if len(nodes) < 2:
            continue
        convs = [cast(nn.Conv2d, submodule(gm, n)) for n in nodes]
        hyper: dict[str, Any] = {name: getattr(convs[0], name) for name in _HYPER}
        out_channels = sum(c.out_channels for c in convs)
        bias = convs[0].bias is not None
        conv = nn.Conv2d(convs[0].in_channels, out_channels, bias=bias, device="meta", **hyper)
        layout = (
            torch.channels_last
            if convs[0].weight.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        weight = torch.cat([c.weight.detach() for c in convs]).contiguous(memory_format=layout)
        conv.weight = nn.Parameter(weight, requires_grad=convs[0].weight.requires_grad)
        biases = [c.bias for c in convs if c.bias is not None]
        if biases:
            stacked = torch.cat([b.detach() for b in biases])
            conv.bias = nn.Parameter(stacked, requires_grad=biases[0].requires_grad)
        conv.train(convs[0].training)
        scope = _common_scope([str(n.target) for n in nodes])
        while hasattr(gm.get_submodule(scope), f"merged{merged}"):
            merged += 1
        target = f"{scope}.merged{merged}" if scope else f"merged{merged}"
        gm.add_submodule(target, conv)
        merged += 1
        with graph.inserting_before(nodes[0]):
            out = graph.call_module(target, (nodes[0].args[0],))
            out = graph.call_module(str(acts[0].target), (out,))
        start = 0
        for node, member in zip(nodes, convs):
            with graph.inserting_before(nodes[0]):
                piece = graph.call_function(torch.narrow, (out, 1, start, member.out_channels))
            start += member.out_channels
            next(iter(node.users)).replace_all_uses_with(piece)
        for node in nodes:
            graph.erase_node(next(iter(node.users)))
            graph.erase_node(node)
    if merged:
        _finish(gm)
    return module


def _common_scope(targets: list[str]) -> str:
    parts = [t.split(".")[:-1] for t in targets]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)
