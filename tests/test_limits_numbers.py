"""Limits on values and sizes: a spec is untrusted input.

Integers, floats, list lengths and strings are bounded in literals, in arithmetic, in
builtins and in the parameters Python or the CLI passes in, and messages abbreviate long
values; the evaluator's step budget bounds the work a spec can ask for; a network's
parameter count is checked and summarised without allocating, ``build`` refuses a huge
network with the size and how to override, and shape dimensions are bounded. Each limit
answers with an ``ArchLimitError`` (or the documented error) at the construct that crossed
it, quickly. Nesting, node count and file size are tested in test_limits.py.
"""

from __future__ import annotations

import math
import time
import tracemalloc
from pathlib import Path

import pytest

import archdsl
from archdsl.elaborate import evaluate
from archdsl.elaborate.evaluate import BUILTINS, MAX_INT, MAX_LIST, MAX_STEPS, MAX_STRING
from archdsl.elaborate.loader import bundled_spec_root
from archdsl.errors import Span
from archdsl.frontend.parser import MAX_NESTING
from archdsl_cli.main import main
from limitcheck import NET, error_of, limit_error, locate

# ---- numbers, lists and strings --------------------------------------------------------------

FLOAT_LIMIT = "(a float is at most 1.798e+308)"


@pytest.mark.parametrize(
    ("expr", "match"),
    [
        ("2 ** 64", "too large"),
        (f"{MAX_INT} + 1", "too large"),
        (f"-{MAX_INT} - 1", "too large"),
        (f"{MAX_INT} * 10", "too large"),
        ("int(1e300)", "too large"),
        ("sum([1000000000000000000, 1])", "too large"),
        ("2 ** 300", "too large"),
        ("2.0 ** 5000", "too large"),
        ("1e300 * 1e300", "1e+300 * 1e+300 is too large"),  # inf is no value: refused
        ("-1e308 - 1e308", "-1e+308 - 1e+308 is too large"),
        ("1e300 / 1e-300", "1e+300 / 1e-300 is too large"),
        ("sum([1e308, 1e308])", f"number inf is too large {FLOAT_LIMIT}"),
        ("make_divisible(1e300)", "number 1.000e+300 is too large (limit 1e+18)"),
        ("ceil(-1e300)", "number -1.000e+300 is too large (limit 1e+18)"),
        (f"range({MAX_LIST + 1})", f"the limit is {MAX_LIST}"),
        (f"range(0, {MAX_INT})", f"the limit is {MAX_LIST}"),
        (f"range({MAX_LIST}) + [1]", f"the limit is {MAX_LIST}"),
    ],
)
def test_number_and_list_limits(expr: str, match: str) -> None:
    text = f"v = {expr}\n" + NET.format("relu")
    limit_error(text, match, 1, 5)


def test_integer_literal_beyond_the_limit() -> None:
    literal = "1" + "0" * 30
    text = NET.format(f"conv({literal}, 3)")
    limit_error(text, "too large", *locate(text, literal))


def test_integer_literal_too_long_to_convert() -> None:
    err = error_of("v = " + "9" * 5000 + "\n" + NET.format("relu"))
    assert type(err) is archdsl.ArchLimitError


@pytest.mark.parametrize(
    ("expr", "literal"),
    [
        ("1e999", "1e999"),
        ("-1e999", "1e999"),
        ("[1, 1.5E400]", "1.5E400"),
        ("1e999 * 0", "1e999"),
        ("scale_channels(1e999)", "1e999"),  # the fuzzer's finds: OverflowError in the
        ("make_divisible(1e999)", "1e999"),  # builtins, from inf
        ("round(1e999)", "1e999"),
    ],
)
def test_float_literal_that_overflows(expr: str, literal: str) -> None:
    """A float literal beyond the largest float is refused where it is written: it never
    becomes inf for arithmetic or a builtin to trip over."""
    text = f"v = {expr}\n" + NET.format("relu")
    err = limit_error(text, "", *locate(text, literal))
    assert err.message == f"float literal is too large {FLOAT_LIMIT}"


