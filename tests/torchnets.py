"""What the torch backend tests share (test_torch_backend.py, test_torch_forward.py,
test_torch_persistence.py): small specs that use every construct the backend emits, ResNet
with one block per stage, a network with a side output, and a seeded compile."""

from __future__ import annotations

import torch
from torch import fx, nn

import archdsl

RES = 64  # resnet18 at 64x64: every stage still has a spatial map (2x2 at layer4)


TINY = """
network tiny(num_classes = 4) {
  input [3, 16, 16]
  stem: conv(8, 3, padding=1) -> bn -> relu
  -> pool: global_avgpool(flatten=true) -> fc: linear(num_classes)
}
"""


# Every construct the backend emits: seq, labelled group, block, add, concat, mul, repeat.
MIXED = """
block se(c) {
  mul { identity; (global_avgpool -> fc1: conv(c, 1) -> sigmoid) }
}

block unit(c, stride = 1) {
  add {
    (conv1: conv(c, 3, stride=stride, padding=1, bias=false) -> bn1: bn -> relu
     -> conv2: conv(c, 3, padding=1, bias=false) -> bn2: bn -> gate: se(c))
    if stride != 1 or in.c != c {
      downsample: seq { conv(c, 1, stride=stride, bias=false); bn }
    }
  }
  -> relu
}

network mixed(num_classes = 5) {
  input [3, 20, 20]
  stem: seq { conv(8, 3, padding=1, bias=false); bn; relu }
  -> mix: concat { conv(4, 1); (maxpool(3, stride=1, padding=1) -> conv(6, 1)); identity }
  -> stage: unit(12, 2) x 2
  -> head: (global_avgpool(flatten=true) -> dropout(0.25) -> linear(num_classes))
}
"""


RESNET_1111 = """
import "lib/resnet.arch"
network r = resnet(layers=[1, 1, 1, 1], num_classes=3)
"""


SIDE = """
network aux_net {
  input [3, 8, 8]
  stem: conv(4, 3, padding=1) -> relu
  -> side aux: (global_avgpool(flatten=true) -> linear(2))
  -> conv(4, 1) -> global_avgpool(flatten=true) -> fc: linear(3)
}
"""


def graph_modules(model: nn.Module) -> list[tuple[str, fx.GraphModule]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, fx.GraphModule)]


def fresh(src: str, seed: int = 0, **params) -> nn.Module:
    torch.manual_seed(seed)
    return archdsl.compile(src, **params)
