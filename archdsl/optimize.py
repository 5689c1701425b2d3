"""Inference rewrites of a compiled network: each exact, each one function over the
``torch.fx`` graphs of the module tree, listed in :data:`RULES` and applied in that order.

An optimised module is for inference only: it is in eval mode, its parameters do not
require grad, batch norms are folded away (so its state_dict has fewer keys than the
network's) and training-only side outputs are gone. Its outputs equal the original
module's in eval mode up to float rounding (folding reorders a few multiplications).

>>> import torch, archdsl
>>> net = archdsl.compile("network t { input [3, 8, 8]; c: conv(4, 3) -> b: bn -> relu }")
>>> fast = optimize_for_inference(net)
>>> [name for name, _ in fast.named_children()]
['c', '2']
>>> x = torch.randn(2, 3, 8, 8)
>>> torch.allclose(fast(x), net.eval()(x), atol=1e-6)
True
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from archdsl.backends.torch_backend import pack_outputs, side_output
from archdsl.backends.torch_modules import GlobalPool2d, StochasticDepth

Rule = Callable[[nn.Module], nn.Module]


def graph_modules(module: nn.Module) -> Iterator[fx.GraphModule]:
    """Every GraphModule of the tree, innermost first (so a parent sees its children's
    final form)."""
    found = [m for m in module.modules() if isinstance(m, fx.GraphModule)]
    yield from reversed(found)


def _finish(gm: fx.GraphModule) -> None:
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode, and no parameter requires grad (autograd records nothing, even outside
    ``torch.no_grad()``).

    >>> import archdsl
    >>> m = freeze(archdsl.compile("network t { input [3, 4, 4]; conv(2, 1) }"))
    >>> m.training, any(p.requires_grad for p in m.parameters())
    (False, False)
    """
    module.eval()
    module.requires_grad_(False)
    return module


def drop_side_outputs(module: nn.Module) -> nn.Module:
    """Remove training-only side outputs (they are ``None`` in eval mode): the network
    returns its main output, and the side heads' modules go.

    >>> import archdsl
    >>> m = archdsl.compile("network t { input [4]; linear(3) -> side aux: linear(2) -> linear(5) }")
    >>> [n for n, _ in drop_side_outputs(m).named_children()]
    ['0', '2']
    """
    if not isinstance(module, fx.GraphModule):
        return module
    changed = False
    for node in list(module.graph.nodes):
        if node.op == "call_function" and node.target is pack_outputs:
            node.replace_all_uses_with(node.args[0])
            module.graph.erase_node(node)
            changed = True
    for node in list(module.graph.nodes):
        if node.op == "call_function" and node.target is side_output and not node.users:
            module.graph.erase_node(node)
            changed = True
    if changed:
        _finish(module)
    return module


IDENTITY_IN_EVAL = (nn.Identity, nn.Dropout, StochasticDepth)


def remove_identities(module: nn.Module) -> nn.Module:
    """Drop modules that are the identity in eval mode: ``identity``, ``dropout`` and
    ``drop_path``.

    >>> import archdsl
    >>> m = archdsl.compile("network t { input [4]; linear(3) -> dropout(0.5) -> linear(2) }")
    >>> [n for n, _ in remove_identities(m.eval()).named_children()]
    ['0', '2']
    """
    for gm in graph_modules(module):
        changed = False
        for node in list(gm.graph.nodes):
            if node.op == "call_module" and isinstance(
                gm.get_submodule(node.target), IDENTITY_IN_EVAL
            ):
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
                changed = True
        if changed:
            _finish(gm)
    return module


FOLDABLE = (
    (nn.Conv2d, nn.BatchNorm2d, fuse_conv_bn_eval),
    (nn.Linear, nn.BatchNorm1d, fuse_linear_bn_eval),
)


def fold_batch_norm(module: nn.Module) -> nn.Module:
    """Fold each eval-mode batch norm into the convolution or linear layer before it, when
    that layer's output feeds nothing else: ``bn(conv(x)) == conv'(x)`` with the weight
    scaled by ``gamma / sqrt(var + eps)`` and the bias shifted to match. The fold happens
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
            bn, layer = gm.get_submodule(node.target), gm.get_submodule(prev.target)
            for layer_type, bn_type, fuse in FOLDABLE:
                if (
                    type(layer) is layer_type
                    and type(bn) is bn_type
                    and not bn.training
                    and bn.track_running_stats
                    and not layer.training
                ):
                    gm.set_submodule(prev.target, fuse(layer, bn))
                    node.replace_all_uses_with(prev)
                    gm.graph.erase_node(node)
                    changed = True
                    break
        if changed:
            _finish(gm)
    return module


def _layout_change(node: fx.Node) -> bool:
    """Whether ``node`` is the conversion of the input to channels-last that
    :func:`channels_last` inserts."""
    return (
        node.op == "call_method"
        and node.target == "contiguous"
        and node.kwargs.get("memory_format") == torch.channels_last
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
    module.to(memory_format=torch.channels_last)
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
    module.to(memory_format=torch.contiguous_format)
    if isinstance(module, fx.GraphModule):
        changed = False
        for node in list(module.graph.nodes):
            if _layout_change(node):
                node.replace_all_uses_with(node.args[0])
                module.graph.erase_node(node)
                changed = True
        if changed:
            _finish(module)
    return module


GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.Sigmoid, nn.Hardsigmoid, nn.Hardswish, nn.GELU,
    nn.Tanh, nn.LeakyReLU, nn.ELU, nn.Mish,
)  # fmt: skip


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
            sub = gm.get_submodule(node.target)
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


class _ScopeTracer(fx.Tracer):
    """Traces through scopes (GraphModules), keeping every other module a call, and the
    rules' own functions (unpickling a GraphModule traces it again with its tracer)."""

    def __init__(self) -> None:
        super().__init__(autowrap_functions=(_channel_buffer, _append_channels))

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return not isinstance(m, fx.GraphModule)


