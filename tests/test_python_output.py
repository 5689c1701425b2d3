"""The ``.py`` output of ``archdsl compile -o``: standalone PyTorch source.

The emitted file is imported the way a user would (``importlib``) and must compute what the
compiled module computes with its weights, and read like code a person would write (names,
classes, their parameters and docstrings, arithmetic, layout as ``ruff format``'s). The
modules it constructs (the deformable convolution it carries, ops registered from Python,
every bundled spec's modules as archdsl builds them) are tested in
test_python_output_modules.py.
"""

from __future__ import annotations

import ast as pyast
import doctest
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import archdsl
from archdsl.backends import python_exprs, python_layout, python_source
from archdsl.elaborate.evaluate import Env, evaluate
from archdsl.elaborate.values import InShape
from archdsl.errors import ArchError, Span
from archdsl.frontend import ast
from emitted import MIXED, emitted_class, import_source, run_both

RES = 64  # resolution for the big networks: small enough to be quick, every stage still runs


@pytest.fixture(scope="module")
def mixed() -> nn.Module:
    torch.manual_seed(0)
    return archdsl.compile(MIXED)


# ---- .py ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_py_matches_the_compiled_network(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = archdsl.load(name)
    cls = emitted_class(net, tmp_path)
    assert cls.__name__ == python_source.camel(name)
    emitted = cls()
    emitted.load_state_dict(net.state_dict(), strict=True)
    assert [(k, v.shape) for k, v in emitted.state_dict().items()] == [
        (k, v.shape) for k, v in net.state_dict().items()
    ]
    x = torch.randn(2, 3, RES, RES, generator=torch.Generator().manual_seed(2))
    ya, yb = run_both(net, emitted, x, training=False)
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)


def test_py_refuses_a_module_whose_weights_left_its_network(tmp_path: Path) -> None:
    """The source describes the network; a module changed since archdsl built it (batch
    norms folded, a head replaced) would not load into it, so it is refused, saying why."""
    net = archdsl.load("resnet18", num_classes=10)
    folded = archdsl.optimize_for_inference(net)
    with pytest.raises(ValueError, match=r"missing bn1\.bias, .*new conv1\.bias, .*\.pt2"):
        archdsl.export(folded, tmp_path / "folded.py")
    net.fc = nn.Linear(512, 3)
    with pytest.raises(ValueError, match=r"other shape fc\.bias, fc\.weight\)"):
        archdsl.emit_python(net)
    assert not (tmp_path / "folded.py").exists()


# Nothing labelled: numbered members (a name cannot start with their digits) inside
# classes whose widths differ between instances, and inside an inline seq.
UNLABELLED = """
block se(r = 4) {
  mul { (); global_avgpool -> conv(in.c // r, 1) -> relu -> conv(in.c, 1) -> sigmoid }
}
block res(c, s = 1) {
  add {
    (conv(c, 3, stride=s, padding=1) -> bn -> relu -> conv(c, 3, padding=1) -> bn -> se())
    if s != 1 or in.c != c { seq { conv(c, 1, stride=s); bn } }
  }
  -> relu
}
network toy {
  input [3, 16, 16]
  conv(8, 3, padding=1) -> res(8) -> res(16, 2) -> res(24, 2)
  -> seq { conv(24, 1) -> mid: conv(24, 3, padding=1) }
  -> global_avgpool(flatten=true) -> linear(10)
}
"""


def test_py_of_unlabelled_layers_is_python(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = archdsl.compile(UNLABELLED)
    source = archdsl.emit_python(net)
    # se's squeeze `in.c // r` as the spec writes it; `r` keeps its default
    assert "def __init__(self, in_channels: int, r: int = 4)" in source
    assert "nn.Conv2d(in_channels, in_channels // r, kernel_size=1)" in source
    assert 'self.add_module("5", Se(out_channels))' in source
    assert "class Seq(nn.Module):" in source  # the seq numbered 5, not "class 5"
    emitted = import_source(source, tmp_path / "unlabelled.py").Toy()
    emitted.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    ya, yb = run_both(net, emitted, x, training=False)
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)


