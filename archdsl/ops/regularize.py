"""Regularizers that act only in training: ``drop_path`` (stochastic depth).

``dropout`` zeroes single elements and lives with the pass-through ops in ``shape_ops``;
``drop_path`` drops a whole residual branch per sample (Huang et al., "Deep Networks with
Stochastic Depth", ECCV 2016), as torchvision's ``StochasticDepth`` does in EfficientNet.
Both keep the shape and have no parameters.
"""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape
from archdsl.ops.checks import Attrs, single_input


def _drop_path_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return single_input("drop_path", inputs)


DROP_PATH = OpDef(
    name="drop_path",
    params=(
        Param("p", "prob", 0.0, doc="probability of dropping the branch in training"),
        Param(
            "mode",
            "str",
            "row",
            doc='"row" drops each sample on its own, "batch" the whole batch at once',
            choices=("row", "batch"),
        ),
    ),
    infer=_drop_path_infer,
    doc=(
        "Stochastic depth: in training, zero the whole input per sample (or per batch) with "
        "probability p and scale survivors by 1/(1-p); identity in eval "
        "(torchvision.ops.StochasticDepth)."
    ),
    torch_class="StochasticDepth",
)

DEFS: tuple[OpDef, ...] = (DROP_PATH,)
