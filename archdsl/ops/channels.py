"""Ops that move channels without computing: ``channel_slice`` and ``channel_shuffle``.

ShuffleNetV2's unit (Ma et al., ECCV 2018, Figure 3c) splits its input's channels in two,
convolves one half, concatenates the halves and shuffles the channels so that the next
unit's halves mix both: ``concat { channel_slice(0, in.c // 2); (channel_slice(in.c // 2,
in.c) -> branch2: ...) } -> channel_shuffle(2)``. The shuffle is ShuffleNet's (Zhang et
al., CVPR 2018, Section 3.1): the channels, taken as ``groups`` rows, read by column.
Neither has parameters.
"""

from __future__ import annotations

from archdsl.ops.base import OpDef, Param, Shape, ShapeProblem
from archdsl.ops.checks import Attrs, need_rank, single_input


def _slice_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    shape = need_rank("channel_slice", single_input("channel_slice", inputs), (3, 1))
    start, stop = attrs["start"], attrs["stop"]
    if stop > shape[0]:
        raise ShapeProblem(f"channel_slice: stop {stop} is past the input's {shape[0]} channels")
    if start >= stop:
        raise ShapeProblem(f"channel_slice: start {start} must be below stop {stop}")
    return (stop - start, *shape[1:])


def _shuffle_infer(attrs: Attrs, inputs: list[Shape]) -> Shape:
    shape = need_rank("channel_shuffle", single_input("channel_shuffle", inputs), (3,))
    if shape[0] % attrs["groups"]:
        raise ShapeProblem(
            f"channel_shuffle: groups {attrs['groups']} must divide the input channels ({shape[0]})"
        )
    return shape


CHANNEL_SLICE = OpDef(
    name="channel_slice",
    params=(
        Param("start", "nonneg", doc="the first channel taken"),
        Param("stop", "posint", doc="the channel after the last one taken"),
    ),
    infer=_slice_infer,
    doc="Channels start to stop - 1 of the input, x[:, start:stop], a view; no parameters "
    "(ShuffleNetV2's channel split).",
    torch_class="ChannelSlice",
)

CHANNEL_SHUFFLE = OpDef(
    name="channel_shuffle",
    params=(Param("groups", "posint", doc="the groups the channels are taken as"),),
    infer=_shuffle_infer,
    doc="ShuffleNet's channel shuffle: the channels as groups x (C / groups), transposed; "
    "no parameters (torch.nn.ChannelShuffle).",
    torch_class="ChannelShuffle",
)

DEFS: tuple[OpDef, ...] = (CHANNEL_SLICE, CHANNEL_SHUFFLE)
