"""Expressions: the AST of operators and the ternary, the values the evaluator gives for
operators, indexing and builtins (``make_divisible`` against torchvision's), and the errors
of a bad expression; then known bugs, fixed and kept as regression tests.

``archdsl.check`` and the parser are pure Python; one known-bug test reads torch.fx's
GraphModule to check the reserved labels.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archdsl
from archdsl.elaborate.evaluate import Env, evaluate
from archdsl.frontend import ast, parse
from spectext import expr

# ---- helpers -----------------------------------------------------------------------------


def ev(text: str, **names: Any) -> Any:
    """Evaluate an expression; keyword arguments are variables (Python lists become lists)."""
    return evaluate(expr(text), Env({k: as_value(v) for k, v in names.items()}))


def as_value(v: Any) -> Any:
    """A Python value as the language's (lists are tuples)."""
    return tuple(as_value(x) for x in v) if isinstance(v, (list, tuple)) else v


# ---- expressions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, value",
    [
        ("-2 ** 2", -4),
        ("(-2) ** 2", 4),
        ("2 ** 3 ** 2", 512),  # right-associative
        ("2 ** -1", 0.5),
        ("-2 ** -2", -0.25),
        ("2 + 3 * 4", 14),
        ("(2 + 3) * 4", 20),
        ("10 - 2 - 3", 5),  # left-associative
        ("2 * 3 % 4", 2),
        ("2 + 7 // 2 * 3", 11),
        ("7 // 2", 3),
        ("[1, 2, 3, 4][1:]", (2, 3, 4)),  # slices as Python's
        ("[1, 2, 3, 4][:-1]", (1, 2, 3)),
        ("[1, 2, 3, 4][1:3]", (2, 3)),
        ("[1, 2, 3, 4][:]", (1, 2, 3, 4)),
        ("[1, 2, 3, 4][5:]", ()),
        ("[1, 2, 3, 4][-2:][0]", 3),
        ("[[1, 2], [3, 4]][1:][0][1:]", (4,)),
        ("-7 // 2", -4),  # floor, as Python
        ("7 // -2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("7 % -3", -2),
        ("7.5 % 2", 1.5),
        ("7.0 // 2", 3.0),
        ("7 / 2", 3.5),
        ("6 / 3", 2.0),
        ("- -3", 3),
        ("+3", 3),
        ("-3 * -3", 9),
        ("1e-5", 1e-5),
        ("2.5e2", 250.0),
        (".5", 0.5),
        ("1 + 2 == 3", True),
        ("1 < 2 and 2 < 3", True),
        ("not true or true", True),
        ("not (true or true)", False),
        ("true or false and false", True),  # and binds tighter
        ("not 1 == 2", True),  # not is looser than ==
        ("1 + 1 if false else 5", 5),  # the ternary is loosest
        ("1 if true else 2", 1),
        ("1 if false else 2 if true else 3", 2),  # right-nested
        ("1 if false else 2 if false else 3", 3),
        ("(1 if true else 2) + 10", 11),
        ("3 if 2 > 1 and 1 > 0 else 4", 3),
        ("'a' + \"b\"", "ab"),
        ("[1, 2] + [3]", (1, 2, 3)),
        ("none == none", True),
        ("1 == 1.0", True),
        ("1 == true", False),
        ("'1' != 1", True),
        ("[[1, 2], [3, [4, 5]]][1][1][0]", 4),
        ("[[1, 2], [3, [4, 5]]][-1][-1][-1]", 5),
        ("[1, 2, 3,][2]", 3),
        ("[]", ()),
        ("[[]]", ((),)),
        ("[1, [2, [3]]]", (1, (2, (3,)))),
        ("len([[1, 2], [3]][0])", 2),
        ("[i * i for i in range(4)]", (0, 1, 4, 9)),
    ],
)
def test_expression_values(text, value):
    got = ev(text)
    assert got == value and type(got) is type(value), (text, got)


def test_unary_minus_binds_looser_than_power_in_the_ast():
    e = expr("-2 ** 2")
    assert isinstance(e, ast.UnaryOp) and e.op == "-"
    assert isinstance(e.operand, ast.BinOp) and e.operand.op == "**"


def test_ternary_ast():
    e = expr("a if c else b")
    assert isinstance(e, ast.Ternary)
    assert (e.then.id, e.cond.id, e.other.id) == ("a", "c", "b")
    assert ev("a if c else b", a=1, b=2, c=False) == 2


def test_indexing_variables_and_in_shape():
    assert ev("layers[2]", layers=[2, 3, 4]) == 4
    assert ev("cfg[1][0]", cfg=[[1, 2], [3, 4]]) == 3
    assert ev("cfg[i][j]", cfg=[[1, 2], [3, 4]], i=1, j=-1) == 4
    src = "block b() { conv(in.shape[0] + in.rank, 1) }\nnetwork n { input [5, 2, 2]; b() }"
    assert archdsl.check(src).output_shape == (8, 2, 2)


