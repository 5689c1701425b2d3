"""The network's scopes inlined into one graph, so that rewrites see across them."""

from __future__ import annotations

from torch import fx, nn

from archdsl.optimize.concat_chains import _append_channels, _channel_buffer


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