def test_py_training_outputs_in_the_order_of_the_fields(tmp_path: Path) -> None:
    """googlenet's outputs(logits=out, aux_logits2=aux2, aux_logits1=aux1): the emitted
    file returns the three tensors in that order, as the compiled module does."""
    torch.manual_seed(0)
    net = archdsl.load("googlenet", resolution=RES)
    source = archdsl.emit_python(net)
    assert "return x, aux2, aux1  # (logits, aux_logits2, aux_logits1)" in source
    emitted = import_source(source, tmp_path / "googlenet_py.py").Googlenet()
    emitted.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(2, 3, RES, RES)
    ya, yb = run_both(net, emitted, x, training=True)  # same seed: same dropout masks
    assert ya.names == ("logits", "aux_logits2", "aux_logits1") and len(yb) == 3
    for a, b in zip(ya, yb):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert not torch.equal(ya.aux_logits1, ya.aux_logits2)


def test_py_side_outputs_merges_and_training_mode(mixed: nn.Module, tmp_path: Path) -> None:
    emitted = emitted_class(mixed, tmp_path)()
    emitted.load_state_dict(mixed.state_dict(), strict=True)
    x = torch.randn(3, 3, 20, 20)
    ya, yb = run_both(mixed, emitted, x, training=False)
    torch.testing.assert_close(yb, ya, rtol=0, atol=0)
    ya, yb = run_both(mixed, emitted, x, training=True)  # same seed: same dropout masks
    assert isinstance(yb, tuple) and len(yb) == len(ya) == 3
    for a, b in zip(ya, yb):
        torch.testing.assert_close(b, a, rtol=0, atol=0)


def test_py_reads_like_hand_written_code(mixed: nn.Module) -> None:
    source = archdsl.emit_python(mixed)
    imports = [line for line in source.splitlines() if re.match(r"(import|from) ", line)]
    # torch alone (GlobalPool2d, a small helper class the file carries, uses F)
    assert imports == ["import torch", "import torch.nn.functional as F", "from torch import nn"]
    assert "class GlobalPool2d(nn.Module):" in source
    docstring, code = source.split('"""\n', 1)[0], source.split('"""\n', 1)[1]
    assert "archdsl" in docstring and "archdsl" not in code
    assert "pickle" not in source
    # numbered members with state keep their numbers (state_dict keys 'mix.0.weight' ...)
    assert 'self.add_module("0", nn.Conv2d(8, 4, kernel_size=1))' in source
    assert 'out = getattr(self, "0")(x)' in source
    assert '__all__ = ["Mixed"]' in source
    forward = source.split("class Mixed(nn.Module):")[1].split("def forward")[1]
    assert "early = self.early(x) if self.training else None  # N x 3" in forward
    assert "if self.training:\n            return x, early, late\n        return x" in forward
    assert "x = self.stage(x)  # N x 12 x 5 x 5" in forward  # shape comments
    unit = source.split("class Unit")[1]  # repeated blocks share a parametrised class
    assert "torch.cat([" in source and " * " in source and "out = out + " in unit
    assert max(len(line) for line in source.splitlines()) <= python_source.LINE_LENGTH


def test_py_parameters_take_the_names_the_spec_gives_their_values() -> None:
    """A class parameter is named as the block names its values (a parameter or local of
    the block, or of a block written inline in it); two arguments always equal to one
    such name become one parameter."""
    googlenet = archdsl.emit_python(archdsl.load_graph("googlenet"))
    assert re.search(  # torchvision's own signature, from inception(ch1x1, ch3x3red, ...)
        r"class Inception\(nn.Module\):.*?def __init__\(\s*self,\s*in_channels: int,\s*"
        r"ch1x1: int,\s*ch3x3red: int,\s*ch3x3: int,\s*ch5x5red: int,\s*ch5x5: int,\s*"
        r"pool_proj: int,\s*\)",
        googlenet,
        re.DOTALL,
    )
    # the block's local `width` before its parameter `planes`, equal to it in resnet50
    resnet = archdsl.emit_python(archdsl.load_graph("resnet50"))
    assert "def __init__(self, in_channels: int, width: int)" in resnet
    # a parameter named after one of the block's with a literal default takes it, goes
    # last, and calls leave it out where they would pass the default
    assert "int, out_channels: int, stride: int = 1) -> None:" in resnet
    assert "BottleneckDownsample(64, 64, 256), Bottleneck(256, 64)" in resnet
    assert "BottleneckDownsample(256, 128, 512, stride=2)," in resnet
    inception = archdsl.emit_python(archdsl.load_graph("inception_v3"))
    assert "kernel: int | tuple[int, ...],\n        stride: int = 1,\n" in inception
    assert "self.branch1x1 = BasicConv(in_channels, 64, kernel=1)\n" in inception
    assert "self.branch5x5_2 = BasicConv(48, 64, kernel=5, padding=2)\n" in inception
    # a local that only renames a parameter (c7 = channels_7x7) comes after it
    assert "def __init__(self, channels_7x7: int)" in inception
    residual = "-> conv(out, 1)", "-> relu -> add { (); conv(hidden, 1) } -> conv(out, 1)"
    labelled = "; unit(8, 2) -> unit(6, 3)", "; u0: unit(8, 2) -> u1: unit(6, 3)"
    source = archdsl.emit_python(
        archdsl.check(NUMBERED_UNITS.replace(*residual).replace(*labelled))
    )
    unit = source.split("class Unit(nn.Module):")[1].split("class ")[0]
    assert re.search(
        r"def __init__\(self, in_channels: int, hidden: int, out_channels: int\)", unit
    )
    assert "nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)" in unit
    assert "self.u1 = Unit(8, 24, 6)" in source  # in 8, hidden 8 * 3, out 6


