"""Element-wise activations. All keep the shape (of any rank); none has parameters or MACs.

``softmax`` is the one with a shape condition: its ``dim`` counts the batch as dim 0,
as torch does, so it must lie in 1..rank of the per-sample shape.
"""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape, ShapeProblem, format_shape
from archdsl.ops.checks import Attrs, InferFn, single_input


def _same_shape(op: str) -> InferFn:
    def infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
        return single_input(op, inputs)

    return infer


def _activation(name: str, torch_class: str, doc: str, params: tuple[Param, ...] = ()) -> OpDef:
    return OpDef(
        name=name,
        params=params,
        infer=_same_shape(name),
        doc=f"{doc} (torch.nn.{torch_class}).",
        torch_class=torch_class,
    )


def _softmax_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    shape = single_input("softmax", inputs)
    dim = attrs["dim"]
    if not 1 <= dim <= len(shape):
        raise ShapeProblem(
            f"softmax: dim {dim} is out of range for input {format_shape(shape)}: "
            f"dims count the batch as 0, so dim must be in 1..{len(shape)}"
        )
    return shape


SOFTMAX = OpDef(
    name="softmax",
    params=(Param("dim", "int", 1, doc="dimension to normalize; the batch is dim 0"),),
    infer=_softmax_infer,
    doc="Softmax along one dimension (torch.nn.Softmax).",
    torch_class="Softmax",
)

DEFS: tuple[OpDef, ...] = (
    _activation("relu", "ReLU", "Rectified linear unit max(x, 0)"),
    _activation("relu6", "ReLU6", "ReLU clipped at 6"),
    _activation(
        "leaky_relu",
        "LeakyReLU",
        "Leaky ReLU: x for x >= 0, slope * x below",
        (Param("slope", "float", 0.01, doc="slope for negative inputs"),),
    ),
    _activation("silu", "SiLU", "SiLU / swish: x * sigmoid(x)"),
    _activation(
        "gelu",
        "GELU",
        "Gaussian error linear unit",
        (
            Param(
                "approximate",
                "str",
                "none",
                doc='"none" for the exact erf form, "tanh" for the tanh approximation',
                choices=("none", "tanh"),
            ),
        ),
    ),
    _activation("sigmoid", "Sigmoid", "Logistic sigmoid"),
    _activation("tanh", "Tanh", "Hyperbolic tangent"),
    _activation("hardswish", "Hardswish", "Hard swish: x * relu6(x + 3) / 6"),
    _activation("hardsigmoid", "Hardsigmoid", "Hard sigmoid: relu6(x + 3) / 6"),
    SOFTMAX,
)