def test_float_underflow_is_zero_not_too_large() -> None:
    """Underflow is not overflow: a float too small to hold rounds to 0.0, as in Python."""
    text = (
        "a = 0.5 ** 1000\nb = 0.5 ** 2000\nc = 1e-999\nd = 2 ** -2000\n"
        "network n(a = a, b = b, c = c, d = d) { input [3, 8, 8]; relu }"
    )
    assert archdsl.check(text).params == {"a": 0.5**1000, "b": 0.0, "c": 0.0, "d": 0.0}
    assert 0.5**1000 > 0


@pytest.mark.parametrize("name", ["round", "ceil", "floor", "int", "make_divisible"])
@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (math.inf, archdsl.ArchLimitError, f"number inf is too large {FLOAT_LIMIT}"),
        (-math.inf, archdsl.ArchLimitError, f"number -inf is too large {FLOAT_LIMIT}"),
        (math.nan, archdsl.ArchTypeError, "nan is not a number"),
    ],
)
def test_builtins_converting_to_int_refuse_inf_and_nan(
    name: str, value: float, error: type[archdsl.ArchError], message: str
) -> None:
    """No spec can make inf or nan, but every float -> int builtin refuses them (at the
    call) rather than raise OverflowError or ValueError, should one ever get through."""
    span = Span("x.arch", 3, 7)
    with pytest.raises(archdsl.ArchError) as info:
        BUILTINS[name]([value], span)
    assert type(info.value) is error
    assert info.value.message == f"{name}(): {message}"
    assert info.value.span == span


@pytest.mark.parametrize("call", ["scale_channels(1e308)", "scale_depth(1e308)"])
def test_scaling_that_overflows_is_an_error_at_the_call(call: str) -> None:
    """``scaled(width=2)`` doubles 1e308 to inf inside the builtin: refused at the call."""
    text = (
        f"network n {{ input [3, 8, 8]; conv({call}, 3) }}\nnetwork m = n scaled(width=2, depth=2)"
    )
    err = limit_error(text, "", *locate(text, call))
    name = call.split("(")[0]
    what = "width" if name == "scale_channels" else "depth"
    assert err.message == f"{name}(): 1e+308 times the {what} multiplier 2.0 is too large"


def _nested(depth: int) -> list[object]:
    value: list[object] = [1]
    for _ in range(depth):
        value = [value]
    return value


def _cyclic() -> list[object]:
    value: list[object] = []
    value.append(value)
    return value


EFFICIENTNET = bundled_spec_root() / "lib" / "efficientnet.arch"  # defines the parameters


@pytest.mark.parametrize(
    ("param", "value", "error", "message"),
    [
        ("dropout", 10**400, archdsl.ArchLimitError,
         "number 1.000e+400 is too large (limit 1e+18)"),
        ("dropout", -(10**19), archdsl.ArchLimitError,
         "number -1.000e+19 is too large (limit 1e+18)"),
        ("dropout", math.inf, archdsl.ArchLimitError, f"number inf is too large {FLOAT_LIMIT}"),
        ("dropout", math.nan, archdsl.ArchTypeError, "nan is not a number"),
        ("num_classes", "x" * 1_000_000, archdsl.ArchLimitError,
         f"string of 1,000,000 characters; the limit is {MAX_STRING:,}"),
        ("num_classes", list(range(MAX_LIST + 1)), archdsl.ArchLimitError,
         f"list of {MAX_LIST + 1:,} items; the limit is {MAX_LIST:,}"),
        ("num_classes", _nested(100), archdsl.ArchLimitError,
         f"lists nested deeper than {MAX_NESTING} levels"),
        ("num_classes", _cyclic(), archdsl.ArchLimitError,
         f"lists nested deeper than {MAX_NESTING} levels"),
        ("num_classes", object(), archdsl.ArchTypeError, "cannot use a Python object as a value"),
    ],
    ids=["huge int", "negative int", "inf", "nan", "long string", "long list", "deep list",
         "cyclic list", "object"],
)  # fmt: skip
def test_python_parameters_obey_the_literal_limits(
    param: str, value: object, error: type[archdsl.ArchError], message: str
) -> None:
    """Values given from Python (or the CLI) meet the limits a spec's literals meet; the
    error names the parameter and points at its declaration."""
    err = error_of(EFFICIENTNET.read_text(encoding="utf-8"), path=str(EFFICIENTNET),
                   network="efficientnet", params={param: value})  # fmt: skip
    assert type(err) is error, f"{type(err).__name__}: {err}"
    assert err.message == f"parameter '{param}' (set by the caller): {message}"
    text = EFFICIENTNET.read_text(encoding="utf-8")
    assert (err.path, err.line, err.column) == (str(EFFICIENTNET), *locate(text, f"{param} = "))
    assert len(err.render()) < 1000


