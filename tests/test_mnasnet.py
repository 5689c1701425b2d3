"""MNASNet (``specs/lib/mnasnet.arch``) beyond what its records show (keys, shapes and
golden logits, in test_specs.py): torchvision's batch norm momentum, dropout and init, and
the ``.py`` output of a network whose every layer sits in one numbered sequence."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from emitted import assert_py_computes_the_same
from reference import fill


@pytest.mark.parametrize("name", ["mnasnet0_5", "mnasnet1_3"])
def test_batch_norm_and_dropout_are_torchvisions(name: str) -> None:
    model = archdsl.load(name, device="meta")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 3 + 16 * 3 + 1  # stem; 16 inverted residuals; the last convolution
    assert {m.momentum for m in bns} == {1 - 0.9997}  # TensorFlow's decay, exactly
    assert {m.eps for m in bns} == {1e-5}
    (dropout,) = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropout.p == 0.2


def test_init_is_torchvisions() -> None:
    """Convolutions He-normal by fan_out; the classifier He-uniform by fan_out with the
    gain of a sigmoid (bound sqrt(3 / 1000)) and zero bias."""
    torch.manual_seed(0)
    model = archdsl.load("mnasnet1_0")
    fc = model.get_submodule("classifier.1")
    bound = math.sqrt(3 / fc.out_features)
    assert fc.weight.abs().max().item() <= bound
    assert abs(fc.weight.std().item() - bound / math.sqrt(3)) <= 0.05 * bound / math.sqrt(3)
    assert torch.count_nonzero(fc.bias) == 0
    last = model.get_submodule("layers.14")  # 1x1 to 1280
    assert abs(last.weight.std().item() - math.sqrt(2 / 1280)) <= 0.05 * math.sqrt(2 / 1280)


def test_py_output_computes_the_same(tmp_path: Path) -> None:
    model = fill(archdsl.load("mnasnet0_5"))
    assert "self.layers = nn.Sequential(" in archdsl.emit_python(model)
    assert_py_computes_the_same(model, torch.randn(2, 3, 64, 64), tmp_path)
