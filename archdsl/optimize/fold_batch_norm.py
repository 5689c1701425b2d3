"""Batch norm folded into the convolution or linear layer before it."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from archdsl.backends.torch_modules import FrozenBatchNorm2d
from archdsl.optimize.graphs import _finish, graph_modules, submodule


def fuse_conv_transpose_bn_eval(conv: nn.ConvTranspose2d, bn: nn.BatchNorm2d) -> nn.Module:
    """A copy of ``conv`` that computes ``bn(conv(x))``. Its weight is ``[in, out / groups,
    kh, kw]``: output channel ``g * out / groups + j`` is column ``j`` of group ``g``'s rows,
    where torch's ``fuse_conv_bn_eval(transpose=True)`` assumes one group (and fails with more)."""
    mean, var = bn.running_mean, bn.running_var
    assert mean is not None and var is not None  # fold_batch_norm folds tracked statistics
    fused = copy.deepcopy(conv)
    scale = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        scale = bn.weight * scale
    bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
    shift = (bias - mean) * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    groups = conv.groups
    weight = conv.weight.unflatten(0, (groups, -1)) * scale.view(groups, 1, -1, 1, 1)
    fused.weight = nn.Parameter(weight.flatten(0, 1), conv.weight.requires_grad)
    fused.bias = nn.Parameter(shift, conv.weight.requires_grad)
    return fused


FOLDABLE: tuple[tuple[type[nn.Module], type[nn.Module], Callable[..., nn.Module]], ...] = (
    (nn.Conv2d, nn.BatchNorm2d, fuse_conv_bn_eval),
    (nn.Conv2d, FrozenBatchNorm2d, fuse_conv_bn_eval),  # its statistics and affine as bn's
    (nn.ConvTranspose2d, nn.BatchNorm2d, fuse_conv_transpose_bn_eval),
    (nn.Linear, nn.BatchNorm1d, fuse_linear_bn_eval),
)


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """Fold each eval-mode batch norm into the convolution (transposed too) or linear layer
    before it, when that layer's output feeds nothing else: ``bn(conv(x)) == conv'(x)``
    with the weight scaled by ``gamma / sqrt(var + eps)`` and the bias shifted to match. The fold happens
    within one scope (a block's conv and its bn), which is where the specs put them.

    >>> import torch, archdsl
    >>> m = archdsl.compile("network t { input [3, 6, 6]; c: conv(4, 3) -> b: bn }").eval()
    >>> x = torch.randn(1, 3, 6, 6); y = m(x)
    >>> m = fold_batch_norm(m)
    >>> [n for n, _ in m.named_children()], torch.allclose(m(x), y, atol=1e-6)
    (['c'], True)
    """
    for gm in graph_modules(module):
        changed = False
        for node in list(gm.graph.nodes):
            if node.op != "call_module" or len(node.args) != 1:
                continue
            prev = node.args[0]
            if not isinstance(prev, fx.Node) or prev.op != "call_module" or len(prev.users) != 1:
                continue
            bn, layer = submodule(gm, node), submodule(gm, prev)
            for layer_type, bn_type, fuse in FOLDABLE:
                if (
                    type(layer) is layer_type
                    and type(bn) is bn_type
                    and not bn.training
                    and getattr(bn, "track_running_stats", True)
                    and not layer.training
                ):
                    gm.set_submodule(str(prev.target), fuse(layer, bn))
                    node.replace_all_uses_with(prev)
                    gm.graph.erase_node(node)
                    changed = True
                    break
        if changed:
            _finish(gm)
    return module
