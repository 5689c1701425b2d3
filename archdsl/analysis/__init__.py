"""Static analysis of a checked network: summaries (params, MACs, FLOPs, receptive field,
memory) straight from the spec, without torch and without a forward pass.

>>> from archdsl.analysis import summary
>>> s = summary("resnet50")
>>> s.params, round(s.macs / 1e9, 2), s.layer("layer3").receptive_field
(25557032, 4.09, 267)
"""

from archdsl.analysis.memory import DTYPE_BYTES
from archdsl.analysis.receptive_field import ReceptiveField, receptive_fields
from archdsl.analysis.summary import FORMATS, Layer, Summary, summary

__all__ = [
    "DTYPE_BYTES",
    "FORMATS",
    "Layer",
    "ReceptiveField",
    "Summary",
    "receptive_fields",
    "summary",
]
