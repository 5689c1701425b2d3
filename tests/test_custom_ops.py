"""Ops registered from Python and from entry points; the docs/extending.md examples."""

from __future__ import annotations

import re
import warnings
from importlib import metadata
from pathlib import Path

import pytest
import torch
from torch import nn

import archdsl
from archdsl.ops import OPS, Param, ShapeProblem, custom, get_op

DOC = Path(__file__).parent.parent / "docs" / "extending.md"


def _same_shape(attrs, shapes):
    return shapes[0]


def _scale_module(attrs, shapes):
    class Scale(nn.Module):
        def __init__(self, c: int) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.full((c, 1, 1), attrs["factor"]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight

    return Scale(shapes[0][0])


@pytest.fixture
def scale_op():
    opdef = archdsl.register_op(
        "channel_scale",
        params=[Param("factor", "float", 1.0)],
        infer=_same_shape,
        build=_scale_module,
    )
    yield opdef
    archdsl.unregister_op("channel_scale")


def test_registered_op_checks_builds_and_counts(scale_op):
    graph = archdsl.check("network n { input [3, 4, 4]; conv(5, 3) -> s: channel_scale(2.0) }")
    assert graph.output_shape == (5, 2, 2)
    # count_params omitted: counted on the meta device
    assert archdsl.count_params(graph) == 5 * 3 * 9 + 5 + 5
    model = archdsl.build(graph)
    assert "s.weight" in model.state_dict()
    assert torch.equal(model.s.weight, torch.full((5, 1, 1), 2.0))
    assert archdsl.summary(graph).layer("s").params == 5


def test_registered_op_values_are_validated(scale_op):
    with pytest.raises(archdsl.ArchTypeError, match="factor must be a number"):
        archdsl.check('network n { input [3, 4, 4]; channel_scale("big") }')


def test_shape_rule_failure_points_at_the_op():
    def infer(attrs, shapes):
        if len(shapes[0]) != 3:
            raise ShapeProblem(f"needs a feature map, got {list(shapes[0])}")
        return shapes[0]

    archdsl.register_op("needs_map", params=[], infer=infer, build=lambda a, s: nn.Identity())
    try:
        with pytest.raises(archdsl.ArchShapeError, match="needs a feature map") as e:
            archdsl.check("network n {\n  input [3, 4, 4]\n  flatten -> needs_map\n}")
        assert e.value.line == 3
    finally:
        archdsl.unregister_op("needs_map")


def test_broken_shape_rule_is_a_shape_error():
    archdsl.register_op("broken", params={}, infer=lambda a, s: 1 / 0, build=lambda a, s: None)
    try:
        with pytest.raises(archdsl.ArchShapeError, match="ZeroDivisionError"):
            archdsl.check("network n { input [3, 4, 4]; broken }")
    finally:
        archdsl.unregister_op("broken")


def test_check_never_calls_build():
    def build(attrs, shapes):
        raise AssertionError("build called")

    archdsl.register_op(
        "lazy_op", params={}, infer=_same_shape, build=build, count_params=lambda a, s: 0
    )
    try:
        archdsl.summary(archdsl.check("network n { input [3, 4, 4]; lazy_op }"))
    finally:
        archdsl.unregister_op("lazy_op")


@pytest.mark.parametrize(
    "name, message",
    [
        ("conv", "built-in op"),
        ("batchnorm", "alias of 'bn'"),
        ("seq", "keyword"),
        ("x", "keyword"),
        ("my-op", "not an identifier"),
        ("channel_scale", "registered op"),
    ],
)
def test_conflicting_names_are_refused(scale_op, name, message):
    with pytest.raises(archdsl.OpRegistrationError, match=message):
        archdsl.register_op(name, params={}, infer=_same_shape, build=_scale_module)


def test_alias_conflict_and_unregister(scale_op):
    with pytest.raises(archdsl.OpRegistrationError, match="built-in"):
        archdsl.register_op(
            "channel_scale2", params={}, infer=_same_shape, build=_scale_module, aliases=["relu"]
        )
    assert "channel_scale2" not in OPS
    with pytest.raises(archdsl.OpRegistrationError, match="built-in"):
        archdsl.unregister_op("conv")


def test_bad_params_are_refused():
    with pytest.raises(archdsl.OpRegistrationError, match="unknown kind"):
        archdsl.register_op(
            "p1", params=[Param("a", "weird")], infer=_same_shape, build=_scale_module
        )
    with pytest.raises(archdsl.OpRegistrationError, match="required parameter follows"):
        archdsl.register_op(
            "p2",
            params=[Param("a", "int", 1), Param("b", "int")],
            infer=_same_shape,
            build=_scale_module,
        )
    assert "p1" not in OPS and "p2" not in OPS


class _FakeEntryPoint:
    def __init__(self, name: str, fn) -> None:
        self.name, self.value, self._fn = name, f"fake_plugin:{name}", fn

    def load(self):
        return self._fn


def test_entry_points_load_once_on_first_miss(monkeypatch):
    calls = []

    def register():
        calls.append(1)
        archdsl.register_op("plugin_op", params={}, infer=_same_shape, build=_scale_module)

    def broken():
        raise ImportError("no module named fake_dependency")

    def entry_points(group: str):
        assert group == "archdsl.ops"
        return [_FakeEntryPoint("plugin", register), _FakeEntryPoint("broken", broken)]

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    monkeypatch.setattr(custom, "_entry_points_loaded", False)
    try:
        assert get_op("conv") is not None and not calls  # hits do not load plugins
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            graph = archdsl.check("network n { input [3, 4, 4]; plugin_op }")
        assert graph.output_shape == (3, 4, 4)
        assert any("'broken'" in str(w.message) for w in caught)
        assert get_op("still_unknown") is None
        assert calls == [1]
    finally:
        if "plugin_op" in OPS:
            archdsl.unregister_op("plugin_op")


def test_extending_doc_examples_run():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 4
    namespace: dict = {}
    try:
        for block in blocks:
            exec(compile(block, str(DOC), "exec"), namespace)
    finally:
        if "coord_att" in OPS:
            archdsl.unregister_op("coord_att")
