"""Elaboration: the naming rule (module paths as torchvision names them), blocks that
branch on ``in``, network parameters and their overrides, and errors that point at the
mistake (``file:line:col``, the rendered line and its caret).

No torch here: ``archdsl.check`` is pure Python.
"""

from __future__ import annotations

from typing import Any

import pytest

import archdsl
from spectext import net, paths

# ---- the naming rule ---------------------------------------------------------------------


def test_labels_name_modules():
    assert paths(net("  a: conv(4, 1) -> b: relu -> c: bn")) == ["a", "b", "c"]


def test_unlabelled_members_are_numbered_counting_labelled_and_stateless():
    src = net(
        "  conv(4, 1) -> relu -> named: bn -> relu\n  -> s: seq { conv(4, 1); relu; mid: bn; relu }"
    )
    assert paths(src) == ["0", "1", "named", "3", "s.0", "s.1", "s.mid", "s.3"]


def test_seq_numbering_nests():
    src = net("  s: seq { relu; seq { relu; relu }; relu }\n  -> seq { relu }")
    assert paths(src) == ["s.0", "s.1.0", "s.1.1", "s.2", "1.0"]
    assert set(archdsl.check(src).scopes) == {"s", "s.1", "1"}


def test_merges_ifs_and_loops_are_transparent():
    src = net(
        "  relu\n"
        "  -> add { conv(4, 1); identity }\n"
        "  -> if true { relu -> relu }\n"
        "  -> for i in range(2) { relu }\n"
        "  -> concat { relu; (relu -> named: relu) }\n"
        "  -> (relu -> relu)\n"
        "  -> relu"
    )
    assert paths(src) == [
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "6",
        "7",
        "8",
        "named",
        "10",
        "11",
        "12",
    ]
    assert archdsl.check(src).scopes == {}


def test_false_if_contributes_no_number():
    src = net(
        "  relu -> if false { conv(4, 1) -> relu } -> relu\n  -> if false { y: relu } else { } -> relu"
    )
    assert paths(src) == ["0", "1", "2"]


# A residual only where the shape is kept, its layers the block's own (timm's blocks).
COND_RESIDUAL = """
block ir(out, stride) {
  add if stride == 1 and in.c == out {
    ()
    a: conv(out, 3, stride=stride, padding=1) -> b: bn
  }
}
network n {
  input [4, 8, 8]
  s: seq { ir(4, 1); ir(8, 2); ir(8, 1) }
}
"""


def test_merge_if_leaves_out_the_passed_on_branches_when_false():
    """`add if c { (); f }` is the residual `add { (); f }` where c holds and `f` alone,
    its modules named as in the residual, where it does not."""
    graph = archdsl.check(COND_RESIDUAL)
    assert paths(COND_RESIDUAL) == ["s.0.a", "s.0.b", "s.1.a", "s.1.b", "s.2.a", "s.2.b"]
    assert [n.scope for n in graph.nodes() if n.op == "add"] == ["s.0", "s.2"]


@pytest.mark.parametrize(
    "merge, channels",
    [
        ("concat if true { (); relu; conv(2, 1); () }", 14),
        ("concat if false { (); relu; conv(2, 1); () }", 6),  # a merge of what is left
        ("concat if false { (); conv(2, 1) }", 2),  # one branch left: that branch
        ("concat if false { (); () }", 4),  # none left: the input, passed on
        ("add if false { identity; relu }", 4),  # identity is a module, not ()
    ],
)
def test_merge_if_false_keeps_what_is_not_passed_on(merge: str, channels: int):
    assert archdsl.check(net(f"  {merge}")).output_shape == (channels, 8, 8)


@pytest.mark.parametrize(
    "merge, message, at",
    [
        ("add if 1 { (); relu }", "'if' needs true or false, got int 1", "1 {"),
        ("add if false { relu }", "add needs at least two branches", "add"),
        ("add if strde == 1 { (); relu }", "unknown name 'strde'", "strde"),
    ],
)
def test_merge_if_errors(merge: str, message: str, at: str):
    src = net(f"  {merge}")
    with pytest.raises(archdsl.ArchError, match=message) as e:
        archdsl.check(src)
    line = src.splitlines()[2]
    assert (e.value.line, e.value.column) == (3, line.index(at) + 1)


def test_zero_repeat_contributes_no_number():
    assert paths(net("  relu -> relu x 0 -> relu")) == ["0", "1"]


def test_unlabelled_block_calls_are_numbered():
    src = "block b() { conv(4, 1) -> r: relu }\n" + net("  b() -> relu -> b -> b() x 2")
    assert paths(src) == ["0.0", "0.r", "1", "2.0", "2.r", "3.0", "3.r", "4.0", "4.r"]
    assert list(archdsl.check(src).scopes) == ["0", "2", "3", "4"]