@pytest.mark.parametrize(
    "text, value",
    [
        ("min(3, 1, 2)", 1),
        ("min([4, 2.5])", 2.5),
        ("max([1, 7, 3])", 7),
        ("max(1, 2)", 2),
        ("int(2.9)", 2),
        ("int(-2.9)", -2),  # truncates
        ("int(true)", 1),
        ("float(3)", 3.0),
        ("round(2.5)", 2),  # half to even, as Python
        ("round(3.5)", 4),
        ("round(2.675, 2)", 2.67),
        ("ceil(2.1)", 3),
        ("floor(-2.1)", -3),
        ("abs(-4)", 4),
        ("sqrt(16)", 4.0),
        ("log(1)", 0.0),
        ("log(8, 2)", 3.0),
        ("log(100, 10)", 2.0),
        ("round(log(48 + 27.89, 2.09))", 6),
        ("len([1, 2, 3])", 3),
        ("len('abc')", 3),
        ("sum([1, 2, 3.5])", 6.5),
        ("range(3)", (0, 1, 2)),
        ("range(1, 4)", (1, 2, 3)),
        ("range(10, 0, -3)", (10, 7, 4, 1)),
        ("make_divisible(32)", 32),
        ("make_divisible(18, 8)", 24),  # 16 would be below 90% of 18
        ("make_divisible(3, 8)", 8),  # min_value defaults to the divisor
        ("make_divisible(3, 8, 4)", 4),
        ("make_divisible(32 * 1.1, 8)", 32),
        ("cumsum([1, 2, 3])", (1, 3, 6)),
    ],
)
def test_builtins(text, value):
    got = ev(text)
    assert got == value and type(got) is type(value), (text, got)


def torchvision_make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision.models._utils._make_divisible, as documented: round to the nearest
    multiple of ``divisor``, at least ``min_value`` (default ``divisor``), and never more
    than 10% below ``v``."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


_MAKE_DIVISIBLE = [expr("make_divisible(v, d)"), expr("make_divisible(v, d, m)")]


@settings(max_examples=400, deadline=None)
@given(
    v=st.one_of(
        st.integers(0, 10_000),
        st.floats(0, 10_000, allow_nan=False, allow_infinity=False),
        st.sampled_from([16 * 0.75, 24 * 1.4, 32 * 0.35, 1280 * 1.1, 96 * 0.5, 0.1, 4.0]),
    ),
    d=st.sampled_from([1, 2, 3, 4, 8, 16, 32, 64]),
    m=st.one_of(st.none(), st.integers(1, 256)),
)
def test_make_divisible_matches_torchvision(v, d, m):
    expected = torchvision_make_divisible(v, d, m)
    got = evaluate(_MAKE_DIVISIBLE[1], Env({"v": v, "d": d, "m": m}))
    assert got == expected and isinstance(got, int)
    if m is None:
        assert evaluate(_MAKE_DIVISIBLE[0], Env({"v": v, "d": d})) == expected


def test_log_is_pythons():
    import math

    for v in (1e-300, 0.5, 1, 2.09, 7, 10**18):
        assert ev("log(v)", v=v) == math.log(v)
        for base in (0.5, 2, 2.52, 10):
            assert ev("log(v, b)", v=v, b=base) == math.log(v, base)


@pytest.mark.parametrize(
    "text, value",
    [
        ("[v for v in [3, 1, 4, 1, 5] if v > 1]", (3, 4, 5)),
        ("[v * 2 for v in range(6) if v % 2 == 0]", (0, 4, 8)),
        ("[v for v in [1, 2] if false]", ()),
        ("[v for v in [1, 2, 3] if (v != 2 if true else false)]", (1, 3)),
        ("[l[i] for i in range(len(l)) if i == 0 or l[i] != l[i - 1]]", (8, 16, 32)),
        ("[len([w for w in l if w == s]) for s in [8, 16, 32]]", (2, 1, 3)),
    ],
)
def test_comprehension_filters_as_python(text, value):
    assert ev(text, l=[8, 8, 16, 32, 32, 32]) == value


