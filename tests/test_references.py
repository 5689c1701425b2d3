"""References, ``@path``: a chain that starts from a module computed earlier.

Each network here is checked against the same network written in torch in the test (the
oracle), after loading its weights: keys, shapes and float64 outputs; then through the
``.py`` output, the exports and the inference rewrites. The scopes a reference crosses are
opened (their modules keep their paths), and no ReLU or sum may overwrite a value that a
reference reads later.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import archdsl
from archdsl.backends.torch_backend import build
from archdsl.fmt import format_source
from emitted import assert_every_output_computes, assert_py_computes_the_same
from reference import fill

# A feature pyramid's top-down path over a three-stage body (Lin et al., CVPR 2017): the
# coarsest map's 1x1 projection, brought up by 2 and added to the next map's projection,
# twice; each sum read by the next level (`p2: ()` names a value without making a module).
# The body is a block instance: reading its stages opens it.
FPN = """
block stage(out, stride) {
  conv(out, 3, stride=stride, padding=1, bias=false) -> bn -> relu
}

block body() {
  stem: conv(8, 3, padding=1) -> relu
  -> layer1: stage(8, 1) -> layer2: stage(16, 2) -> layer3: stage(32, 2)
}

network fpn_toy {
  input [3, 32, 32]
  body: body()
  @body.layer3 -> inner3: conv(16, 1)
  add { @body.layer2 -> inner2: conv(16, 1); @inner3 -> upsample(2) } -> p2: ()
  add { @body.layer1 -> inner1: conv(16, 1); @p2 -> upsample(2) }
  -> smooth: conv(16, 3, padding=1) -> relu
}
"""


class TorchStage(nn.Sequential):
    def __init__(self, cin: int, out: int, stride: int) -> None:
        super().__init__(
            nn.Conv2d(cin, out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(),
        )


class TorchBody(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.layer1 = TorchStage(8, 8, 1)
        self.layer2 = TorchStage(8, 16, 2)
        self.layer3 = TorchStage(16, 32, 2)


class TorchFPN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = TorchBody()
        self.inner3 = nn.Conv2d(32, 16, 1)
        self.inner2 = nn.Conv2d(16, 16, 1)
        self.inner1 = nn.Conv2d(8, 16, 1)
        self.smooth = nn.Conv2d(16, 16, 3, padding=1)

    def levels(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c1 = self.body.layer1(F.relu(self.body.stem(x)))
        c2 = self.body.layer2(c1)
        c3 = self.body.layer3(c2)
        p3 = self.inner3(c3)
        p2 = self.inner2(c2) + F.interpolate(p3, scale_factor=2.0)
        p1 = self.inner1(c1) + F.interpolate(p2, scale_factor=2.0)
        return {"inner3": p3, "p2": p2, "smooth": self.smooth(p1)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.levels(x)["smooth"])


def test_a_feature_pyramid_is_the_torch_network() -> None:
    net = fill(archdsl.compile(FPN))
    oracle = TorchFPN()
    assert [(k, v.shape) for k, v in net.state_dict().items()] == [
        (k, v.shape) for k, v in oracle.state_dict().items()
    ]
    oracle.load_state_dict(net.state_dict(), strict=True)
    net.double().eval()
    oracle.double().eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), oracle(x), rtol=1e-12, atol=1e-12)


def test_a_backbone_returns_the_pyramids_levels_named_by_labels_of_no_module() -> None:
    """``outputs=`` takes a label of no module (``p2: ()``) as it takes a module's path."""
    levels = fill(archdsl.compile(FPN, outputs=["inner3", "p2", "smooth"])).double().eval()
    oracle = TorchFPN().double().eval()
    oracle.load_state_dict(levels.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        got, want = levels(x), oracle.levels(x)
    assert list(got) == ["inner3", "p2", "smooth"]
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-12, atol=1e-12)
    with pytest.raises(archdsl.ArchNameError, match="has no module 'p3' to output"):
        archdsl.compile(FPN, outputs=["p3"])