def test_labelled_repeat_numbers_inside_the_label():
    src = "block b() { conv(4, 1) -> relu }\n" + net("  layer: b() x 3 -> acts: relu x 2 -> relu")
    assert paths(src) == [
        "layer.0.0",
        "layer.0.1",
        "layer.1.0",
        "layer.1.1",
        "layer.2.0",
        "layer.2.1",
        "acts.0",
        "acts.1",
        "2",
    ]
    scopes = archdsl.check(src).scopes
    assert {"layer", "layer.0", "layer.1", "layer.2", "acts"} <= set(scopes)
    assert scopes["layer.1"].kind == "block" and scopes["layer"].kind == "group"


def test_labelled_group_merge_and_loop_open_namespaces():
    src = net(
        "  g: (relu -> relu)\n"
        "  -> m: add { conv(4, 1); identity }\n"
        "  -> f: for i in range(2) { relu }\n"
        "  -> c: if true { relu }"
    )
    assert paths(src) == ["g.0", "g.1", "m.0", "m.1", "f.0", "f.1", "c.0"]


def test_block_labels_and_loop_label_templates():
    src = "block dense(k) { for i in range(k) { denselayer{i + 1}: conv(2, 1) } }\n" + net(
        "  block1: dense(3) -> transition: relu"
    )
    assert paths(src) == [
        "block1.denselayer1",
        "block1.denselayer2",
        "block1.denselayer3",
        "transition",
    ]


def test_duplicate_label_is_an_error():
    with pytest.raises(archdsl.ArchNameError, match="duplicate name 'a'"):
        archdsl.check(net("  a: relu -> a: relu"))
    # the same label in different namespaces is fine
    assert paths(net("  a: relu -> s: seq { a: relu }")) == ["a", "s.a"]


def test_resnet18_paths_follow_torchvision():
    graph = archdsl.load_graph("resnet18")
    p = [n.path for n in graph.nodes() if n.path]
    assert p[:4] == ["conv1", "bn1", "2", "maxpool"]
    assert p[4:10] == [
        "layer1.0.conv1",
        "layer1.0.bn1",
        "layer1.0.2",
        "layer1.0.conv2",
        "layer1.0.bn2",
        "layer1.0.5",
    ]
    assert "layer2.0.downsample.0" in p and "layer2.0.downsample.1" in p
    assert not any(x.startswith("layer1.0.downsample") for x in p)
    assert not any(x.startswith("layer2.1.downsample") for x in p)
    assert p[-3:] == ["avgpool", "9", "fc"]


# ---- blocks branching on `in` -------------------------------------------------------------

FIT = """
block fit(c) {
  if in.c != c { proj: conv(c, 1) }
  -> if in.h > 4 { pool: maxpool(2) } else if in.w > 2 { keep: identity } else { tiny: relu }
}
"""


def test_blocks_branch_on_input_channels_and_size():
    src = FIT + net("  a: fit(4) -> b: fit(6) -> c: fit(6) -> d: maxpool(2) -> e: fit(6)")
    graph = archdsl.check(src)
    assert paths(src) == ["a.pool", "b.proj", "b.keep", "c.keep", "d", "e.tiny"]
    shapes = {n.path: n.shape for n in graph.nodes() if n.path}
    assert shapes["a.pool"] == (4, 4, 4)
    assert shapes["b.proj"] == (6, 4, 4)
    assert graph.output_shape == (6, 2, 2)


def test_parameter_defaults_may_read_in():
    src = "block widen(c = in.c * 2, k = c // 4) { conv(c, k) }\n" + net("  widen() -> widen(k=1)")
    graph = archdsl.check(src)
    convs = [n for n in graph.nodes() if n.op == "conv"]
    assert [(n.attrs["out"], n.shape) for n in convs] == [(8, (8, 7, 7)), (16, (16, 7, 7))]


def test_in_on_flat_input():
    src = "block head(n) { if in.rank == 3 { global_avgpool(flatten=true) } -> linear(n) }\n"
    flat = src + "network n { input [12]; head(in.c * 2) }"
    assert archdsl.check(flat).output_shape == (24,)
    spatial = src + "network n { input [3, 4, 4]; head(5) }"
    assert [n.op for n in archdsl.check(spatial).nodes()] == ["input", "global_avgpool", "linear"]
    with pytest.raises(archdsl.ArchTypeError, match="no spatial size"):
        archdsl.check("block b() { if in.h > 1 { relu } }\nnetwork n { input [12]; b() }")


# ---- network parameters -------------------------------------------------------------------

CLASSIFIER = """
network clf(num_classes = 1000, width = 8, resolution = 16, widths = [4, 8]) {
  input [3, resolution, resolution]
  for w in widths { conv(w, 3, padding=1) -> relu }
  -> conv(width, 1) -> global_avgpool(flatten=true) -> fc: linear(num_classes)
}
network small = clf(num_classes=7)
"""


