"""A layer scale folded into the linear layer or convolution that computes what it scales."""

from __future__ import annotations

import operator
from typing import cast

import torch
from torch import fx, nn

from archdsl.optimize.graphs import _finish, graph_modules

SCALABLE = (nn.Linear, nn.Conv2d)  # channel_linear's ChannelLinear is an nn.Linear
"""Layers whose output channels a per-channel factor scales through their weight and bias."""


def fold_layer_scale(module: nn.Module) -> nn.Module:
    """Fold each layer scale (``x * gamma``, ``gamma`` a parameter of the scope) into the
    linear layer or convolution whose output ``x`` is, directly or as what a child scope
    returns, when that output feeds nothing else: ``gamma * (W x + b) == (gamma W) x + gamma
    b``, up to rounding. ConvNeXt's blocks end so (the MLP's second layer, then the layer
    scale); the scaled weights replace the parameter, and a multiplication over the whole
    map goes.

    >>> import torch, archdsl
    >>> m = archdsl.compile("network t { input [4, 3, 3]; fc: channel_linear(4) -> g: layer_scale(0.5) }")
    >>> x = torch.randn(1, 4, 3, 3); y = m(x)
    >>> m = fold_layer_scale(m.eval())
    >>> [n for n, _ in m.named_parameters()], torch.allclose(m(x), y)
    (['fc.weight', 'fc.bias'], True)
    """
    for gm in graph_modules(module):
        changed = False
        for node in list(gm.graph.nodes):
            factors = _factors(gm, node)
            if factors is None:
                continue
            x = node.args[0]
            layer = _producer(gm, x) if isinstance(x, fx.Node) and len(x.users) == 1 else None
            if layer is None or layer.weight.shape[0] != factors.numel():
                continue
            weight, bias = layer.weight, cast("torch.Tensor | None", layer.bias)
            with torch.no_grad():
                gamma = factors.detach().reshape(-1)
                weight.mul_(gamma.view(-1, *[1] * (weight.dim() - 1)))
                if bias is not None:
                    bias.mul_(gamma)
            read = node.args[1]
            node.replace_all_uses_with(x)
            gm.graph.erase_node(node)
            _drop_read(gm, read)
            changed = True
        if changed:
            _finish(gm)
    return module


def _factors(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor | None:
    """The parameter a node multiplies by, where it is ``x * self.name`` or ``x *
    self.name.view(-1, 1, 1)`` (what the torch backend makes of a layer scale)."""
    if node.op != "call_function" or node.target is not operator.mul or len(node.args) != 2:
        return None
    read = node.args[1]
    if isinstance(read, fx.Node) and read.op == "call_method" and read.target == "view":
        read = read.args[0]
    if not isinstance(read, fx.Node) or read.op != "get_attr" or len(read.users) != 1:
        return None
    value = getattr(gm, str(read.target), None)
    return value if isinstance(value, nn.Parameter) else None


def _producer(gm: fx.GraphModule, node: fx.Node) -> nn.Linear | nn.Conv2d | None:
    """The linear layer or convolution that computes ``node``, looking into the child
    scopes that return it (a layer whose output feeds anything else is not one)."""
    if node.op != "call_module":
        return None
    sub = gm.get_submodule(str(node.target))
    if isinstance(sub, SCALABLE):
        return sub
    if not isinstance(sub, fx.GraphModule):
        return None
    (returned,) = (n.args[0] for n in sub.graph.nodes if n.op == "output")
    if not isinstance(returned, fx.Node) or len(returned.users) != 1:
        return None
    return _producer(sub, returned)


def _drop_read(gm: fx.GraphModule, read: fx.Node) -> None:
    """Erase the reads of a folded parameter (a view, then the attribute) and the
    parameter itself."""
    while not read.users:
        source = read.args[0] if read.op == "call_method" else None
        if read.op == "get_attr":
            delattr(gm, str(read.target))
        gm.graph.erase_node(read)
        if not isinstance(source, fx.Node):
            return
        read = source
