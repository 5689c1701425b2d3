"""Torch module factories: one small builder per op, keyed by the op's canonical name.

``build_module`` is the only place an op name turns into a ``torch.nn`` class. Merges
(``add``, ``concat``, ``mul``) have no module: the backend applies them as functions.
Builders pass the arguments torchvision passes, so module reprs and state_dict keys match
(e.g. pooling gets ``kernel_size=3``, not ``(3, 3)``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archdsl.backends.deform_conv import build_deform_conv
from archdsl.ops import (
    PARAMETER_OPS,
    Shape,
    bind_defaults,
    custom,
    get_op,
    normalize_attrs,
)
from archdsl.ops.upsample import INTERPOLATING

Attrs = Mapping[str, Any]
Builder = Callable[[Attrs, list[Shape]], nn.Module]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) map, as timm's LayerNorm2d.

    Normalizes channels-last and permutes back; parameters are ``weight`` and ``bias`` of
    shape (C,), so timm/ConvNeXt-style weights load unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class FrozenBatchNorm2d(nn.Module):
    """Batch normalization with fixed statistics and affine (the same in training mode),
    as detection backbones fine-tune with: ``weight``, ``bias``, ``running_mean`` and
    ``running_var`` of shape (C,) are buffers, so torchvision's detection weights load
    unchanged, and a batch norm's load too (its ``num_batches_tracked`` is dropped)."""

    weight: torch.Tensor
    bias: torch.Tensor
    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list,
        unexpected_keys: list,
        error_msgs: list,
    ) -> None:
        state_dict.pop(prefix + "num_batches_tracked", None)  # a batch norm's count
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        shift = self.bias - self.running_mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class ChannelLinear(nn.Linear):
    """nn.Linear over the channels at every position of an (N, C, H, W) map, as ConvNeXt
    computes its MLP: channels-last, then back. Parameters ``weight`` (out, in) and ``bias``
    (out,), so torchvision's and timm's ConvNeXt weights load unchanged. On a channels_last
    tensor both permutes are free."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.permute(0, 2, 3, 1), self.weight, self.bias).permute(0, 3, 1, 2)


class GELU(nn.GELU):
    """nn.GELU, which on a channels-last (N, C, H, W) map computes in memory order: torch's
    exact (erf) GELU takes about 1.7 times as long on a tensor whose dimension order is not
    its memory order (torch 2.13, CPU), and ConvNeXt's MLP hands it one (its linear layer
    computes channels-last and permutes back). The values are the fast kernel's, which
    torchvision's ConvNeXt runs (its GELU sees the channels-last tensor itself); the slow
    one's differ in the last bits of float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last):
            x = F.gelu(x.permute(0, 2, 3, 1), approximate=self.approximate)
            return x.permute(0, 3, 1, 2)
        return F.gelu(x, approximate=self.approximate)


def layer_scale(channels: int, init: float = 1e-6, flat: bool = False) -> nn.Parameter:
    """LayerScale's factors, ``init`` for each of ``channels``: [C, 1, 1], broadcast over a
    (N, C, H, W) map (torchvision's ``layer_scale``), or [C] with ``flat`` (timm's
    ``gamma``), which the block views as [C, 1, 1] to multiply."""
    return nn.Parameter(torch.full((channels,) if flat else (channels, 1, 1), float(init)))


class GlobalPool2d(nn.Module):
    """Average or max over all positions of each channel: (N, C, H, W) -> (N, C, 1, 1).

    With ``flatten`` the result is (N, C). One module without parameters, so it takes a
    single state_dict-free slot where torchvision has ``AdaptiveAvgPool2d(1)``.
    """

    def __init__(self, mode: str = "avg", flatten: bool = False) -> None:
        super().__init__()
        if mode not in ("avg", "max"):
            raise ValueError(f"GlobalPool2d mode must be 'avg' or 'max', got {mode!r}")
        self.mode = mode
        self.flatten = flatten

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "avg":  # not a function chosen as a value: TorchScript refuses those
            x = F.adaptive_avg_pool2d(x, 1)
        else:
            x = F.adaptive_max_pool2d(x, 1)
        return x.flatten(1) if self.flatten else x

    def extra_repr(self) -> str:
        return f"mode={self.mode}, flatten={self.flatten}"