def inline_scopes(module: nn.Module) -> nn.Module:
    """One GraphModule for the whole network: every scope's code inlined into its
    caller's, every leaf module called by its full path (``inception3a.branch1.conv``), so
    the state_dict is unchanged. A rewrite can then see across scopes: the first
    convolutions of an inception block's branches are siblings only in the flat graph.

    >>> import archdsl
    >>> net = archdsl.compile("network t { input [3, 4, 4]; s: (c: conv(2, 1) -> relu) -> d: conv(3, 1) }")
    >>> flat = inline_scopes(net)
    >>> [n.target for n in flat.graph.nodes if n.op == "call_module"], list(flat.state_dict()) == list(net.state_dict())
    (['s.c', 's.1', 'd'], True)
    """
    if not isinstance(module, fx.GraphModule):
        return module
    flat = fx.GraphModule(module, _ScopeTracer().trace(module), type(module).__name__)
    flat.train(module.training)
    if hasattr(module, "archdsl_graph"):
        flat.archdsl_graph = module.archdsl_graph
    return flat


def _same_activation(a: nn.Module, b: nn.Module) -> bool:
    return type(a) is type(b) and isinstance(a, ELEMENTWISE) and a.extra_repr() == b.extra_repr()


def _mergeable(gm: fx.GraphModule, node: fx.Node) -> tuple | None:
    """What a convolution must share with its siblings to merge with them (its input and
    hyperparameters), or None when it cannot: it is not a plain ungrouped ``nn.Conv2d``,
    or its output feeds anything but one elementwise activation."""
    if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
        return None
    conv = gm.get_submodule(node.target)
    if type(conv) is not nn.Conv2d or conv.groups != 1 or len(node.users) != 1:
        return None
    (user,) = node.users
    if user.op != "call_module" or not isinstance(gm.get_submodule(user.target), ELEMENTWISE):
        return None
    hyper = (conv.kernel_size, conv.stride, conv.padding, conv.dilation, conv.padding_mode)
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
        first_act = gm.get_submodule(acts[0].target)
        nodes = [
            n
            for n, a in zip(nodes, acts)
            if _same_activation(gm.get_submodule(a.target), first_act)
        ]
        if len(nodes) < 2:
            continue
        convs = [gm.get_submodule(n.target) for n in nodes]
        conv = nn.Conv2d(
            convs[0].in_channels, sum(c.out_channels for c in convs), convs[0].kernel_size,
            convs[0].stride, convs[0].padding, convs[0].dilation, bias=convs[0].bias is not None,
            padding_mode=convs[0].padding_mode, device="meta",
        )  # fmt: skip
        layout = (
            torch.channels_last
            if convs[0].weight.is_contiguous(memory_format=torch.channels_last)
            else torch.contiguous_format
        )
        weight = torch.cat([c.weight.detach() for c in convs]).contiguous(memory_format=layout)
        conv.weight = nn.Parameter(weight, requires_grad=convs[0].weight.requires_grad)
        if conv.bias is not None:
            bias = torch.cat([c.bias.detach() for c in convs])
            conv.bias = nn.Parameter(bias, requires_grad=convs[0].bias.requires_grad)
        conv.train(convs[0].training)
        scope = _common_scope([n.target for n in nodes])
        while hasattr(gm.get_submodule(scope), f"merged{merged}"):
            merged += 1
        target = f"{scope}.merged{merged}" if scope else f"merged{merged}"
        gm.add_submodule(target, conv)
        merged += 1
        with graph.inserting_before(nodes[0]):
            out = graph.call_module(target, (nodes[0].args[0],))
            out = graph.call_module(acts[0].target, (out,))
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
        and dim == 1
    )


def _channels_of(gm: fx.GraphModule, node: fx.Node) -> int | None:
    """How many channels ``node``'s value has, where its producer says so: a convolution,
    possibly through elementwise activations, or a channel slice of such a value (a merged
    convolution's). Never a view of another tensor's channels, so never of a chain's."""
    while node.op == "call_module" and len(node.args) == 1 and not node.kwargs:
        sub = gm.get_submodule(node.target)
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
        return bool(getattr(gm.get_submodule(node.target), "inplace", False))
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