NUMBERED_UNITS = """
block unit(out, t) {
  hidden = in.c * t
  conv(hidden, 1) -> conv(hidden, 3, padding=1, groups=hidden) -> conv(out, 1)
}
network net { input [4, 8, 8]; unit(8, 2) -> unit(6, 3) -> unit(4, 2) }
"""


# `unit` passes its `size` to `cbr` as `k`, whose padding the spec computes from it;
# `odd` pads by `k // 2` in one instance and by 0 in the other, with the same structure.
DERIVED = """
block cbr(out, k) {
  conv(out, k, padding=(k - 1) // 2, bias=false) -> bn -> relu
}
block unit(size, wide) {
  a: cbr(wide, size) -> b: cbr(wide, 3)
}
block odd(k, same) {
  if same { c: conv(8, k, padding=k // 2) } else { c: conv(8, k, padding=0) }
}
network net {
  input [3, 32, 32]
  u1: unit(3, 8) -> u2: unit(5, 12) -> u3: unit(7, 16) -> o1: odd(3, true) -> o2: odd(5, false)
}
"""


def class_body(source: str, name: str) -> str:
    """The text of the emitted class ``name``, up to the next class."""
    return source.split(f"class {name}(nn.Module):")[1].split("\nclass ")[0]


def assert_computes_as(net: nn.Module, tmp_path: Path, x: torch.Tensor) -> None:
    """The emitted class takes ``net``'s weights strictly and computes what it computes."""
    emitted = emitted_class(net, tmp_path)()
    emitted.load_state_dict(net.state_dict(), strict=True)
    want, got = run_both(net, emitted, x, training=False)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_py_writes_an_argument_as_the_spec_computes_it(tmp_path: Path) -> None:
    """A parameter the spec computes from others (padding from the kernel) is no parameter:
    the argument is written as the spec's arithmetic over the class's own parameter names,
    where that arithmetic gives its value in every instance."""
    efficientnet = archdsl.emit_python(archdsl.load_graph("efficientnet_b0"))
    block = class_body(efficientnet, "MbconvExpand")
    assert "padding=(kernel - 1) // 2," in block and "padding: int" not in block
    assert "MbconvExpand(16, 96, kernel=3, stride=2, squeeze=4, out_channels=24)" in efficientnet
    senet = archdsl.emit_python(archdsl.load_graph("senet154"))
    assert "padding=shortcut_kernel // 2," in senet  # the spec's own `shortcut_kernel // 2`
    assert "shortcut_kernel=3, padding=" not in senet
    # conv1's width is `planes * 2`: the class takes `planes`, which no slot holds itself
    block = class_body(senet, "SenetBottleneck")
    assert "def __init__(self, in_channels: int, planes: int, reduced: int)" in block
    assert "self.conv1 = nn.Conv2d(in_channels, planes * 2, kernel_size=1, bias=False)" in block
    assert "self.bn1 = nn.BatchNorm2d(planes * 2)" in block
    assert "SenetBottleneck(256, 64, 16)," in senet

    torch.manual_seed(0)
    net = archdsl.compile(DERIVED)
    source = archdsl.emit_python(net)
    unit = class_body(source, "Unit")
    assert "def __init__(self, in_channels: int, out_channels: int, size: int)" in unit
    assert "kernel_size=size, padding=(size - 1) // 2," in unit  # `k` is `size` here
    odd = class_body(source, "Odd")
    assert "def __init__(self, in_channels: int, k: int, padding: int)" in odd
    assert "self.o2 = Odd(8, k=5, padding=0)" in source
    assert_computes_as(net, tmp_path, torch.randn(2, 3, 32, 32))

    # a width computed from the block's `c`, which is the class's input width in the
    # blocks that keep their width and its output width in those that widen
    net = archdsl.compile(BOTTLENECKS)
    source = archdsl.emit_python(net)
    keep = class_body(source, "BneckSkip")
    assert "def __init__(self, in_channels: int) -> None:" in keep
    assert "nn.Conv2d(in_channels, in_channels // 4, kernel_size=1, bias=False)" in keep
    widen = class_body(source, "Bneck")
    assert "def __init__(self, in_channels: int, out_channels: int) -> None:" in widen
    assert "nn.Conv2d(out_channels // 4, out_channels, kernel_size=1, bias=False)" in widen
    assert "self.b1 = Bneck(16, 32)" in source and "self.b2 = BneckSkip(32)" in source
    assert_computes_as(net, tmp_path, torch.randn(2, 3, 16, 16))


