"""The op registry: every built-in op by name and by alias."""

from __future__ import annotations

from archdsl.ops import (
    activation,
    channels,
    conv,
    deform,
    merge,
    norm,
    pool,
    regularize,
    shape_ops,
    upsample,
)
from archdsl.ops.base import OpDef

ALL_OPS: tuple[OpDef, ...] = (
    conv.DEFS
    + deform.DEFS
    + norm.DEFS
    + activation.DEFS
    + pool.DEFS
    + upsample.DEFS
    + shape_ops.DEFS
    + channels.DEFS
    + regularize.DEFS
    + merge.DEFS
)


def _index(defs: tuple[OpDef, ...]) -> dict[str, OpDef]:
    table: dict[str, OpDef] = {}
    for opdef in defs:
        for name in (opdef.name, *opdef.aliases):
            if name in table:
                raise RuntimeError(f"op name {name!r} registered twice")
            table[name] = opdef
    return table


OPS: dict[str, OpDef] = _index(ALL_OPS)
"""Every op by name; aliases are extra keys pointing at the same OpDef."""

MERGE_OPS: frozenset[str] = frozenset(d.name for d in ALL_OPS if d.arity == -1)
"""Canonical names of the variadic merges."""

FUNCTIONAL_OPS: frozenset[str] = frozenset(d.name for d in ALL_OPS if d.functional)
"""The ops applied as functions in the forward, with no module (merges, ``resize``)."""


def get_op(name: str) -> OpDef | None:
    """The op called ``name`` (or aliased so), or None when there is none.

    Ops registered from Python join ``OPS``; the first miss loads the ``archdsl.ops``
    entry points of installed plugins (once) and looks again.
    """
    opdef = OPS.get(name)
    if opdef is None:
        from archdsl.ops import custom

        if not custom._entry_points_loaded:
            custom.load_entry_points()
            opdef = OPS.get(name)
    return opdef


# Names other frameworks give these ops, compared as `_plain` leaves them (torch's class
# names, Conv2d and MaxPool2d, are matched through each op's torch_class).
_OTHER_NAMES = {
    "dense": "linear",
    "fc": "linear",
    "fullyconnected": "linear",
    "innerproduct": "linear",  # Caffe
    "convolution": "conv",  # Caffe
    "conv2dtranspose": "conv_transpose",  # Keras
    "deconvolution": "conv_transpose",  # Caffe
    "deconv": "conv_transpose",
    "upsampling2d": "upsample",  # Keras
    "interpolate": "resize",  # F.interpolate(x, size=...)
    "maxpooling2d": "maxpool",  # Keras
    "averagepooling2d": "avgpool",
    "globalaveragepooling2d": "global_avgpool",
    "globalmaxpooling2d": "global_maxpool",
    "globalavgpool": "global_avgpool",
    "batchnormalization": "bn",  # Keras, ONNX
    "cat": "concat",
    "concatenate": "concat",
    "swish": "silu",
    "hswish": "hardswish",
    "stochasticdepth": "drop_path",
    "droppath": "drop_path",
}


def _plain(name: str) -> str:
    """``name`` lower-cased without underscores, for comparing spellings."""
    return name.lower().replace("_", "")


def known_as(name: str) -> str | None:
    """The op that ``name``, another framework's word for it, means here (``Conv2d``,
    ``dense`` and ``MaxPooling2D`` are conv, linear and maxpool), or None.

    >>> known_as("BatchNorm2d"), known_as("Dense"), known_as("max_pool"), known_as("ReLU")
    ('bn', 'linear', 'maxpool', 'relu')
    >>> known_as("Conv2DTranspose"), known_as("Deconvolution"), known_as("UpSampling2D")
    ('conv_transpose', 'conv_transpose', 'upsample')
    >>> known_as("warp") is None
    True
    """
    key = _plain(name)
    if key in _OTHER_NAMES:
        return _OTHER_NAMES[key] or None
    by_torch: dict[str, set[str]] = {}
    for opdef in ALL_OPS:
        if _plain(opdef.name) == key:
            return opdef.name
        if opdef.torch_class:
            by_torch.setdefault(_plain(opdef.torch_class), set()).add(opdef.name)
    for key_2d in (key, key + "2d"):
        names = by_torch.get(key_2d, set())
        if len(names) == 1:
            return names.pop()
    return None