def test_a_loop_names_its_references_by_interpolated_labels() -> None:
    """The same pyramid as a loop over the levels: `@body.layer{i}`, `@p{i + 1}`."""
    looped = (
        FPN.split("network fpn_toy")[0]
        + """
    network fpn_loop {
      input [3, 32, 32]
      body: body()
      @body.layer3 -> inner3: conv(16, 1) -> p3: ()
      for i in [2, 1] {
        add { @body.layer{i} -> inner{i}: conv(16, 1); @p{i + 1} -> upsample(2) } -> p{i}: ()
      }
      -> smooth: conv(16, 3, padding=1) -> relu
    }"""
    )
    net = fill(archdsl.compile(FPN)).eval()
    loop = archdsl.compile(looped).eval()
    loop.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loop(x), net(x), rtol=0, atol=0)


def test_a_reference_may_compute_a_members_number() -> None:
    """``@inner.{k}``: the numbered members of a seq read in a loop, as a pyramid over a
    seq of lateral convolutions is (torchvision's ``inner_blocks``), gives the network
    written out; a number that is not one is refused at the braces."""
    head = FPN.split("network fpn_toy")[0]
    written = """
    network n {
      input [3, 32, 32]
      body: body()
      inner: seq {
        @body.layer1 -> seq { conv(16, 1) }
        @body.layer2 -> seq { conv(16, 1) }
        @body.layer3 -> seq { conv(16, 1) }
      }
      @inner.2 -> p2: ()
      add { @inner.1; @p2 -> resize(@inner.1) } -> p1: ()
      add { @inner.0; @p1 -> resize(@inner.0) }
    }"""
    looped = """
    network n {
      input [3, 32, 32]
      body: body()
      inner: seq { for i in [1, 2, 3] { @body.layer{i} -> seq { conv(16, 1) } } }
      @inner.2 -> p2: ()
      for k in [1, 0] {
        add { @inner.{k}; @p{k + 1} -> resize(@inner.{k}) } -> p{k}: ()
      }
    }"""
    net = fill(archdsl.compile(head + written)).eval()
    loop = archdsl.compile(head + looped).eval()
    loop.load_state_dict(net.state_dict(), strict=True)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loop(x), net(x), rtol=0, atol=0)
    for bad, word in (("{k - 2}", "int -1"), ("{0.5}", "float 0.5"), ("{[1]}", "list")):
        with pytest.raises(archdsl.ArchTypeError, match=f"a part of a module path .* {word}"):
            archdsl.check(head + looped.replace("@inner.{k};", f"@inner.{bad};"))


def test_the_scopes_a_reference_crosses_are_opened_and_no_others() -> None:
    graph = archdsl.check(FPN)
    assert "body" not in graph.scopes  # read out of: opened
    assert {"body.layer1", "body.layer2", "body.layer3"} <= set(graph.scopes)  # still modules
    net = archdsl.build(graph)
    x = torch.randn(1, 3, 32, 32)
    assert net.body.layer2(net.body.layer1(torch.relu(net.body.stem(x)))).shape == (1, 16, 16, 16)
    # a reference to a module of the scope the chain is in crosses nothing
    same_level = archdsl.check("""
    block body() { stem: conv(8, 3, padding=1) -> relu -> layer1: conv(8, 3, padding=1) }
    network t {
      input [3, 8, 8]
      body: body() -> head: conv(4, 1)
      @body -> other: conv(4, 1)
    }""")
    assert "body" in same_level.scopes