class StochasticDepth(nn.Module):
    """Stochastic depth (Huang et al., ECCV 2016), torchvision.ops.StochasticDepth's semantics.

    In training, each sample (``mode="row"``) or the whole batch (``mode="batch"``) is zeroed
    with probability ``p`` and the survivors are scaled by ``1 / (1 - p)``, so the expected
    output is the input; in eval mode, or with ``p == 0``, it is the identity. The noise is
    drawn as torchvision draws it (one ``bernoulli_`` of shape ``[N, 1, ...]`` or
    ``[1, ...]``), so a seeded run drops the same samples. No parameters, no buffers.
    """

    def __init__(self, p: float = 0.0, mode: str = "row") -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"StochasticDepth p must be between 0 and 1, got {p}")
        if mode not in ("row", "batch"):
            raise ValueError(f"StochasticDepth mode must be 'row' or 'batch', got {mode!r}")
        self.p = p
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1) if self.mode == "row" else [1] * x.ndim
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


class Scale(nn.Module):
    """Multiply by a constant, ``x * factor``, as Inception-ResNet scales a residual branch
    (timm's ``out * self.scale``). No parameters, no buffers."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class ChannelSlice(nn.Module):
    """Channels ``start`` to ``stop - 1`` of the input, ``x[:, start:stop]``: a view, as
    ShuffleNetV2's ``x.chunk(2, dim=1)`` gives. No parameters, no buffers."""

    def __init__(self, start: int, stop: int) -> None:
        super().__init__()
        self.start = start
        self.stop = stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.start : self.stop]

    def extra_repr(self) -> str:
        return f"start={self.start}, stop={self.stop}"


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle: the channels as ``groups`` groups of ``C / groups``,
    transposed, as torchvision's ``channel_shuffle`` (and ``nn.ChannelShuffle``) orders
    them. No parameters, no buffers."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(1, (self.groups, -1)).transpose(1, 2).flatten(1, 2)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"