def _common_scope(targets: list[str]) -> str:
    parts = [t.split(".")[:-1] for t in targets]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return ".".join(common)


RULES: tuple[Rule, ...] = (
    freeze,
    drop_side_outputs,
    remove_identities,
    fold_batch_norm,
    channels_last,
)

COMPILE_RULES: tuple[Rule, ...] = (
    *RULES,
    inline_scopes,
    pooled_convs_as_sums,
    merge_sibling_convs,
    concat_chains_in_place,
)
"""What :func:`compile_for_inference` applies: :data:`RULES`, then rewrites that pay off
once inductor compiles the network, not in eager mode."""


def optimize_for_inference(
    module: nn.Module, *, rules: tuple[Rule, ...] = RULES, inplace: bool = False
) -> nn.Module:
    """A copy of a compiled network rewritten for fast inference (see the module doc).

    Only for inputs of 4 dimensions (images), in eval mode. ``inplace=True`` rewrites
    ``module`` itself instead of a copy.
    """
    graph = getattr(module, "archdsl_graph", None)
    if not inplace:
        module = copy.deepcopy(module)
        if graph is not None:  # GraphModule's deepcopy keeps only its own attributes
            module.archdsl_graph = graph
    for rule in rules:
        module = rule(module)
    return module


FROZEN_COMPILE = {"freezing": True, "cpp_wrapper": True}
"""Inductor's settings for the fastest CPU path: the weights become constants (the
convolutions' weights prepacked for oneDNN, their ReLU and residual sum fused) and C++,
not Python, calls the kernels. ``torch.compile(options=...)`` does not freeze in torch 2.13:
the settings must be in inductor's config when a call compiles."""


class CompiledForInference(nn.Module):
    """An optimised network compiled with inductor freezing; calls run under
    ``torch.no_grad()``, and those that may compile (a first call, or inputs of a shape,
    stride, dtype or device not seen before, or a global state such as autocast not seen
    with them) also under :data:`FROZEN_COMPILE`, so that every compilation freezes
    (outside those settings it would compile without freezing, 10 to 15% slower, and
    silently). Setting them costs 37 us, so calls like earlier ones skip it.

    ``module`` is the optimised network as it was when a call compiled (from
    :func:`compile_for_inference`, one graph, some convolutions merged, so its state_dict
    is not the network's): its weights are
    constants of the compiled code and its mode is eval, so later changes to either are not
    seen. Dynamo therefore guards only what can change the compiled code, the inputs and
    the global state (grad mode, autocast, threads), not the module's attributes
    (torch's ``keep_portable_guards_unsafe``): under 1 us a call where all guards took
    26 us (resnet50) to 154 us (densenet121). With a torch that lacks the filter all
    guards are checked, and a module changed after compiling may compile again.
    """

    def __init__(self, module: nn.Module, options: dict[str, bool]):
        super().__init__()
        self.module = module
        self.options = options
        # inputs' signatures compiled for -> dynamo's global states they compiled under
        self.seen: dict[tuple, list[Any]] = {}
        portable = getattr(torch.compiler, "keep_portable_guards_unsafe", None)
        guards = {"guard_filter_fn": portable} if portable else None
        # not a submodule: its state is module's, and its state_dict would repeat it
        object.__setattr__(self, "compiled", torch.compile(module, dynamic=False, options=guards))

    def forward(self, *args: torch.Tensor) -> Any:  # a tensor, or a backbone's dict
        import torch._inductor.config as inductor_config
        from torch._C._dynamo.guards import GlobalStateGuard

        key = tuple((a.shape, a.stride(), a.dtype, a.device) for a in args)
        with torch.no_grad():
            states = self.seen.setdefault(key, [])
            if any(state.check() for state in states):
                return self.compiled(*args)
            with inductor_config.patch(self.options):
                out = self.compiled(*args)
            states.append(GlobalStateGuard())
            return out


def compile_for_inference(module: nn.Module, *, cpp_wrapper: bool = True) -> nn.Module:
    """The fastest CPU path archdsl offers: :func:`optimize_for_inference` with
    :data:`COMPILE_RULES` (its rules, then the network inlined into one graph, pooled
    convolutions as sums, sibling convolutions merged and chains of concatenations written
    into one tensor), then ``torch.compile`` with inductor freezing (and ``cpp_wrapper``)
    at every input shape.
    Compiling happens at the first call with each shape (a minute or more for a large
    network on two cores); each shape compiles once, up to dynamo's recompile limit (8).
    Outputs equal the module's in eval mode up to float rounding. On Linux,
    :func:`archdsl.keep_freed_memory` spares each call the page faults of activations
    glibc would otherwise hand back to the OS (docs/performance.md).
    """
    optimised = optimize_for_inference(module, rules=COMPILE_RULES)
    return CompiledForInference(optimised, {**FROZEN_COMPILE, "cpp_wrapper": cpp_wrapper})