def test_py_keeps_a_parameter_whose_values_only_match_a_computed_one(tmp_path: Path) -> None:
    """Two arguments with equal values in every instance are one parameter only when the
    spec computes them alike: a stride of 1 then 2 beside a padding of `(k - 1) // 2`
    (k 3 then 5), or of `max(1, k // 2)`, stays `stride=stride`, and the padding is
    written as the spec computes it or is a parameter of its own; widths the spec passes
    as two names keep both; `groups=in.c` reads the class's input width."""
    torch.manual_seed(0)
    net = archdsl.compile(COINCIDENT)
    source = archdsl.emit_python(net)
    dw = class_body(source, "Dw")
    assert "stride=stride, padding=(k - 1) // 2," in dw
    assert "self.a = Dw(k=3, stride=1)" in source and "self.b = Dw(k=5, stride=2)" in source
    wide = class_body(source, "Wide")
    assert "stride=stride, padding=padding)" in wide
    assert "self.d = Wide(k=5, stride=2, padding=2)" in source
    # SqueezeNet's fire: both expansions as wide in every instance, each named as passed
    fire = class_body(source, "Fire")
    assert "def __init__(self, in_channels: int, squeeze: int, e1: int, e3: int)" in fire
    assert "self.expand3x3 = nn.Conv2d(squeeze, e3, kernel_size=3, padding=1)" in fire
    assert "self.f1 = Fire(8, 4, 6, 6)" in source
    # a depthwise convolution's `groups=in.c` is the class's input width, no parameter
    sep = class_body(source, "Sep")
    assert "def __init__(self, in_channels: int, out_channels: int)" in sep
    assert "kernel_size=3, padding=1, groups=in_channels\n" in sep
    assert "self.s1 = Sep(20, 16)" in source and "self.s2 = Sep(16, 24)" in source
    assert_computes_as(net, tmp_path, torch.randn(2, 3, 32, 32))


# In `dw` and `wide` the stride's values are those of the padding the spec computes; in
# `fire` the two expansions have the same widths; `sep`'s groups are its input width.
COINCIDENT = """
block dw(k, stride) { c: conv(in.c, k, stride=stride, padding=(k - 1) // 2, groups=in.c) }
block wide(k, stride) { c: conv(8, k, stride=stride, padding=max(1, k // 2)) }
block fire(squeeze, e1, e3) {
  squeeze: conv(squeeze, 1)
  -> concat { expand1x1: conv(e1, 1); expand3x3: conv(e3, 3, padding=1) }
}
block sep(out) { conv1: conv(in.c, 3, padding=1, groups=in.c) -> pointwise: conv(out, 1) }
network net {
  input [3, 32, 32]
  stem: conv(8, 1) -> a: dw(3, 1) -> b: dw(5, 2) -> c: wide(3, 1) -> d: wide(5, 2)
  -> f1: fire(4, 6, 6) -> f2: fire(8, 10, 10) -> s1: sep(16) -> s2: sep(24)
}
"""


