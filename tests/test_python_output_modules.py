"""The modules the ``.py`` output of ``archdsl compile -o`` constructs.

The emitted file carries archdsl's deformable convolution as source of its own, imports the
build function of an op registered from Python (or writes a known class's constructor, and
refuses an op it cannot import), and constructs every module of every bundled spec exactly
as archdsl constructs it (same ``repr``, same ``state_dict``). It is imported the way a user
would (``importlib``) and must compute what the compiled module computes with its weights.
The names, classes and layout of the emitted code are tested in test_python_output.py.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from archdsl.backends import python_source
from archdsl.backends.deform_conv import DeformConv2d
from archdsl.ops import Param
from emitted import import_source

# ---- .py: deformable convolution ------------------------------------------------------

DEFORM = """
network dcn(num_classes = 4) {
  input [6, 12, 12]
  d1: deform_conv(8, 3, padding=1, offset_groups=2, bias=false) -> bn -> relu
  -> d2: deform_conv(8, 3, stride=2, padding=1, groups=2, modulated=true)
  -> pool: global_avgpool(flatten=true) -> fc: linear(num_classes)
}
"""


def _nonzero_offsets(model: nn.Module) -> None:
    """Offsets start at zero (the module is then a plain conv); move them off the grid."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, DeformConv2d):
                module.offset.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(3))
                module.offset.bias.uniform_(-1.5, 1.5, generator=torch.Generator().manual_seed(4))


def test_py_carries_the_deformable_convolution(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = archdsl.compile(DEFORM).eval()
    _nonzero_offsets(net)
    source = archdsl.emit_python(net)
    imports = [line for line in source.splitlines() if re.match(r"(import|from) ", line)]
    assert imports == ["import torch", "import torch.nn.functional as F", "from torch import nn"]
    assert "class DeformConv2d(nn.Module):" in source and "def deform_conv2d(" in source
    assert "archdsl" not in source.split('"""\n', 1)[1]
    module = import_source(source, tmp_path / "emitted_dcn.py")
    emitted = module.Dcn().eval()
    emitted.load_state_dict(net.state_dict(), strict=True)
    assert repr(emitted.d2) == repr(net.d2)
    x = torch.randn(2, 6, 12, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert not torch.equal(net.d1.offset(x), torch.zeros(()))  # offsets really move
        torch.testing.assert_close(emitted(x), net(x), rtol=0, atol=0)
    # the emitted class on its own equals archdsl's, modulated or not, on random offsets
    for kwargs in ({}, {"modulated": True, "offset_groups": 3, "stride": 2, "dilation": 2}):
        ours = DeformConv2d(6, 4, 3, padding=2, **kwargs)
        theirs = module.DeformConv2d(6, 4, 3, padding=2, **kwargs)
        _nonzero_offsets(ours)
        theirs.load_state_dict(ours.state_dict(), strict=True)
        with torch.no_grad():
            torch.testing.assert_close(theirs(x), ours(x), rtol=0, atol=0)


# ---- .py: ops registered from Python ----------------------------------------------------

GATE_LAYERS = """
import torch
from torch import nn


class Gate(nn.Module):
    def __init__(self, channels: int, bias: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((channels, 1, 1), 0.5))
        self.bias = bias

    def forward(self, x):
        return x * torch.sigmoid(self.weight + self.bias)


def build_gate(attrs, input_shapes):
    return Gate(input_shapes[0][0], attrs["bias"])
"""

GATED = """
block unit(c, b) { conv(c, 3, padding=1) -> g: gate(b) -> relu }
network gated { input [3, 8, 8]; first: unit(4, 0.5) -> second: unit(4, -1.0) -> third: gate }
"""


@pytest.fixture()
def gate_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An op whose build function lives in an importable module, my_gate_layers."""
    (tmp_path / "my_gate_layers.py").write_text(GATE_LAYERS)
    monkeypatch.syspath_prepend(str(tmp_path))
    layers = importlib.import_module("my_gate_layers")
    archdsl.register_op(
        "gate",
        params=[Param("bias", "float", 0.0)],
        infer=lambda attrs, shapes: shapes[0],
        build=layers.build_gate,
    )
    yield layers
    archdsl.unregister_op("gate")
    sys.modules.pop("my_gate_layers", None)


def test_py_imports_the_build_function_of_a_registered_op(gate_op, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = archdsl.compile(GATED)
    source = archdsl.emit_python(net)
    imports = [line for line in source.splitlines() if re.match(r"(import|from) ", line)]
    assert imports == [
        "import torch",
        "from torch import nn",
        "from my_gate_layers import build_gate",
    ]
    assert "Needs torch and my_gate_layers (for ops registered from Python)." in source
    # one Unit class; the op's attributes differ between its instances: a parameter
    assert source.count("class Unit(nn.Module):") == 1
    assert "self.g = build_gate(attrs, [(4, 8, 8)])" in source
    assert 'self.third = build_gate({"bias": 0.0}, [(4, 8, 8)])' in source
    module = import_source(source, tmp_path / "emitted_gated.py")
    emitted = module.Gated()
    emitted.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(emitted(x), net(x), rtol=0, atol=0)


def test_py_refuses_a_registered_op_it_cannot_import() -> None:
    class LocalGate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.sigmoid() * x

    archdsl.register_op(
        "local_gate",
        params={},
        infer=lambda attrs, shapes: shapes[0],
        build=lambda attrs, shapes: LocalGate(),
    )
    try:
        graph = archdsl.check("network n {\n  input [3, 4, 4]\n  conv(4, 3) -> local_gate\n}")
        archdsl.emit_python(graph)
    except archdsl.ArchTypeError as e:
        assert "op 'local_gate' (registered from Python)" in e.message
        assert "<lambda> cannot be imported" in e.message
        assert e.line == 3
    else:
        raise AssertionError("expected an ArchTypeError")
    finally:
        archdsl.unregister_op("local_gate")


def test_py_writes_a_registered_op_of_a_known_class_as_its_constructor() -> None:
    archdsl.register_op(
        "wide",
        params={},
        infer=lambda a, s: (8, *s[0][1:]),
        build=lambda a, s: nn.Conv2d(s[0][0], 8, 1),
    )
    try:
        source = archdsl.emit_python(archdsl.check("network n { input [3, 4, 4]; w: wide }"))
    finally:
        archdsl.unregister_op("wide")
    assert "self.w = nn.Conv2d(3, 8, kernel_size=1)" in source
    assert not [
        line for line in source.splitlines() if line.startswith("from ") and "torch" not in line
    ]


@pytest.mark.slow
@pytest.mark.parametrize("name", archdsl.list_specs())
def test_py_state_dict_of_every_bundled_spec(name: str) -> None:
    graph = archdsl.load_graph(name)
    source = archdsl.emit_python(graph)
    assert max(len(line) for line in source.splitlines()) <= python_source.LINE_LENGTH
    namespace: dict = {}
    exec(compile(source, f"{name}.py", "exec"), namespace)
    with torch.device("meta"):
        emitted = namespace[namespace["__all__"][0]]()
    compiled = archdsl.build(graph, device="meta")
    assert [(k, v.shape) for k, v in emitted.state_dict().items()] == [
        (k, v.shape) for k, v in compiled.state_dict().items()
    ]
    # every module with state is constructed exactly as archdsl constructs it
    for path, module in compiled.named_modules():
        if not any(True for _ in module.parameters(recurse=False)) and not list(
            module.buffers(recurse=False)
        ):
            continue
        assert repr(emitted.get_submodule(path)) == repr(module), path
