"""What the rules share: walking a module tree's graphs, and tidying one after a rewrite."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import fx, nn

Rule = Callable[[nn.Module], nn.Module]

ELEMENTWISE = (
    nn.ReLU, nn.ReLU6, nn.SiLU, nn.Sigmoid, nn.Hardsigmoid, nn.Hardswish, nn.GELU,
    nn.Tanh, nn.LeakyReLU, nn.ELU, nn.Mish,
)  # fmt: skip
"""Modules that act on each element alone, so that a rewrite may move them past a
channel slice or concatenation."""


def graph_modules(module: nn.Module) -> Iterator[fx.GraphModule]:
    """Every GraphModule of the tree, innermost first (so a parent sees its children's
    final form)."""
    found = [m for m in module.modules() if isinstance(m, fx.GraphModule)]
    yield from reversed(found)


def submodule(gm: fx.GraphModule, node: fx.Node) -> nn.Module:
    """The module a ``call_module`` node calls."""
    return gm.get_submodule(str(node.target))


def _finish(gm: fx.GraphModule) -> None:
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.graph.lint()
    gm.recompile()


def bypass(gm: fx.GraphModule, passes_through: Callable[[fx.Node], bool]) -> None:
    """Remove each node for which ``passes_through`` holds, its users reading its first
    argument instead; tidy the graph if any went."""
    gone = False
    for node in list(gm.graph.nodes):
        if passes_through(node):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            gone = True
    if gone:
        _finish(gm)