def test_py_of_labels_with_a_dash(tmp_path: Path) -> None:
    """A label such as torchvision's RegNet's ``block1-0`` is registered with ``add_module``
    and called through ``getattr``; names made from it write ``_`` for ``-``."""
    torch.manual_seed(0)
    net = archdsl.compile(DASHED)
    source = archdsl.emit_python(net)
    b = class_body(source, "B")
    assert "def __init__(self, in_channels: int, p_1_out_channels: int, out_channels: int)" in b
    assert 'self.add_module("p-1", nn.Conv2d(in_channels, p_1_out_channels, kernel_size=1))' in b
    assert 'out = getattr(self, "m-1")(x)' in class_body(source, "R")
    assert "class S1(nn.Module):" in source and 'self.add_module("s-1", S1())' in source
    assert_computes_as(net, tmp_path, torch.randn(2, 3, 8, 8))


DASHED = """
block b(c) { p-1: conv(max(c, 4) + 1, 1) -> q-2: conv(c, 1) }
block r(c) { add { (m-1: conv(c, 3, padding=1) -> relu); y-1: conv(c, 1) } -> z-1: relu }
network n {
  input [3, 8, 8]
  u-1: b(8) -> u-2: b(16) -> s-1: (r(16) -> k-1: conv(16, 1)) -> t-1: r(8)
}
"""


BOTTLENECKS = """
block bneck(c, stride = 1) {
  add {
    (conv(c // 4, 1, bias=false) -> bn -> relu
     -> conv(c // 4, 3, stride=stride, padding=1, bias=false) -> bn -> relu
     -> conv(c, 1, bias=false) -> bn)
    if stride != 1 or in.c != c { conv(c, 1, stride=stride, bias=false) -> bn }
  }
  -> relu
}
network net {
  input [3, 16, 16]
  stem: conv(16, 3, padding=1); a1: bneck(16); a2: bneck(16)
  b1: bneck(32, 2); b2: bneck(32); c1: bneck(64, 2); c2: bneck(64)
}
"""


# Two dense blocks of three layers, and a block that narrows its input by 4 and widens it back.
WIDENING = """
block layer(growth) { norm: bn -> relu -> conv: conv(growth, 3, padding=1, bias=false) }
block dense(n, growth) {
  for i in range(n) { concat { (); layer{i + 1}: layer(growth) } }
}
block shrink() { a: conv(in.c - 4, 1) -> b: conv(in.c, 1) }
network net {
  input [3, 16, 16]
  stem: conv(8, 3, padding=1) -> d1: dense(3, 4) -> s1: shrink()
  -> t: conv(12, 1) -> d2: dense(3, 4) -> s2: shrink()
}
"""


def test_py_writes_widths_as_offsets_of_the_input_width(tmp_path: Path) -> None:
    """A channel count that is the class's input width plus the same number in every
    instance is written as that sum, not as a parameter of its own."""
    densenet = archdsl.emit_python(archdsl.load_graph("densenet169"))
    block = class_body(densenet, "DenseBlock32")
    assert "def __init__(self, in_channels: int) -> None:" in block
    assert "self.denselayer2 = DenseLayer(in_channels + 32)\n" in block
    assert "self.denselayer32 = DenseLayer(in_channels + 992)\n" in block
    assert "self.denseblock4 = DenseBlock32(640)" in densenet

    torch.manual_seed(0)
    net = archdsl.compile(WIDENING)
    source = archdsl.emit_python(net)
    assert "self.layer3 = Layer(in_channels + 8)" in source  # from 8 and from 12
    assert "self.a = nn.Conv2d(in_channels, in_channels - 4, kernel_size=1)" in source
    assert "self.d2 = Dense(12)" in source and "self.s1 = Shrink(20)" in source
    assert_computes_as(net, tmp_path, torch.randn(2, 3, 16, 16))


def _arithmetic(names: list[str]) -> st.SearchStrategy[ast.Expr]:
    at = Span("<string>", 1, 1)
    leaves = st.one_of(
        st.sampled_from(names).map(lambda n: ast.Name(at, n)),
        st.integers(-9, 9).map(lambda v: ast.Literal(at, v)),
        st.just(ast.Attr(at, ast.InRef(at), "c")),  # in.c
    )
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            inner.map(lambda e: ast.UnaryOp(at, "-", e)),
            st.tuples(st.sampled_from(["+", "-", "*", "//", "%"]), inner, inner).map(
                lambda t: ast.BinOp(at, t[0], t[1], t[2])
            ),
        ),
        max_leaves=8,
    )


