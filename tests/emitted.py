"""What the tests of archdsl's outputs share: a network that uses every construct the
writers must handle, and loading emitted source back as a user would."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

import archdsl

# concat, mul, add, a numbered seq, an identity branch, a repeated block, dropout, a constant
# scale and two training-only side outputs: every construct the .py writer must turn into code.
MIXED = """
block se(c) {
  mul { identity; (global_avgpool -> fc1: conv(c, 1) -> sigmoid) }
}

block unit(c, stride = 1) {
  add {
    (conv1: conv(c, 3, stride=stride, padding=1, bias=false) -> bn1: bn -> relu
     -> conv2: conv(c, 3, padding=1, bias=false) -> bn2: bn -> gate: se(c) -> scale(0.5))
    if stride != 1 or in.c != c {
      downsample: seq { conv(c, 1, stride=stride, bias=false); bn }
    }
  }
  -> relu
}

network mixed(num_classes = 5) {
  input [3, 20, 20]
  norm: channel_affine([2, 0.5, 1], [0.1, -0.2, 0])
  stem: seq { conv(8, 3, padding=1, bias=false); bn; relu }
  -> mix: concat { conv(4, 1); (maxpool(3, stride=1, padding=1) -> conv(6, 1)); identity }
  -> side early: (global_avgpool(flatten=true) -> linear(3))
  -> stage: unit(12, 2) x 2
  -> side late: (global_avgpool(flatten=true) -> dropout(0.5) -> linear(2))
  -> head: (global_avgpool(flatten=true) -> dropout(0.25) -> linear(num_classes))
}
"""


def import_source(source: str, path: Path) -> ModuleType:
    """Import emitted source from a file, as a user would."""
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def emitted_class(network: nn.Module, tmp_path: Path) -> type[nn.Module]:
    module = import_source(archdsl.emit_python(network), tmp_path / "emitted_net.py")
    (name,) = module.__all__
    return getattr(module, name)  # type: ignore[no-any-return]


def run_both(a: nn.Module, b: nn.Module, x: torch.Tensor, training: bool) -> tuple:
    a.train(training)
    b.train(training)
    with torch.no_grad():
        torch.manual_seed(1)
        ya = a(x)
        torch.manual_seed(1)
        yb = b(x)
    return ya, yb


def assert_py_computes_the_same(network: nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    """The ``.py`` output of ``network`` takes its weights strictly and computes exactly
    what it computes, in eval and in training mode (the same seed: the same dropout and
    stochastic depth draws), main and side outputs."""
    emitted = emitted_class(network, tmp_path)()
    emitted.load_state_dict(network.state_dict(), strict=True)
    for training in (False, True):
        want, got = run_both(network, emitted, x, training)
        if isinstance(want, tuple):
            assert isinstance(got, tuple) and len(got) == len(want)
        else:
            want, got = (want,), (got,)
        for w, g in zip(want, got):
            torch.testing.assert_close(g, w, rtol=0, atol=0)


def assert_exports_compute(network: nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    """``network``'s ``.pt2`` program computes exactly what it computes in eval mode, and
    its ``.onnx`` file, run by onnxruntime (where installed), within 1e-4 (every output,
    in order, for a network that returns several)."""
    network.eval()
    with torch.no_grad():
        want = network(x)
    archdsl.export(network, tmp_path / "n.pt2")
    program = torch.export.load(str(tmp_path / "n.pt2")).module()
    torch.testing.assert_close(program(x), want, rtol=0, atol=0)
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    archdsl.export(network, tmp_path / "n.onnx")
    session = ort.InferenceSession(str(tmp_path / "n.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    want = tuple(want) if isinstance(want, tuple) else (want,)  # several outputs: in order
    assert len(got) == len(want)
    for g, w in zip(got, want):
        torch.testing.assert_close(torch.from_numpy(g), w, rtol=1e-4, atol=1e-5)


def assert_every_output_computes(network: nn.Module, x: torch.Tensor, tmp_path: Path) -> None:
    """The ``.py`` output (both modes), :func:`archdsl.optimize_for_inference` (within
    1e-4) and the exports, each against ``network``."""
    assert_py_computes_the_same(network, x, tmp_path)  # in both modes: it ends in training
    network.eval()
    with torch.no_grad():
        torch.testing.assert_close(
            archdsl.optimize_for_inference(network)(x), network(x), rtol=1e-4, atol=1e-5
        )
    assert_exports_compute(network, x, tmp_path)
