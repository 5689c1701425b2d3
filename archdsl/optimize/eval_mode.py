"""Rules that drop what only training needs: gradients, side outputs, identities in eval mode."""

from __future__ import annotations

from functools import partial

from torch import fx, nn

from archdsl.backends.torch_backend import pack_outputs, side_output
from archdsl.backends.torch_modules import StochasticDepth
from archdsl.optimize.graphs import _finish, bypass, graph_modules, submodule


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
        bypass(gm, partial(_identity_in_eval, gm))
    return module


def _identity_in_eval(gm: fx.GraphModule, node: fx.Node) -> bool:
    return node.op == "call_module" and isinstance(submodule(gm, node), IDENTITY_IN_EVAL)