def test_python_parameters_at_the_limits_are_accepted() -> None:
    graph = archdsl.check(
        'network n(i = 0, f = 0.0, s = "", l = []) { input [3, 8, 8]; relu }',
        params={
            "i": -MAX_INT,
            "f": 1.7e308,
            "s": "x" * MAX_STRING,
            "l": [_nested(MAX_NESTING - 2)],
        },  # fmt: skip
    )
    assert graph.params["i"] == -MAX_INT and graph.params["s"] == "x" * MAX_STRING
    value, depth = graph.params["l"], 0
    while isinstance(value, tuple):
        value, depth = value[0], depth + 1
    assert (value, depth) == (1, MAX_NESTING)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("x" * MAX_STRING, '"' + "x" * 30 + f'..." ({MAX_STRING:,} characters)'),
        (list(range(MAX_LIST)),
         "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, ... 99,983 more]"),
        ([["x" * 1000] * 3] * 3,
         '[["' + "x" * 28 + '..." (1,000 characters), "x..." (1,000 characters), ... 1 more], '
         "... 2 more]"),
    ],
    ids=["string", "list", "nested"],
)  # fmt: skip
def test_messages_abbreviate_long_values(value: object, shown: str) -> None:
    """A string or list at its length limit is quoted by its beginning and its length."""
    with pytest.raises(archdsl.ArchTypeError) as info:
        archdsl.check_file(archdsl.spec_path("lenet5"), num_classes=value)
    assert info.value.message == f"linear: out must be a positive integer, got {shown}"
    assert len(info.value.render()) < 1000


def test_string_length_is_limited() -> None:
    lines = ['s0 = "' + "x" * 1000 + '"'] + [f"s{i + 1} = s{i} + s{i}" for i in range(12)]
    text = "\n".join(lines) + "\n" + NET.format("relu")  # s12 is 4 MB, above any sane string
    err = error_of(text)
    assert type(err) is archdsl.ArchLimitError and "string" in err.message, str(err)
    assert 2 <= err.line <= 13 and err.column == 6  # at the '+' that makes it too long


