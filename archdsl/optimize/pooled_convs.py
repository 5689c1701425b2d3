"""1x1 convolutions of globally pooled maps written as sums, for inductor to fuse."""

from __future__ import annotations

import torch
from torch import fx, nn

from archdsl.backends.torch_modules import GlobalPool2d
from archdsl.optimize.graphs import ELEMENTWISE, graph_modules, submodule

GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class PooledConv2d(nn.Conv2d):
    """A 1x1 convolution of a map known to be 1x1 (a squeeze-and-excitation gate's, after
    global pooling), written as a broadcast product and a sum over input channels. Equal to
    the convolution up to the order of the sum; under inductor it becomes a loop fused with
    its neighbours where the convolution would stay a oneDNN call (see
    :func:`pooled_convs_as_sums`). The parameters are the convolution's, so the state_dict
    is too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (x.flatten(1)[:, None, :] * self.weight.flatten(1)).sum(-1)
        if self.bias is not None:
            out = out + self.bias
        return out[:, :, None, None]


def _is_global_pool(module: nn.Module) -> bool:
    """Whether ``module`` maps (N, C, H, W) to (N, C, 1, 1)."""
    if isinstance(module, GlobalPool2d):
        return not module.flatten
    return isinstance(module, GLOBAL_POOLS) and module.output_size in (1, (1, 1))


def pooled_convs_as_sums(module: nn.Module) -> nn.Module:
    """Turn each 1x1 convolution (groups 1) whose input is a global pooling's 1x1 map, or
    an elementwise function of one, into a :class:`PooledConv2d`. Not one of :data:`RULES`:
    in eager mode it costs time (efficientnet_b0 at batch 1: 1.06 times as long), but
    :func:`compile_for_inference` applies it, so that inductor fuses a
    squeeze-and-excitation gate into a few loops instead of calling oneDNN twice for
    products of a few thousand multiplications (efficientnet_b0 at batch 1: 0.875 of the
    time, docs/performance.md).

    >>> import archdsl
    >>> net = archdsl.compile("network t { input [3, 8, 8]; mul { (); (global_avgpool -> "
    ...     "a: conv(2, 1) -> relu -> b: conv(3, 1) -> sigmoid) } -> c: conv(4, 1) }")
    >>> [type(m).__name__ for m in pooled_convs_as_sums(net).modules() if isinstance(m, nn.Conv2d)]
    ['PooledConv2d', 'PooledConv2d', 'Conv2d']
    """
    for gm in graph_modules(module):
        pooled: set[fx.Node] = set()  # nodes whose value is [N, C, 1, 1]
        for node in gm.graph.nodes:
            if node.op != "call_module":
                continue
            sub = submodule(gm, node)
            source = node.args[0] if len(node.args) == 1 and not node.kwargs else None
            if _is_global_pool(sub):
                pooled.add(node)
            elif source not in pooled:
                continue
            elif isinstance(sub, ELEMENTWISE):
                pooled.add(node)
            elif (
                type(sub) in (nn.Conv2d, PooledConv2d)
                and sub.kernel_size == (1, 1)
                and sub.stride == (1, 1)
                and sub.padding in ((0, 0), "valid")
                and sub.groups == 1
            ):
                if type(sub) is nn.Conv2d:
                    pooled_conv = PooledConv2d(
                        sub.in_channels, sub.out_channels, 1, bias=sub.bias is not None,
                        device="meta",
                    )  # fmt: skip
                    pooled_conv.weight, pooled_conv.bias = sub.weight, sub.bias
                    pooled_conv.train(sub.training)
                    gm.set_submodule(node.target, pooled_conv)
                pooled.add(node)
        if pooled:
            gm.recompile()
    return module