def test_a_reference_into_a_seq_opens_the_seq_it_is_read_in() -> None:
    net = fill(
        archdsl.compile("""
    network t {
      input [3, 8, 8]
      stem: conv(4, 3, padding=1) -> relu
      -> head: seq { conv(4, 3, padding=1); add { (); @stem -> conv(4, 1) }; relu }
    }""")
    )
    graph = net.archdsl_graph
    assert "head" not in graph.scopes
    assert list(net.state_dict()) == [
        "stem.weight",
        "stem.bias",
        "head.0.weight",
        "head.0.bias",
        "head.1.weight",
        "head.1.bias",
    ]
    x = torch.randn(2, 3, 8, 8)
    sd = net.state_dict()
    s = F.conv2d(x, sd["stem.weight"], sd["stem.bias"], padding=1)
    h = F.conv2d(F.relu(s), sd["head.0.weight"], sd["head.0.bias"], padding=1)
    want = F.relu(h + F.conv2d(s, sd["head.1.weight"], sd["head.1.bias"]))
    torch.testing.assert_close(net(x), want)


def test_no_in_place_op_overwrites_a_value_a_reference_reads_later() -> None:
    """The ReLU after ``a`` and the sum after ``b`` run in place in general; here ``@a``
    and ``@b`` read their inputs again later, so they must not: the outputs and gradients
    of the network built with in-place ops are those of the one built without."""
    spec = """
    network t {
      input [4, 8, 8]
      a: conv(4, 3, padding=1) -> relu -> b: conv(4, 3, padding=1)
      -> add { (); conv(4, 1) } -> relu
      @a -> relu -> c: conv(4, 1)
      add { (); @b -> relu } -> relu
    }"""
    graph = archdsl.check(spec)
    x = torch.randn(2, 4, 8, 8)
    results = []
    for inplace in (True, False):
        net = fill(build(graph, inplace=inplace))
        xi = x.clone().requires_grad_()
        out = net(xi)
        out.square().sum().backward()
        results.append((out.detach(), xi.grad))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=0)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=0, atol=0)


def test_py_output_exports_and_inference_rewrites_compute_the_same(tmp_path: Path) -> None:
    assert_every_output_computes(fill(archdsl.compile(FPN)), torch.randn(2, 3, 32, 32), tmp_path)


def test_a_side_output_from_a_reference_reads_inside_the_backbone(tmp_path: Path) -> None:
    """torchvision's auxiliary heads: a training-only output read from inside the backbone,
    its modules at the network's top level."""
    net = fill(
        archdsl.compile("""
    block body() {
      stem: conv(8, 3, padding=1) -> relu
      -> layer1: conv(8, 3, padding=1) -> relu -> layer2: conv(16, 3, stride=2, padding=1)
    }
    network t {
      input [3, 16, 16]
      outputs(out, aux=aux_head)
      backbone: body()
      @backbone.layer1 -> side aux_head: (pool: global_avgpool(flatten=true) -> fc: linear(5))
      @backbone -> head: seq { global_avgpool(flatten=true); linear(5) }
    }""")
    )
    keys = list(net.state_dict())
    assert keys[:2] == ["backbone.stem.weight", "backbone.stem.bias"]
    assert "aux_head.fc.weight" in keys and "head.1.weight" in keys
    x = torch.randn(2, 3, 16, 16)
    sd = net.state_dict()
    layer1 = F.conv2d(
        F.relu(F.conv2d(x, sd["backbone.stem.weight"], sd["backbone.stem.bias"], padding=1)),
        sd["backbone.layer1.weight"],
        sd["backbone.layer1.bias"],
        padding=1,
    )
    net.train()
    out = net(x)
    assert out._fields == ("out", "aux")
    torch.testing.assert_close(
        out.aux, F.linear(layer1.mean((2, 3)), sd["aux_head.fc.weight"], sd["aux_head.fc.bias"])
    )
    net.eval()
    torch.testing.assert_close(net(x), out.out)
    assert_py_computes_the_same(net, x, tmp_path)