def test_regnet_widths_are_torchvisions():
    """RegNet's quantised linear widths, as the bundled spec computes them, against
    torchvision's ``BlockParams.from_init_params`` (its values for RegNetY-400MF and
    RegNetX-8GF, whose first stage is narrower than its group width)."""
    widths = "[round(w0 * wm ** round(log((w0 + wa * j) / w0, wm)) / 8) * 8 for j in range(d)]"
    stages = "[b[j] for j in range(len(b)) if j == 0 or b[j] != b[j - 1]]"
    depths = "[len([w for w in b if w == s]) for s in st]"
    adjusted = "[make_divisible(w, min(g, w)) for w in st]"
    for (d, w0, wa, wm, g), want, want_depths in [
        ((16, 48, 27.89, 2.09, 8), (48, 104, 208, 440), (1, 3, 6, 6)),
        ((23, 80, 49.56, 2.88, 120), (80, 240, 720, 1920), (2, 5, 15, 1)),
    ]:
        b = ev(widths, d=d, w0=w0, wa=wa, wm=wm)
        st_ = ev(stages, b=b)
        assert ev(depths, b=b, st=st_) == want_depths
        assert ev(adjusted, st=st_, g=g) == want


def test_make_divisible_mobilenet_widths():
    """MobileNetV2's channel table at a few width multipliers, as torchvision computes it."""
    channels = [32, 16, 24, 32, 64, 96, 160, 320, 1280]
    for width in (0.35, 0.5, 0.75, 1.0, 1.3, 1.4):
        got = ev("[make_divisible(c * w, 8) for c in cs]", cs=channels, w=width)
        assert list(got) == [torchvision_make_divisible(c * width, 8) for c in channels], width


@pytest.mark.parametrize(
    "text, error, match",
    [
        ("1 / 0", archdsl.ArchTypeError, "division by zero"),
        ("5 % 0", archdsl.ArchTypeError, "division by zero"),
        ("[1, 2][2]", archdsl.ArchTypeError, "out of range"),
        ("1 + 'a'", archdsl.ArchTypeError, "cannot apply"),
        ("1 if 1 else 2", archdsl.ArchTypeError, "true or false"),
        ("not 3", archdsl.ArchTypeError, "true or false"),
        ("nope(1)", archdsl.ArchNameError, "unknown function"),
        ("mx(1, 2)", archdsl.ArchNameError, "did you mean 'max'"),
        ("undefined_name", archdsl.ArchNameError, "unknown name"),
        ("min()", archdsl.ArchTypeError, "of nothing"),
        ("sqrt(-1)", archdsl.ArchTypeError, "negative"),
        ("log(0)", archdsl.ArchTypeError, "positive"),
        ("log(-2.5, 2)", archdsl.ArchTypeError, "positive"),
        ("log(8, 1)", archdsl.ArchTypeError, "base 1"),
        ("log(8, 0)", archdsl.ArchTypeError, "base 0"),
        ("log(8, 2, 2)", archdsl.ArchTypeError, "1 or 2 arguments"),
        ("log('a')", archdsl.ArchTypeError, "needs a number"),
        ("[v for v in [1, 2] if v]", archdsl.ArchTypeError, "true or false"),
        ("range(1, 2, 0)", archdsl.ArchTypeError, "step"),
        ("make_divisible(10, 0)", archdsl.ArchTypeError, "divisor"),
        ("10 ** 300", archdsl.ArchLimitError, "too large"),
        ("1 < 'a'", archdsl.ArchTypeError, "cannot compare"),
        ("5[1:]", archdsl.ArchTypeError, "cannot slice int 5"),
        ("[1, 2][1.5:]", archdsl.ArchTypeError, "a slice's bounds must be integers, got float"),
        ("[1, 2][:true]", archdsl.ArchTypeError, "a slice's bounds must be integers, got bool"),
    ],
)
def test_expression_errors(text, error, match):
    with pytest.raises(error, match=match):
        ev(text)


# ---- known bugs ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["10.0 ** 400.0", "float(10 ** 18) ** 20", "1.5 ** 2000.5"])
def test_float_power_overflow_is_an_arch_error(text):
    with pytest.raises(archdsl.ArchError):
        ev(text)
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.check(f"v = {text}\nnetwork n {{ input [1]; relu }}", path="p.arch")
    assert (info.value.line, info.value.column) == (1, 5)


def test_deep_power_chain_is_an_arch_error_or_parses():
    src = "v = " + "1 ** " * 1000 + "1"
    try:
        parse(src)
    except archdsl.ArchError:
        pass


def test_reserved_labels_cover_torch_module_attributes():
    """The checker's static list of reserved labels must cover every public attribute of
    torch.fx.GraphModule (class and instance) and every Python keyword."""
    import keyword

    import torch
    from torch import fx

    from archdsl.ir.reserved import RESERVED_LABELS

    g = fx.Graph()
    g.output(g.placeholder("x"))
    instance = fx.GraphModule(torch.nn.Module(), g)
    public = {n for n in (*dir(fx.GraphModule), *vars(instance)) if not n.startswith("_")}
    assert public | set(keyword.kwlist) <= RESERVED_LABELS
