"""Passes over the graph IR. Pure Python: no torch, no tensors.

Each pass is one function ``name(graph) -> graph`` in a file of its own, listed in PASSES
in the order they run.
"""

from archdsl.passes.infer_shapes import infer_shapes
from archdsl.passes.verify import verify

PASSES = (infer_shapes, verify)

__all__ = ["PASSES", "infer_shapes", "verify"]
