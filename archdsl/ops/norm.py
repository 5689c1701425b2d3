"""Normalization ops: ``bn``, ``layernorm``, ``groupnorm``, ``lrn``.

All normalize over the channel dimension, so they accept a feature map [C, H, W] or flat
features [F] (except ``lrn``, which slides over neighbouring channels of a feature map).
Normalization costs no MACs in the FlopCounterMode convention the reference uses.
"""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape, ShapeProblem
from archdsl.ops.checks import Attrs, feature_map, need_rank, single_input


def _channel_input(op: str, inputs: list[Shape]) -> Shape:
    return need_rank(op, single_input(op, inputs), (3, 1))


def _affine_params(attrs: Attrs, inputs: list[Shape]) -> int:
    """A weight and a bias per channel."""
    return 2 * inputs[0][0]


def _bn_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    if attrs["frozen"]:
        if not attrs["affine"]:
            raise ShapeProblem(
                "bn: a frozen batch norm keeps its affine (affine=false with frozen=true)"
            )
        return feature_map("bn", inputs)
    return _channel_input("bn", inputs)


def _bn_params(attrs: Attrs, inputs: list[Shape]) -> int:
    return 2 * inputs[0][0] if attrs["affine"] and not attrs["frozen"] else 0


def _bn_buffers(attrs: Attrs, inputs: list[Shape]) -> int:
    """running_mean and running_var per channel, plus the scalar num_batches_tracked; frozen,
    weight, bias, running_mean and running_var per channel."""
    return 4 * inputs[0][0] if attrs["frozen"] else 2 * inputs[0][0] + 1


BN = OpDef(
    name="bn",
    params=(
        Param("eps", "nonneg_float", 1e-5, doc="added to the variance for stability"),
        Param("momentum", "prob", 0.1, doc="running-statistics update rate", nullable=True),
        Param("affine", "bool", True, doc="learn a per-channel scale and shift"),
        Param(
            "frozen",
            "bool",
            False,
            doc="fixed statistics and affine, in training mode too, as detection backbones "
            "fine-tune with (torchvision's FrozenBatchNorm2d: all four tensors are buffers; "
            "a batch norm's weights load, num_batches_tracked dropped); feature maps only",
        ),
    ),
    infer=_bn_infer,
    count_params=_bn_params,
    count_buffers=_bn_buffers,
    stateless=False,
    doc="Batch normalization (torch.nn.BatchNorm2d on [C, H, W], BatchNorm1d on [F]).",
    aliases=("batchnorm",),
    torch_class="BatchNorm2d",
)


def _layernorm_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return _channel_input("layernorm", inputs)


LAYERNORM = OpDef(
    name="layernorm",
    params=(Param("eps", "nonneg_float", 1e-5, doc="added to the variance for stability"),),
    infer=_layernorm_infer,
    count_params=_affine_params,
    stateless=False,
    doc="Layer normalization over channels (torch.nn.LayerNorm; LayerNorm2d on feature maps).",
    torch_class="LayerNorm",
)


def _groupnorm_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    shape = _channel_input("groupnorm", inputs)
    groups = attrs["groups"]
    if shape[0] % groups:
        raise ShapeProblem(f"groupnorm: groups {groups} must divide the channels ({shape[0]})")
    return shape


GROUPNORM = OpDef(
    name="groupnorm",
    params=(
        Param("groups", "posint", doc="channel groups; must divide the channels"),
        Param("eps", "nonneg_float", 1e-5, doc="added to the variance for stability"),
    ),
    infer=_groupnorm_infer,
    count_params=_affine_params,
    stateless=False,
    doc="Group normalization (torch.nn.GroupNorm).",
    torch_class="GroupNorm",
)


def _lrn_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    return feature_map("lrn", inputs)


LRN = OpDef(
    name="lrn",
    params=(
        Param("size", "posint", doc="number of neighbouring channels to normalize over"),
        Param("alpha", "float", 1e-4, doc="multiplicative factor"),
        Param("beta", "float", 0.75, doc="exponent"),
        Param("k", "float", 1.0, doc="additive factor"),
    ),
    infer=_lrn_infer,
    doc="Local response normalization across channels (torch.nn.LocalResponseNorm).",
    torch_class="LocalResponseNorm",
)

DEFS: tuple[OpDef, ...] = (BN, LAYERNORM, GROUPNORM, LRN)