# Work that creates no node and no long list would run for hours (or until memory ran out)
# without the evaluation step budget: each is refused within a second, at the innermost
# loop, repetition or comprehension running when the budget ran out (the second string).
_EXPONENTIAL_BLOCKS = "\n".join(
    [f"block b{i} {{ b{i + 1} -> b{i + 1} }}" for i in range(40)] + ["block b40 { }"]
)
UNBOUNDED_WORK = {
    "nested loops with empty bodies": (
        NET.format("for i in range(100000) { for j in range(30000) { } }"), "for j"
    ),
    "nested loops of assignments": (
        NET.format("for i in range(100000) { for j in range(100000) { k = i } }"), "for j"
    ),
    "nested repetition of nothing": (
        NET.format("((if false { relu }) x 10000) x 10000"), "(if false"
    ),
    "nested repetition of an empty seq": (NET.format("s: ((seq {}) x 10000) x 10000"), "(seq"),
    "repetition of an empty block": (
        "block e { }\n" + NET.format("(e x 10000) x 10000"), "e x 10000"
    ),
    "block calls doubling 40 times": (  # no loop: at the call that ran out
        _EXPONENTIAL_BLOCKS + "\n" + NET.format("b0"), "b39 }"
    ),
    "comprehension of sums": (
        "a = range(100000)\nv = [sum(a) for i in a]\n" + NET.format("relu"), "[sum"
    ),
    "nested comprehension": (
        "v = [[0 for i in range(100000)] for j in range(100000)]\n" + NET.format("relu"),
        "[0 for",
    ),
    "arguments evaluated per repetition": (
        "a = range(100000)\nblock b(v) { relu }\n"
        + NET.format("(b([len(a) for i in a]) x 10000) x 10000"),
        "[len",
    ),
    "comparing long lists": (
        "a = range(100000)\nb = range(100000)\n"
        + NET.format("for i in a { if a == b { } }"),
        "for i",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(UNBOUNDED_WORK))
def test_unbounded_work_is_a_limit_error(name: str) -> None:
    text, where = UNBOUNDED_WORK[name]
    err = limit_error(text, "", *locate(text, where), seconds=1.0)
    assert err.message == (
        f"evaluation takes more than {MAX_STEPS:,} steps (the limit on loops, repetitions and "
        "calls, even those that create no layer)"
    )


def test_work_within_the_step_budget_is_accepted() -> None:
    """About 400,000 steps: a loop of 100,000 assignments is not refused."""
    archdsl.check(NET.format("for i in range(100000) { k = i }"))


@pytest.mark.parametrize("name", archdsl.list_specs())
def test_bundled_specs_use_a_small_part_of_the_step_budget(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each within a sixteenth of the budget (efficientnet_v2_l, the most: about 26,000)."""
    monkeypatch.setattr(evaluate, "MAX_STEPS", MAX_STEPS // 16)
    archdsl.load_graph(name)


# ---- parameter count: summarised without allocating, build refuses ----------------------------

HUGE = "network big {\n  input [100000]\n  fc: linear(100000000)\n}"  # 10^13 parameters
HUGE_PARAMS = 100_000 * 100_000_000 + 100_000_000


def test_huge_network_is_checked_and_summarised_without_allocating() -> None:
    tracemalloc.start()
    try:
        start = time.perf_counter()
        graph = archdsl.check(HUGE)
        summary = archdsl.summary(graph)
        text = summary.render("text")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert archdsl.count_params(graph) == HUGE_PARAMS
    assert summary.params == HUGE_PARAMS
    assert "10,000,100,000,000" in text
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert time.perf_counter() - start < 5


def test_build_refuses_a_huge_network_with_the_size_and_how_to_override() -> None:
    graph = archdsl.check(HUGE)
    with pytest.raises(archdsl.ArchLimitError) as info:
        archdsl.build(graph)
    message = info.value.message
    assert f"{HUGE_PARAMS:,} parameters" in message
    assert "GiB" in message
    assert "max_params=N" in message and "--max-params N" in message and 'device="meta"' in message
    assert info.value.line == 1  # the network's definition


def test_compile_refuses_a_huge_network() -> None:
    with pytest.raises(archdsl.ArchLimitError, match="max_params"):
        archdsl.compile(HUGE)


def test_huge_network_builds_on_the_meta_device() -> None:
    model = archdsl.build(archdsl.check(HUGE), device="meta")
    assert sum(p.numel() for p in model.parameters()) == HUGE_PARAMS
    assert all(p.is_meta for p in model.parameters())


def test_max_params_overrides_the_limit() -> None:
    graph = archdsl.check(NET.format("conv(8, 3)"))  # 224 parameters
    with pytest.raises(archdsl.ArchLimitError, match="224 parameters"):
        archdsl.build(graph, max_params=100)
    model = archdsl.build(graph, max_params=224)
    assert sum(p.numel() for p in model.parameters()) == 224


def test_huge_network_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "big.arch"
    spec.write_text(HUGE + "\n", encoding="utf-8")
    assert main(["check", str(spec)]) == 0
    assert "10,000,100,000,000" in capsys.readouterr().out
    assert main(["summary", str(spec)]) == 0
    capsys.readouterr()
    assert main(["compile", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "10,000,100,000,000 parameters" in err and "--max-params N" in err


def test_shape_dimensions_are_limited() -> None:
    text = NET.format("(concat { (); () } x 64) -> flatten -> linear(10)")
    limit_error(text, "", *locate(text, "concat"))


def test_input_dimensions_are_limited() -> None:
    big = "1000000000000000000"
    text = f"network n {{ input [{big}, {big}, {big}]; flatten }}"
    error_of(text)