@pytest.mark.parametrize(
    ("written", "formatted"),
    [
        ("@ a -> relu", "@a -> relu"),
        (
            "add { @a ;  @features.4.conv{i + 1}-{j}.0->relu }",
            "add { @a; @features.4.conv{i + 1}-{j}.0 -> relu }",
        ),
        ("@features.{ k+1 }.conv -> relu", "@features.{k + 1}.conv -> relu"),
    ],
)
def test_fmt_writes_a_reference_as_one_word(written: str, formatted: str) -> None:
    text = format_source(f"network t {{\n  input [3, 8, 8]\n  {written}\n}}\n")
    assert text.splitlines()[2].strip() == formatted


def test_lint_names_a_chain_that_a_reference_leaves_behind() -> None:
    from archdsl.elaborate.loader import Loader
    from archdsl.passes.lint import lint

    text = """network t {
  input [4, 8, 8]
  a: conv(4, 3, padding=1) -> relu -> b: conv(4, 3, padding=1)
  @a -> relu -> c: conv(4, 1)
}
"""
    module = Loader().load_source(text)
    warnings = [w for w in lint(module, [archdsl.check(text)]) if w.code == "unused-value"]
    assert [(w.span.line, w.span.column) for w in warnings] == [(3, 42)]
    assert "conv 'b'" in warnings[0].message
    read_later = text.replace("@a -> relu -> c: conv(4, 1)", "add { (); @a } -> c: conv(4, 1)")
    module = Loader().load_source(read_later)
    assert not [w for w in lint(module, [archdsl.check(read_later)]) if w.code == "unused-value"]


def test_a_block_reads_into_its_own_seq_in_every_instance(tmp_path: Path) -> None:
    """Inside a block a reference names the instance's own modules; the seq it reads into
    is opened in each instance, the instances of one structure included (which otherwise
    share one generated class)."""
    net = fill(
        archdsl.compile("""
    block unit(c) {
      a: seq { conv(c, 3, padding=1); relu } -> b: conv(c, 3, padding=1)
      add { (); @a.0 -> conv(c, 1) }
    }
    network t { input [4, 8, 8]; u1: unit(4) -> u2: unit(4) -> u3: unit(8) }""")
    )
    graph = net.archdsl_graph
    assert {"u1", "u2", "u3"} <= set(graph.scopes) and not {"u1.a", "u2.a"} & set(graph.scopes)
    sd = net.state_dict()

    def unit(x: torch.Tensor, u: str) -> torch.Tensor:
        a0 = F.conv2d(x, sd[f"{u}.a.0.weight"], sd[f"{u}.a.0.bias"], padding=1)
        b = F.conv2d(F.relu(a0), sd[f"{u}.b.weight"], sd[f"{u}.b.bias"], padding=1)
        return b + F.conv2d(a0, sd[f"{u}.2.weight"], sd[f"{u}.2.bias"])

    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(net(x), unit(unit(unit(x, "u1"), "u2"), "u3"))
    assert_py_computes_the_same(net, x, tmp_path)


@pytest.mark.parametrize(
    "body",
    [
        # a repeated block read by its number: the repetition's group is opened
        "stage: blk(4) x 3 -> concat { @stage.0; @stage.1; () }",
        # each step of a loop reads the one before it, by an interpolated label
        "c0: conv(4, 3, padding=1)\n"
        "for i in range(1, 4) { add { @c{i - 1} -> relu; () } -> c{i}: conv(4, 3, padding=1) }",
        # a merge of references only, inside a seq (opened: the values come from outside)
        "a: conv(4, 1) -> b: conv(4, 1)\nhead: seq { concat { @a; @b } -> conv(4, 1) }",
    ],
)
def test_references_write_out_and_script(body: str, tmp_path: Path) -> None:
    net = fill(
        archdsl.compile(
            "block blk(c) { conv(c, 3, padding=1) -> relu }\n"
            f"network t {{\n  input [4, 8, 8]\n  {body}\n}}"
        )
    )
    x = torch.randn(2, 4, 8, 8)
    assert_py_computes_the_same(net, x, tmp_path)
    scripted = torch.jit.script(net.eval())
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), rtol=0, atol=0)