def test_network_parameter_overrides():
    assert archdsl.check(CLASSIFIER).output_shape == (7,)
    assert archdsl.check(CLASSIFIER, num_classes=10).output_shape == (10,)
    graph = archdsl.check(CLASSIFIER, network="clf", resolution=32, widths=[2, 3, 5])
    assert graph.output_shape == (1000,)
    assert graph.input_shape == (3, 32, 32)
    assert [n.attrs["out"] for n in graph.nodes() if n.op == "conv"] == [2, 3, 5, 8]
    assert graph.params["widths"] == (2, 3, 5)


def test_unknown_parameter_override():
    with pytest.raises(archdsl.ArchNameError, match="did you mean 'num_classes'"):
        archdsl.check(CLASSIFIER, num_clases=10)


def test_override_with_a_python_object_is_rejected():
    with pytest.raises(archdsl.ArchTypeError, match="cannot use a Python"):
        archdsl.check(CLASSIFIER, num_classes=object())


def test_bundled_network_overrides():
    graph = archdsl.load_graph("resnet18", num_classes=10, resolution=64)
    assert graph.output_shape == (10,)
    assert graph.input_shape == (3, 64, 64)
    layers = archdsl.load_graph("resnet18", layers=[1, 1, 1, 1])
    assert not any(n.path and n.path.startswith("layer1.1") for n in layers.nodes())


# ---- errors and their locations ------------------------------------------------------------


def error_at(src: str, **params: Any) -> archdsl.ArchError:
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.check(src, path="bad.arch", **params)
    return info.value


@pytest.mark.parametrize(
    "lines, kind, line, column, message",
    [
        ("  conv(4, 3) -> -> relu", archdsl.ArchSyntaxError, 3, 17, "unexpected '->'"),
        ("  conv(4, 3) relu", archdsl.ArchSyntaxError, 3, 14, "statements are separated"),
        ("  conv(4, 3) $ relu", archdsl.ArchSyntaxError, 3, 14, "unexpected character '$'"),
        ("  conv(4, 3) -> rleu", archdsl.ArchNameError, 3, 17, "did you mean 'relu'"),
        ("  conv(4, kernal)", archdsl.ArchNameError, 3, 11, "unknown name 'kernal'"),
        ("  conv(4, 3)\n  -> c: conv(4, 11)", archdsl.ArchShapeError, 4, 9, "input too small"),
        ("  a: conv(4, 3) -> a: relu", archdsl.ArchNameError, 3, 20, "duplicate name 'a'"),
        ("  add { conv(6, 1); identity }", archdsl.ArchShapeError, 3, 3, "add"),
        ("  if 1 { relu }", archdsl.ArchTypeError, 3, 6, "true or false"),
        ("  l = [1, 2]\n  conv(l[5], 3)", archdsl.ArchTypeError, 4, 10, "out of range"),
        ("  relu x -1", archdsl.ArchTypeError, 3, 10, "non-negative"),
        ("  conv(4, 3, pading=1)", archdsl.ArchNameError, 3, 14, "did you mean 'padding'"),
        ("  for i in 3 { relu }", archdsl.ArchTypeError, 3, 12, "needs a list"),
    ],
)
def test_errors_point_at_the_mistake(lines, kind, line, column, message):
    err = error_at(net(lines))
    assert isinstance(err, kind), err
    assert message in err.message, err.message
    assert (err.path, err.line, err.column) == ("bad.arch", line, column), str(err)
    assert str(err).startswith(f"bad.arch:{line}:{column}: error: ")


def test_error_inside_a_block_points_into_the_block():
    src = "block b(c) {\n  conv(c, 3) -> foo\n}\nnetwork n {\n  input [3, 8, 8]\n  b(4)\n}"
    err = error_at(src)
    assert isinstance(err, archdsl.ArchNameError)
    assert (err.line, err.column) == (2, 17)


def test_shape_error_inside_block_names_the_path():
    src = (
        "block b(k) {\n  c: conv(4, k)\n}\nnetwork n {\n  input [3, 8, 8]\n  s: b(3) -> t: b(7)\n}"
    )
    err = error_at(src)
    assert isinstance(err, archdsl.ArchShapeError)
    assert "'t.c'" in err.message
    assert (err.line, err.column) == (2, 6)


def test_unexpected_end_of_file():
    err = error_at("network n {\n  input [3, 8, 8]\n  conv(4, 3)\n")
    assert isinstance(err, archdsl.ArchSyntaxError)
    assert "end of file" in err.message
    assert err.line == 3


def test_rendered_error_shows_the_line_and_a_caret():
    err = error_at(net("  conv(4, 3) -> rleu"))
    lines = err.render().splitlines()
    assert lines[0] == "bad.arch:3:17: error: unknown op or block 'rleu'; did you mean 'relu'?"
    assert lines[1] == "    conv(4, 3) -> rleu"
    assert lines[2] == "  " + " " * 16 + "^^^^"
