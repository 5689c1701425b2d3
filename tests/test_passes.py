"""The IR passes: shape inference from the input alone, the verifier, and the docstring
examples of every pass and module (executed here so they cannot rot)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import archdsl
from archdsl.errors import ArchShapeError
from archdsl.passes import PASSES, infer_shapes, verify
from archdsl.passes.verify import IRError


@pytest.mark.parametrize("name", archdsl.list_specs())
def test_passes_agree_with_elaboration(name: str) -> None:
    graph = archdsl.load_graph(name)
    before = {n.id: n.shape for n in graph.nodes()}
    for run in PASSES:
        graph = run(graph)
    assert {n.id: n.shape for n in graph.nodes()} == before


def test_infer_shapes_recomputes_from_the_input() -> None:
    graph = archdsl.check(
        "network n { input [3, 32, 32]; conv(8, 3, stride=2) -> maxpool(2) -> flatten }"
    )
    graph.input_shape = (3, 64, 64)
    infer_shapes(graph)
    assert graph.output_shape == (8 * 15 * 15,)


def test_infer_shapes_reports_the_node_that_breaks() -> None:
    graph = archdsl.check(
        "network n {\n input [3, 32, 32]\n conv(8, 11, stride=4) -> maxpool(3)\n}"
    )
    graph.input_shape = (3, 12, 12)
    with pytest.raises(ArchShapeError) as info:
        infer_shapes(graph)
    assert info.value.line == 3
    assert "maxpool" in info.value.message


def test_verify_catches_a_broken_scope() -> None:
    graph = archdsl.check("block b { relu -> relu }\nnetwork n { input [4]; blk: b -> relu }")
    verify(graph)
    scope = graph.scopes["blk"]
    scope.output = scope.input
    with pytest.raises(IRError):
        verify(graph)


def test_verify_catches_duplicate_paths() -> None:
    graph = archdsl.check("network n { input [4]; a: relu -> b: relu }")
    b = next(n for n in graph.nodes() if n.path == "b")
    graph.replace_node(b.id, path="a")
    with pytest.raises(IRError, match="used twice"):
        verify(graph)


def _modules() -> list[str]:
    names = ["archdsl"]
    for info in pkgutil.walk_packages(archdsl.__path__, "archdsl."):
        if not info.name.startswith("archdsl.specs"):
            names.append(info.name)
    return names


@pytest.mark.parametrize("module", _modules())
def test_docstring_examples(module: str) -> None:
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