class ChannelAffine(nn.Module):
    """Per-channel constants, ``x[:, c] * scale[c] + shift[c]`` (dimension 1 is the
    channel), computed as torchvision's ``transform_input`` of GoogLeNet and Inception v3
    computes it: each channel sliced, multiplied and shifted by Python floats, then
    concatenated, so the result is torchvision's to the bit in every dtype. No parameters,
    no buffers; a few small operations per channel (meant for an input's channels)."""

    def __init__(self, scale: tuple[float, ...], shift: tuple[float, ...]) -> None:
        super().__init__()
        self.scale = tuple(float(v) for v in scale)
        self.shift = tuple(float(v) for v in shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = [
            torch.unsqueeze(x[:, c], 1) * a + b
            for c, (a, b) in enumerate(zip(self.scale, self.shift, strict=True))
        ]
        return torch.cat(channels, 1)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, shift={self.shift}"


def _compact(pair: Any) -> Any:
    """``(3, 3) -> 3``: pooling modules keep what they are given, and torchvision gives ints."""
    if isinstance(pair, tuple) and len(pair) == 2 and pair[0] == pair[1]:
        return pair[0]
    return pair


_DEFAULT_INIT: ContextVar[bool] = ContextVar("archdsl_default_init", default=True)


def _nothing() -> None:
    pass


def _make(cls: type[nn.Module], *args: Any, **kwargs: Any) -> nn.Module:
    """``cls(*args, **kwargs)``; within :func:`build_uninitialised`, without the module's
    ``reset_parameters`` (which ``__init__`` calls, and an instance attribute stands in for
    meanwhile), so its tensors are as ``torch.empty`` made them."""
    if _DEFAULT_INIT.get():
        return cls(*args, **kwargs)
    module = cls.__new__(cls)
    module.__dict__["reset_parameters"] = _nothing
    try:
        cls.__init__(module, *args, **kwargs)
    finally:
        del module.__dict__["reset_parameters"]
    return module


def _conv(a: Attrs, shapes: list[Shape]) -> nn.Module:
    return _make(
        nn.Conv2d,
        shapes[0][0],
        a["out"],
        a["kernel"],
        stride=a["stride"],
        padding=a["padding"],
        dilation=a["dilation"],
        groups=a["groups"],
        bias=a["bias"],
    )


def _conv_transpose(a: Attrs, shapes: list[Shape]) -> nn.Module:
    return _make(
        nn.ConvTranspose2d,
        shapes[0][0],
        a["out"],
        a["kernel"],
        stride=a["stride"],
        padding=a["padding"],
        output_padding=a["output_padding"],
        groups=a["groups"],
        bias=a["bias"],
        dilation=a["dilation"],
    )


def _upsample(a: Attrs, shapes: list[Shape]) -> nn.Module:
    # torch refuses align_corners (even False) with the modes that do not interpolate
    corners = a["align_corners"] if a["mode"] in INTERPOLATING else None
    return nn.Upsample(scale_factor=_compact(a["scale"]), mode=a["mode"], align_corners=corners)


def _linear(a: Attrs, shapes: list[Shape]) -> nn.Module:
    return _make(nn.Linear, shapes[0][0], a["out"], bias=a["bias"])


def _bn(a: Attrs, shapes: list[Shape]) -> nn.Module:
    if a["frozen"]:
        return FrozenBatchNorm2d(shapes[0][0], eps=a["eps"])
    cls = nn.BatchNorm2d if len(shapes[0]) == 3 else nn.BatchNorm1d
    return _make(cls, shapes[0][0], eps=a["eps"], momentum=a["momentum"], affine=a["affine"])


def _layernorm(a: Attrs, shapes: list[Shape]) -> nn.Module:
    cls = LayerNorm2d if len(shapes[0]) == 3 else nn.LayerNorm
    return cls(shapes[0][0], eps=a["eps"])


def _groupnorm(a: Attrs, shapes: list[Shape]) -> nn.Module:
    return nn.GroupNorm(a["groups"], shapes[0][0], eps=a["eps"])


def _lrn(a: Attrs, shapes: list[Shape]) -> nn.Module:
    return nn.LocalResponseNorm(a["size"], alpha=a["alpha"], beta=a["beta"], k=a["k"])


def _maxpool(a: Attrs, shapes: list[Shape]) -> nn.Module:
    return nn.MaxPool2d(
        _compact(a["kernel"]),
        stride=_compact(a["stride"]),
        padding=_compact(a["padding"]),
        dilation=_compact(a["dilation"]),
        ceil_mode=a["ceil_mode"],
    )


def _avgpool(a: Attrs, shapes: list[Shape]) -> nn.Module:
    return nn.AvgPool2d(
        _compact(a["kernel"]),
        stride=_compact(a["stride"]),
        padding=_compact(a["padding"]),
        ceil_mode=a["ceil_mode"],
        count_include_pad=a["count_include_pad"],
    )


def _simple(factory: Callable[[], nn.Module]) -> Builder:
    """A builder for an op whose module takes no arguments."""
    return lambda a, shapes: factory()


BUILDERS: dict[str, Builder] = {
    "conv": _conv,
    "conv_transpose": _conv_transpose,
    "deform_conv": build_deform_conv,
    "linear": _linear,
    "channel_linear": lambda a, s: _make(ChannelLinear, s[0][0], a["out"], bias=a["bias"]),
    "bn": _bn,
    "layernorm": _layernorm,
    "groupnorm": _groupnorm,
    "lrn": _lrn,
    "relu": _simple(nn.ReLU),
    "relu6": _simple(nn.ReLU6),
    "leaky_relu": lambda a, s: nn.LeakyReLU(a["slope"]),
    "silu": _simple(nn.SiLU),
    "gelu": lambda a, s: GELU(approximate=a["approximate"]),
    "sigmoid": _simple(nn.Sigmoid),
    "tanh": _simple(nn.Tanh),
    "hardswish": _simple(nn.Hardswish),
    "hardsigmoid": _simple(nn.Hardsigmoid),
    "softmax": lambda a, s: nn.Softmax(dim=a["dim"]),
    "maxpool": _maxpool,
    "avgpool": _avgpool,
    "upsample": _upsample,
    "adaptive_avgpool": lambda a, s: nn.AdaptiveAvgPool2d(a["size"]),
    "adaptive_maxpool": lambda a, s: nn.AdaptiveMaxPool2d(a["size"]),
    "global_avgpool": lambda a, s: GlobalPool2d("avg", flatten=a["flatten"]),
    "global_maxpool": lambda a, s: GlobalPool2d("max", flatten=a["flatten"]),
    "flatten": lambda a, s: nn.Flatten(1),
    "dropout": lambda a, s: nn.Dropout(a["p"]),
    "drop_path": lambda a, s: StochasticDepth(a["p"], a["mode"]),
    "identity": _simple(nn.Identity),
    "scale": lambda a, s: Scale(a["factor"]),
    "channel_affine": lambda a, s: ChannelAffine(a["scale"], a["shift"]),
    "channel_slice": lambda a, s: ChannelSlice(a["start"], a["stop"]),
    "channel_shuffle": lambda a, s: ChannelShuffle(a["groups"]),
}


def build_module(op_name: str, attrs: Attrs, input_shapes: Sequence[Shape]) -> nn.Module:
    """A fresh torch module for one application of ``op_name`` (name or alias).

    ``attrs`` are normalized again (missing defaults filled in), which is idempotent on
    attributes from the IR. ``input_shapes`` exclude the batch; ``input_shapes[0][0]`` is
    the input channel/feature count. The module is created on torch's current default
    device, so ``with torch.device("meta"):`` builds it without allocating weights.
    """
    opdef = get_op(op_name)
    if opdef is None:
        raise KeyError(f"unknown op {op_name!r}")
    if opdef.functional:
        raise ValueError(f"{opdef.name} has no module: the backend applies it as a function")
    if opdef.name in PARAMETER_OPS:
        raise ValueError(f"{opdef.name} is a parameter of its block: see build_parameter")
    attrs = normalize_attrs(opdef, bind_defaults(opdef, attrs))
    builder = BUILDERS.get(opdef.name) or custom.BUILDERS[opdef.name]
    module = builder(attrs, [tuple(s) for s in input_shapes])
    if not isinstance(module, nn.Module):
        raise TypeError(
            f"the build function of op '{opdef.name}' returned {type(module).__name__}, "
            "not a torch.nn.Module"
        )
    return module


def build_uninitialised(op_name: str, attrs: Attrs, input_shapes: Sequence[Shape]) -> nn.Module:
    """:func:`build_module` for a caller that writes every tensor itself: a convolution's,
    linear layer's or batch norm's tensors are left as ``torch.empty`` made them, skipping
    ``reset_parameters`` (PyTorch's random default draw, batch norm's ones and zeros);
    other ops' modules are as :func:`build_module` makes them."""
    token = _DEFAULT_INIT.set(False)
    try:
        return build_module(op_name, attrs, input_shapes)
    finally:
        _DEFAULT_INIT.reset(token)


def build_parameter(op_name: str, attrs: Attrs, input_shapes: Sequence[Shape]) -> nn.Parameter:
    """The parameter of an op whose state is its block's own (:data:`PARAMETER_OPS`:
    ``layer_scale``), made on torch's current default device."""
    opdef = get_op(op_name)
    if opdef is None or opdef.name not in PARAMETER_OPS:
        raise KeyError(f"{op_name!r} is not an op whose state is a parameter of its block")
    a = normalize_attrs(opdef, bind_defaults(opdef, attrs))
    return layer_scale(input_shapes[0][0], a["init"], a["flat"])
