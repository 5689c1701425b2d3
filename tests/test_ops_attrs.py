"""The ops' attributes and the registry as documentation.

``normalize_attrs`` rejects a bad argument value with a message that names the op and the
parameter, and normalizes a good one (pairs as tuples, floats as floats); any value at all
is either normalized, idempotently, or rejected. Every op and parameter is documented, its
defaults are valid, and the names other frameworks give an op point at ours. No torch here:
the shape rules against torch are tested in test_ops.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archdsl.ops import (
    ALL_OPS,
    MERGE_OPS,
    OPS,
    REQUIRED,
    ValueProblem,
    bind_defaults,
    get_op,
    normalize_attrs,
)
from archdsl.ops.attrs import KINDS, normalize_value


def prepare(op: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Bind defaults and normalize, as the elaborator does."""
    return normalize_attrs(OPS[op], bind_defaults(OPS[op], raw))


# --- normalize_attrs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "raw", "param", "message"),
    [
        (
            "conv",
            {"out": 8, "kernel": 0},
            "kernel",
            "conv: kernel must be a positive integer or a list of two, got 0",
        ),
        ("conv", {"out": 8, "kernel": [3, 0]}, "kernel", "got [3, 0]"),
        ("conv", {"out": 8, "kernel": [3, 3, 3]}, "kernel", "got [3, 3, 3]"),
        ("conv", {"out": 8, "kernel": 3.0}, "kernel", "got 3.0"),
        ("conv", {"out": 8, "kernel": True}, "kernel", "got true"),
        ("conv", {"out": 8, "kernel": 3, "stride": None}, "stride", "got none"),
        ("conv", {"out": 8, "kernel": 3, "padding": -1}, "padding", '"same" or "valid", got -1'),
        ("conv", {"out": 8, "kernel": 3, "padding": "full"}, "padding", 'got "full"'),
        ("conv", {"out": 8, "kernel": 3, "bias": 1}, "bias", "bias must be true or false, got 1"),
        ("conv", {"out": 0, "kernel": 3}, "out", "out must be a positive integer, got 0"),
        ("conv", {"out": 8, "kernel": 3, "groups": False}, "groups", "got false"),
        ("conv", {"kernel": 3}, "out", "conv: missing argument out"),
        ("conv", {"out": 8, "kernel": 3, "size": 2}, "size", "conv: unknown argument size"),
        ("linear", {"out": "10"}, "out", 'got "10"'),
        ("dropout", {"p": 1.5}, "p", "p must be a number between 0 and 1, got 1.5"),
        ("dropout", {"p": True}, "p", "got true"),
        ("bn", {"eps": -1e-5}, "eps", "eps must be a non-negative number"),
        ("bn", {"momentum": 2}, "momentum", "a number between 0 and 1 or none, got 2"),
        ("leaky_relu", {"slope": math.nan}, "slope", "slope must be a number, got nan"),
        ("gelu", {"approximate": "fast"}, "approximate", 'one of "none", "tanh", got "fast"'),
        ("softmax", {"dim": 1.0}, "dim", "dim must be an integer, got 1.0"),
        ("maxpool", {"kernel": 3, "padding": [1, -1]}, "padding", "non-negative integer"),
        ("maxpool", {"kernel": 3, "padding": "same"}, "padding", 'got "same"'),
        ("adaptive_avgpool", {"size": [7]}, "size", "got [7]"),
        ("global_avgpool", {"flatten": None}, "flatten", "flatten must be true or false, got none"),
    ],
)
def test_normalize_rejects(op: str, raw: dict[str, Any], param: str, message: str) -> None:
    opdef = OPS[op]
    with pytest.raises(ValueProblem) as err:
        normalize_attrs(opdef, bind_defaults(opdef, raw))
    assert err.value.param == param
    assert message in err.value.message
    assert err.value.message.startswith(f"{op}: ")


def test_normalize_accepts_and_normalizes() -> None:
    attrs = prepare("conv", {"out": 8, "kernel": [3, 1], "padding": "same", "stride": (1, 1)})
    assert attrs == {
        "out": 8,
        "kernel": (3, 1),
        "stride": (1, 1),
        "padding": "same",
        "dilation": (1, 1),
        "groups": 1,
        "bias": True,
    }
    assert list(attrs) == [p.name for p in OPS["conv"].params]
    assert prepare("conv", {"out": 8, "kernel": 3, "padding": 2})["padding"] == (2, 2)
    assert prepare("maxpool", {"kernel": 3})["stride"] is None
    assert prepare("bn", {"momentum": None, "eps": 0})["momentum"] is None
    eps = prepare("bn", {"eps": 0})["eps"]
    assert eps == 0.0 and isinstance(eps, float)
    slope = prepare("leaky_relu", {"slope": 1})["slope"]
    assert isinstance(slope, float)


junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 8),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["same", "valid", "none", "tanh", "x"]),
    ),
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=4,
)


@settings(max_examples=300, deadline=None)
@given(opdef=st.sampled_from(ALL_OPS), index=st.integers(0, 6), value=junk)
def test_normalize_value_is_total_and_idempotent(opdef: Any, index: int, value: Any) -> None:
    """Any value is either normalized (idempotently) or rejected naming the param."""
    if not opdef.params:
        return
    param = opdef.params[index % len(opdef.params)]
    try:
        once = normalize_value(opdef.name, param, value)
    except ValueProblem as problem:
        assert problem.param == param.name
        assert problem.message.startswith(f"{opdef.name}: {param.name} must be ")
        return
    assert normalize_value(opdef.name, param, once) == once
    if once is None:
        assert param.nullable
        return
    if param.kind in ("int", "posint", "nonneg"):
        assert type(once) is int
    if param.kind in ("pair", "nonneg_pair", "size"):
        assert isinstance(once, tuple) and len(once) == 2
        assert all(type(v) is int for v in once)
    if param.kind == "bool":
        assert type(once) is bool


# --- the registry as documentation ------------------------------------------------------


def test_registry_is_documented_and_defaults_are_valid() -> None:
    assert get_op("nope") is None
    for name, opdef in OPS.items():
        assert get_op(name) is opdef
        assert name == opdef.name or name in opdef.aliases
    for opdef in ALL_OPS:
        assert opdef.doc and "\n" not in opdef.doc, opdef.name
        assert opdef.arity == (-1 if opdef.name in MERGE_OPS else 1)
        for param in opdef.params:
            assert param.doc and param.kind in KINDS, (opdef.name, param.name)
            if param.default is not REQUIRED:
                normalize_value(opdef.name, param, param.default)


def test_other_frameworks_names_point_at_our_ops() -> None:
    import doctest

    from archdsl.ops import registry

    assert doctest.testmod(registry).failed == 0
    assert registry.known_as("Conv2d") == "conv"  # torch's class, through torch_class
    assert registry.known_as("AdaptiveAvgPool2d") == "adaptive_avgpool"
    assert registry.known_as("GlobalAveragePooling2D") == "global_avgpool"  # Keras
    assert registry.known_as("InnerProduct") == "linear"  # Caffe
    # two ops build GlobalPool2d: the class alone does not say which
    assert registry.known_as("GlobalPool2d") is None
    # the transposed convolution is its own op, never conv
    assert registry.known_as("ConvTranspose2d") == "conv_transpose"
    assert registry.known_as("Conv2DTranspose") == "conv_transpose"  # Keras
    assert registry.known_as("UpSampling2D") == "upsample"
    assert registry.known_as("elu") is None