@settings(max_examples=300, deadline=None)
@given(
    _arithmetic(["a", "b"]),
    st.fixed_dictionaries(
        {"a": st.integers(-20, 20), "b": st.integers(-20, 20), "in.c": st.integers(1, 20)}
    ),
)
def test_py_arithmetic_reads_as_python_computes_it(expr: ast.Expr, env: dict) -> None:
    """The written arithmetic, run by Python, gives what the spec's does; its parentheses
    are the ones precedence needs."""
    assert python_exprs.free_names(expr) is not None
    words = {k: v for k, v in env.items() if k != "in.c"}
    try:  # what the elaborator computes
        spec = evaluate(expr, Env(words, in_shape=InShape((env["in.c"], 8, 8))))
    except ArchError:  # a division by zero
        spec = None
    assert python_exprs.value(expr, env) == spec
    names = {"a": "alpha", "b": "beta", "in.c": "in_channels"}
    text = python_exprs.render(expr, names)
    try:
        python = eval(text, {"__builtins__": {}}, {names[k]: v for k, v in env.items()})
    except ZeroDivisionError:
        python = None
    assert python == spec, text
    # no parentheses beyond what precedence needs: each pair, taken out, changes the parse
    for i, c in enumerate(text):
        if c == "(":
            close = _closing(text, i)
            bare = text[:i] + text[i + 1 : close] + text[close + 1 :]
            assert pyast.dump(pyast.parse(bare)) != pyast.dump(pyast.parse(text)), text


def _closing(text: str, i: int) -> int:
    depth = 0
    for j in range(i, len(text)):
        depth += {"(": 1, ")": -1}.get(text[j], 0)
        if depth == 0:
            return j
    raise AssertionError(text)


def test_py_is_formatted_as_ruff_formats_it(mixed: nn.Module, tmp_path: Path) -> None:
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed")
    for name, source in [
        ("mixed", archdsl.emit_python(mixed)),
        ("googlenet", archdsl.emit_python(archdsl.load_graph("googlenet"))),
        ("efficientnet_b0", archdsl.emit_python(archdsl.load_graph("efficientnet_b0"))),
        # numbered members of the network, a constructor too long for one line each
        ("numbered", archdsl.emit_python(archdsl.check(NUMBERED_UNITS))),
        # docstrings too long for one line (a long block name and the variant's arguments)
        ("efficientnet_v2_s", archdsl.emit_python(archdsl.load_graph("efficientnet_v2_s"))),
    ]:
        path = tmp_path / f"{name}.py"
        path.write_text(source)
        done = subprocess.run(
            [ruff, "format", "--diff", "--line-length", "100", str(path)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{name}:\n{done.stdout}{done.stderr}"


def test_py_wraps_a_docstring_too_long_for_a_line() -> None:
    source = archdsl.emit_python(archdsl.load_graph("efficientnet_v2_s"))
    assert max(len(line) for line in source.splitlines()) <= python_source.LINE_LENGTH
    wrapped = (
        r'    """The block ``fused_mbconv`` \(efficientnet_v2.arch, line \d+\) with stride = 2,\n'
        r'    expand_ratio = 4.\n    """\n'
    )
    assert re.search(wrapped, source)


def test_py_is_deterministic() -> None:
    graph = archdsl.load_graph("resnet50")
    assert archdsl.emit_python(graph) == archdsl.emit_python(archdsl.load_graph("resnet50"))


def test_py_layout_splits_like_ruff() -> None:
    group = python_source.Group("f(", ["a" * 40, "b" * 40, "c" * 40], ")")
    assert python_source.layout_lines(group, "") == [
        "f(",
        "    " + "a" * 40 + ",",
        "    " + "b" * 40 + ",",
        "    " + "c" * 40 + ",",
        ")",
    ]
    assert python_source.layout_lines(python_source.Group("f(", ["a", "b"], ")"), "") == ["f(a, b)"]


def test_py_doctests() -> None:
    for module in (python_source, python_layout, python_exprs):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
        assert result.attempted > 0 and result.failed == 0
