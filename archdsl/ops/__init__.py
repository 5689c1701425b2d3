"""The op registry: what each built-in op takes, how it transforms shapes, what it costs.

Pure Python, no torch: ``archdsl check`` and ``summary`` run on it alone. The torch module
for each op is built in ``archdsl.backends.torch_modules``.
"""

from __future__ import annotations

from archdsl.ops.attrs import bind_defaults, describe_param, normalize_attrs
from archdsl.ops.base import (
    REQUIRED,
    OpDef,
    Param,
    Shape,
    ShapeProblem,
    SizeOf,
    ValueProblem,
    format_shape,
    format_value,
    reads_size,
)
from archdsl.ops.registry import ALL_OPS, FUNCTIONAL_OPS, MERGE_OPS, OPS, get_op
from archdsl.ops.shape_ops import PARAMETER_OPS

__all__ = [
    "ALL_OPS",
    "FUNCTIONAL_OPS",
    "MERGE_OPS",
    "OPS",
    "PARAMETER_OPS",
    "REQUIRED",
    "OpDef",
    "Param",
    "Shape",
    "ShapeProblem",
    "SizeOf",
    "ValueProblem",
    "bind_defaults",
    "describe_param",
    "format_shape",
    "format_value",
    "get_op",
    "normalize_attrs",
    "reads_size",
]
