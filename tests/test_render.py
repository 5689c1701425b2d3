"""Graphviz diagrams: the block-level view, collapsed repeats, clusters, shapes on edges,
every box wired from the input to the output, the image formats, and the fallback to a
``.dot`` file when Graphviz's ``dot`` program is missing."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

import archdsl
from archdsl.backends.graphviz import render, to_dot

HAVE_DOT = shutil.which("dot") is not None

MULTI_PATH = """
block conv_bn(out, k = 1) { conv: conv(out, k, padding=k // 2, bias=false) -> bn: bn -> relu }
block inception() {
  concat {
    branch1: conv_bn(8)
    branch2: seq { conv_bn(8); conv_bn(8, 3) }
    branch3: seq { maxpool(3, stride=1, padding=1); conv_bn(8) }
  }
}
block res(c) { add { identity; (conv_bn(c, 3) -> conv(c, 3, padding=1)) } -> relu }
network multi {
  input [3, 32, 32]
  stem: conv_bn(16, 3)
  -> inc: inception()
  -> stage: seq { res(24) x 3 }
  -> side aux: seq { global_avgpool(flatten=true); linear(5) }
  -> pool: global_avgpool(flatten=true) -> fc: linear(10)
}
"""


def _edges(source: str) -> list[tuple[str, str, str]]:
    """(tail, head, label) of every edge in DOT source written by the graphviz package."""
    out = []
    for line in source.splitlines():
        m = re.match(r'\s*(\w+) -> (\w+)(?: \[label=" ([^"]*)"\])?', line)
        if m:
            out.append((m.group(1), m.group(2), m.group(3) or ""))
    return out


def _boxes(source: str) -> dict[str, str]:
    """Drawn node id -> its label."""
    return dict(re.findall(r"^\s*(\w+) \[label=(<.*>)", source, flags=re.M))


def _check_wiring(source: str) -> nx.DiGraph:
    """Every box lies on a path from the input to an output, and there is no cycle."""
    g = nx.DiGraph([(a, b) for a, b, _ in _edges(source)])
    assert nx.is_directed_acyclic_graph(g)
    outputs = {n for n in _boxes(source) if n.startswith("out_")}
    for box in _boxes(source):
        assert box == "input" or nx.has_path(g, "input", box), box
        assert box in outputs or any(nx.has_path(g, box, o) for o in outputs), box
    return g


def test_resnet50_block_view() -> None:
    source = to_dot("resnet50").source
    boxes = _boxes(source)
    labels = "\n".join(boxes.values())
    assert len([b for b in boxes.values() if "bottleneck" in b]) == 8  # 4 first + 4 runs
    for run in ["bottleneck × 2", "bottleneck × 3", "bottleneck × 5"]:
        assert run in labels
    assert "layer3.1-5" in labels and "5.59M params · 1.09G MACs" in labels
    assert "conv 7×7 /2" in labels and "9.41K params · 118M MACs" in labels
    for stage in ["layer1: stage", "layer2: stage", "layer3: stage", "layer4: stage"]:
        assert stage in source
    assert source.count("subgraph cluster") == 4
    assert {"3×224×224", "256×56×56", "1024×14×14", "2048×7×7", "2048"} <= {
        label for _, _, label in _edges(source)
    }
    _check_wiring(source)


def test_expand_and_depth() -> None:
    expanded = to_dot("resnet50", expand=True).source
    assert not re.search(r"× \d", expanded)
    assert len([b for b in _boxes(expanded).values() if "bottleneck" in b]) == 16
    top = to_dot("resnet50", depth=1).source
    assert "subgraph cluster" not in top
    assert len([b for b in _boxes(top).values() if "<b>stage</b>" in b]) == 4
    full = to_dot("resnet50", depth=9).source
    assert "layer3.1-5: bottleneck × 5" in full  # the run is drawn once, as a cluster
    assert "in all; one bottleneck drawn" in full
    assert "<b>conv 3×3 /2</b><br/>conv2" in full  # v1.5: the stride sits on the 3x3
    _check_wiring(full)
    assert "rankdir=LR" in to_dot("resnet18", rankdir="LR").source


def test_op_labels_show_their_defining_argument() -> None:
    from archdsl.backends.graphviz import op_text

    graph = archdsl.check(
        "network n { input [3, 8, 8]\n  conv(4, 3, stride=2) -> scale(0.17) -> dropout(0.2) "
        "-> flatten -> linear(10) }"
    )
    labels = [op_text(node) for node in graph.nodes() if node.op != "input"]
    assert labels == ["conv 3×3 /2", "scale ×0.17", "dropout 0.2", "flatten", "linear 10"]


def test_output_boxes_show_the_fields_in_order() -> None:
    graph = archdsl.load_graph("googlenet")
    source = to_dot(graph).source
    boxes = _boxes(source)
    assert "<b>output (logits)</b>" in boxes["out_output"]
    assert "<b>aux_logits2 (training only)</b>" in boxes["out_aux_logits2"]
    assert "<b>aux_logits1 (training only)</b>" in boxes["out_aux_logits1"]
    # in the order training mode returns them
    assert list(boxes).index("out_aux_logits2") < list(boxes).index("out_aux_logits1")


def test_multi_path_layout() -> None:
    graph = archdsl.check(MULTI_PATH)
    source = to_dot(graph).source
    boxes, edges = _boxes(source), _edges(source)
    g = _check_wiring(source)
    stem = next(n for n, label in boxes.items() if "<br/>stem<br/>" in label)
    # the stem feeds the three inception branches directly
    assert len(list(g.successors(stem))) == 3
    concat = next(n for n, label in boxes.items() if label == "<<b>concat</b>>")
    assert len(list(g.predecessors(concat))) == 3
    assert "inc: inception" in source and "branch2: seq" in source
    # a block with no more than one scope inside is one box; repeats collapse
    assert "<b>res × 3</b><br/>stage.0-2" in source
    assert "aux (training only)" in source
    assert ("out_aux" in {b for _, b, _ in edges}) and ("out_output" in {b for _, b, _ in edges})
    # opened up: identity shortcuts are edges, not boxes, and the run is drawn once
    source = to_dot(graph, depth=9).source
    boxes = _boxes(source)
    g = _check_wiring(source)
    assert not any("<b>identity</b>" in label for label in boxes.values())
    adds = [n for n, label in boxes.items() if label == "<<b>+</b>>"]
    assert len(adds) == 1
    concat = next(n for n, label in boxes.items() if label == "<<b>concat</b>>")
    assert concat in set(g.predecessors(adds[0]))  # the shortcut from the run's input
    assert len(list(g.predecessors(adds[0]))) == 2
    assert "stage.0-2: res × 3" in source


@pytest.mark.parametrize("name", archdsl.list_specs())
@pytest.mark.parametrize("depth", [None, 99])
def test_every_bundled_network_is_wired(name: str, depth: int | None) -> None:
    _check_wiring(to_dot(name, depth=depth).source)


def test_dot_file(tmp_path: Path) -> None:
    out = render("resnet18", tmp_path / "r.dot")
    assert out == tmp_path / "r.dot"
    assert out.read_text().startswith("digraph resnet18 {")


@pytest.mark.skipif(not HAVE_DOT, reason="Graphviz's dot program is not installed")
@pytest.mark.parametrize(
    ("ext", "magic"), [("svg", b"<?xml"), ("png", b"\x89PNG"), ("pdf", b"%PDF")]
)
def test_image_formats(tmp_path: Path, ext: str, magic: bytes) -> None:
    out = render(archdsl.check(MULTI_PATH), tmp_path / f"multi.{ext}")
    assert out == tmp_path / f"multi.{ext}"
    assert out.read_bytes().startswith(magic)
    if ext == "svg":
        assert "res × 3" in out.read_text() and "stage.0&#45;2" in out.read_text()


def test_missing_dot_writes_the_source(tmp_path: Path) -> None:
    code = (
        "from archdsl.backends.graphviz import render\n"
        f"print(render('resnet18', {str(tmp_path / 'r.png')!r}))\n"
    )
    env = {**os.environ, "PATH": str(tmp_path / "nothing-here")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "r.dot")
    assert (tmp_path / "r.dot").read_text().startswith("digraph")
    assert not (tmp_path / "r.png").exists()
    message = result.stderr.strip()
    assert "\n" not in message and "'dot'" in message and "install Graphviz" in message


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="image format"):
        render("resnet18", tmp_path / "r.xyz")
    with pytest.raises(ValueError, match="rankdir"):
        to_dot("resnet18", rankdir="XY")
    with pytest.raises(ValueError, match="depth"):
        to_dot("resnet18", depth=-1)
    with pytest.raises(archdsl.ArchError):
        to_dot("network n { input [3, 4, 4]; conv(8, 7) }")
