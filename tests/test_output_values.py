"""Values a network returns beside its main output: ``outputs(...)`` naming labels and
references (a feature pyramid's levels), returned as ``Outputs`` in both modes.

Checked against the pyramid written in torch (tests/test_references.py's oracle) in
float64, then through every output the compiler writes.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from test_references import FPN, TorchFPN

import archdsl
from archdsl.fmt import format_source
from emitted import assert_every_output_computes
from reference import fill

# the pyramid of test_references, returning its coarser levels too: a label of a module
# (inner3), a label of no module (p2), and the main output, in an order of the spec's own
LEVELS = FPN.replace(
    "input [3, 32, 32]", "input [3, 32, 32]\n  outputs(p3=inner3, p2, p1=out)"
).replace("network fpn_toy", "network fpn_levels")


def _pair(spec: str) -> tuple[torch.nn.Module, TorchFPN]:
    net = fill(archdsl.compile(spec)).double()
    oracle = TorchFPN().double()
    oracle.load_state_dict(net.state_dict(), strict=True)
    return net, oracle


@pytest.mark.parametrize("training", [False, True])
def test_a_pyramid_returns_its_levels_in_both_modes(training: bool) -> None:
    net, oracle = _pair(LEVELS)
    net.train(training)
    oracle.train(training)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        got = net(x)
        levels = oracle.levels(x)
        want = (levels["inner3"], levels["p2"], torch.relu(levels["smooth"]))
    assert type(got).__name__ == "Outputs" and got._fields == ("p3", "p2", "p1")
    assert [t.shape for t in got] == [(2, 16, 8, 8), (2, 16, 16, 16), (2, 16, 32, 32)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    assert got.p2 is got[1]


def test_a_reference_names_a_value_inside_a_namespace_which_it_opens() -> None:
    spec = FPN.replace(
        "input [3, 32, 32]",
        "input [3, 32, 32]\n  outputs(out, c2=@body.layer2, c1_conv=@body.layer1.0)",
    )
    graph = archdsl.check(spec)
    assert "body" not in graph.scopes and "body.layer1" not in graph.scopes  # opened
    assert "body.layer2" in graph.scopes  # its output is read where it is called: kept
    net, oracle = _pair(spec)
    net.eval()
    oracle.eval()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        out, c2, c1_conv = net(x)
        c0 = torch.relu(oracle.body.stem(x))
        torch.testing.assert_close(c1_conv, oracle.body.layer1[0](c0), rtol=0, atol=0)
        torch.testing.assert_close(c2, oracle.body.layer2(oracle.body.layer1(c0)))
        torch.testing.assert_close(out, oracle(x), rtol=1e-12, atol=1e-12)


def test_a_returned_value_is_never_written_over_in_place() -> None:
    """``a``'s ReLU and the sum after ``b`` would run in place; returned, they must not."""
    spec = """
    network t {
      input [4, 8, 8]
      outputs(a, b, out)
      a: conv(4, 3, padding=1) -> b: relu -> add { (); conv(4, 1) } -> relu
    }"""
    net = fill(archdsl.compile(spec)).eval()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        a, b, out = net(x)
        sd = net.state_dict()
        want_a = torch.conv2d(x, sd["a.weight"], sd["a.bias"], padding=1)
        want_b = torch.relu(want_a)
        want = torch.relu(want_b + torch.conv2d(want_b, sd["2.weight"], sd["2.bias"]))
    torch.testing.assert_close(a, want_a, rtol=0, atol=0)
    torch.testing.assert_close(b, want_b, rtol=0, atol=0)
    torch.testing.assert_close(out, want)


def test_every_output_path_returns_the_levels(tmp_path: Path) -> None:
    net = fill(archdsl.compile(LEVELS))
    x = torch.randn(2, 3, 32, 32)
    assert_every_output_computes(net, x, tmp_path)  # .py both modes, rewrites, .pt2, .onnx
    source = archdsl.emit_python(net)
    assert "return p3, p2, p1\n" in source  # variables named by their fields
    net.eval()
    for again in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        with torch.no_grad():
            for g, w in zip(again(x), net(x)):
                torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.slow
def test_the_fastest_path_returns_the_levels() -> None:
    net = fill(archdsl.compile(LEVELS)).eval()
    fast = archdsl.compile_for_inference(net)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        got, want = fast(x), net(x)
    assert len(got) == 3
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_summary_diagram_and_lint_know_the_returned_values() -> None:
    graph = archdsl.check(LEVELS)
    text = str(archdsl.summary(graph))
    assert "p3" in text and "p2" in text
    pytest.importorskip("graphviz")
    from archdsl.backends.graphviz import to_dot

    dot = to_dot(graph).source
    for name in ("p3", "p2", "p1"):
        assert f"output {name}" in dot


def test_lint_counts_a_value_that_outputs_returns_as_read() -> None:
    from archdsl.elaborate.loader import Loader
    from archdsl.passes.lint import lint

    text = """network t {
  input [4, 8, 8]
  a: conv(4, 3, padding=1) -> relu -> b: conv(4, 3, padding=1)
  @a -> relu -> c: conv(4, 1)
}
"""

    def unused(text: str) -> list[str]:
        module = Loader().load_source(text)
        return [w.message for w in lint(module, [archdsl.check(text)]) if w.code == "unused-value"]

    assert len(unused(text)) == 1 and "conv 'b'" in unused(text)[0]
    returned = text.replace("input [4, 8, 8]", "input [4, 8, 8]\n  outputs(b, c=out)")
    assert unused(returned) == []


def test_fmt_keeps_a_reference_in_outputs_as_one_word() -> None:
    written = (
        "network t {\n  input [3, 8, 8]\n  outputs( out ,c = @a.0 )\n  a: seq { conv(4, 1) }\n}\n"
    )
    assert format_source(written) == (
        "network t {\n  input [3, 8, 8]\n  outputs(out, c=@a.0)\n  a: seq { conv(4, 1) }\n}\n"
    )


def test_check_prints_the_shape_of_every_value_returned(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from clirun import run

    path = tmp_path / "levels.arch"
    path.write_text(LEVELS)
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0
    assert "[N, 3, 32, 32] -> p3 [N, 16, 8, 8], p2 [N, 16, 16, 16], p1 [N, 16, 32, 32]" in out
