"""The graph IR: op nodes in a networkx DiGraph, edges carrying input port indices."""

from archdsl.ir.graph import Graph, OpNode, Scope

__all__ = ["Graph", "OpNode", "Scope"]
