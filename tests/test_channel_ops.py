"""``channel_slice`` and ``channel_shuffle``: ShuffleNetV2's channel split and shuffle.

Their shapes are checked before a weight exists, their modules compute what torchvision's
ShuffleNetV2 computes (``x.chunk(2, dim=1)``, ``channel_shuffle``), and a network using
them goes through every output and the fastest path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import archdsl
from archdsl.backends.torch_modules import ChannelShuffle, ChannelSlice
from emitted import assert_exports_compute

# ShuffleNetV2's unit, both kinds, small (see specs/lib/shufflenet_v2.arch)
SHUFFLE = """
block unit(out, stride) {
  half = out // 2
  if stride == 1 {
    concat {
      channel_slice(0, in.c // 2)
      (channel_slice(in.c // 2, in.c) -> branch2: seq { conv(half, 1); bn; relu })
    }
  } else {
    concat {
      branch1: seq { conv(half, 3, stride=stride, padding=1); bn }
      branch2: seq { conv(half, 1, stride=stride); bn; relu }
    }
  }
  -> channel_shuffle(2)
}
network n { input [3, 16, 16]; stem: conv(8, 3, padding=1) -> unit(8, 1) -> unit(16, 2) -> unit(16, 1) }
"""


@pytest.mark.parametrize(
    "layer, shape, out",
    [
        ("channel_slice(2, 6)", "[8, 4, 4]", (4, 4, 4)),
        ("channel_slice(0, 8)", "[8, 4, 4]", (8, 4, 4)),
        ("channel_slice(3, 10)", "[10]", (7,)),
        ("channel_shuffle(3)", "[12, 4, 4]", (12, 4, 4)),
        ("channel_shuffle(1)", "[5, 4, 4]", (5, 4, 4)),
    ],
)
def test_shapes(layer: str, shape: str, out: tuple[int, ...]) -> None:
    assert archdsl.check(f"network n {{ input {shape}; {layer} }}").output_shape == out


@pytest.mark.parametrize(
    "layer, shape, message, at",
    [
        ("channel_slice(4, 4)", "[8, 4, 4]", "start 4 must be below stop 4", "c"),
        ("channel_slice(2, 9)", "[8, 4, 4]", "stop 9 is past the input's 8 channels", "c"),
        ("channel_slice(-1, 2)", "[8, 4, 4]", "start must be a non-negative integer", "-"),
        ("channel_shuffle(3)", "[8, 4, 4]", r"groups 3 must divide the input channels \(8\)", "c"),
        ("channel_shuffle(2)", "[8]", r"expects a feature map \[C, H, W\], got \[8\]", "c"),
    ],
)
def test_errors_point_at_the_layer_or_argument(layer: str, shape: str, message: str, at: str):
    src = f"network n {{ input {shape}; {layer} }}"
    with pytest.raises(archdsl.ArchError, match=message) as e:
        archdsl.check(src)
    assert e.value.column == src.index(layer) + layer.index(at) + 1


def _torchvision_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """torchvision's ``shufflenetv2.channel_shuffle``, as it is written there."""
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


@pytest.mark.parametrize("groups", [1, 2, 3, 4])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_shuffle_orders_channels_as_torchvision(groups: int, layout: torch.memory_format) -> None:
    x = torch.randn(2, 12, 3, 5).contiguous(memory_format=layout)
    assert torch.equal(ChannelShuffle(groups)(x), _torchvision_shuffle(x, groups))
    assert torch.equal(ChannelShuffle(groups)(x), torch.nn.ChannelShuffle(groups)(x))


def test_slice_is_a_view_of_chunk() -> None:
    x = torch.randn(2, 10, 3, 3)
    first, second = x.chunk(2, dim=1)
    a, b = ChannelSlice(0, 5)(x), ChannelSlice(5, 10)(x)
    assert torch.equal(a, first) and torch.equal(b, second)
    assert a.data_ptr() == x.data_ptr() and b.untyped_storage().data_ptr() == x.data_ptr()


def test_a_shufflenet_unit_through_every_output(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = archdsl.compile(SHUFFLE).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        want = net(x)
        fast = archdsl.optimize_for_inference(net)
        torch.testing.assert_close(fast(x), want, rtol=1e-4, atol=1e-5)
    assert_exports_compute(net, x, tmp_path)
