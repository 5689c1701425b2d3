"""The graph IR: op nodes with their producers in input-port order, and scopes."""

from archdsl.ir.graph import Graph, OpNode, Scope

__all__ = ["Graph", "OpNode", "Scope"]
