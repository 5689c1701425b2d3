"""Safety limits, and no code execution: a spec is untrusted input.

Every limit of docs/language.md is hit here and must answer with an ``ArchLimitError`` (or
the documented error) at the ``file:line:col`` of the construct that crossed it, quickly:
repetition, block recursion and nesting, bracket nesting, deep expressions (no
``RecursionError`` ever reaches the caller), node count, import depth and cycles, file
size, numbers, list lengths, and parameter counts (checked and summarised without
allocating; ``build`` refuses with the size and how to override).

Then: Python-looking payloads are syntax or name errors and run nothing; imports read only
under the spec roots (the entry file's folder, the search path, the bundled library),
whatever ``..``, absolute paths and symlinks say.

Tests marked ``xfail(strict=True)`` state behaviour archdsl does not have yet (each reason
names the missing check); a fix turns them into failures until the mark is removed.
"""

from __future__ import annotations

import ast as pyast
import contextlib
import io
import math
import os
import signal
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from timelimit import Hang, TimeLimit

import archdsl
from archdsl.elaborate import evaluate
from archdsl.elaborate.elaborator import (
    MAX_BLOCK_DEPTH,
    MAX_CHAIN_DEPTH,
    MAX_NODES,
    MAX_REPEAT,
    MAX_SCOPE_DEPTH,
)
from archdsl.elaborate.evaluate import BUILTINS, MAX_INT, MAX_LIST, MAX_STEPS, MAX_STRING
from archdsl.elaborate.loader import MAX_IMPORT_DEPTH, bundled_spec_root
from archdsl.errors import Span
from archdsl.frontend.parser import MAX_EXPR_DEPTH, MAX_NESTING, MAX_SOURCE_BYTES
from archdsl.ir import Graph
from archdsl_cli.main import main

PACKAGE = Path(archdsl.__file__).resolve().parent
NET = "network n {{ input [3, 8, 8]; {} }}"


def within(seconds: float, wall: bool = False) -> TimeLimit:
    """Fail (with :class:`Hang`) if the body takes more than ``seconds`` of this process's
    CPU time (wall time with ``wall=True``); see tests/timelimit.py."""
    return TimeLimit(seconds, wall=wall)


def error_of(text: str, seconds: float = 5.0, **kwargs: object) -> archdsl.ArchError:
    """The ArchError ``check(text)`` raises, within ``seconds``; anything else fails."""
    with within(seconds):
        try:
            archdsl.check(text, **kwargs)
        except archdsl.ArchError as e:
            e.render()  # renders without crashing
            return e
        except Hang:
            pytest.fail(f"check() still running after {seconds} s")
    pytest.fail("check() accepted the spec")


def limit_error(
    text: str, match: str, line: int, column: int, seconds: float = 5.0, **kwargs: object
) -> archdsl.ArchError:
    err = error_of(text, seconds, **kwargs)
    assert type(err) is archdsl.ArchLimitError, f"{type(err).__name__}: {err}"
    assert match in err.message, err.message
    assert (err.line, err.column) == (line, column), str(err)
    return err


def locate(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the ``nth`` occurrence of ``needle`` in ``text``."""
    pos = -1
    for _ in range(nth + 1):
        pos = text.index(needle, pos + 1)
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


# ---- repetition ---------------------------------------------------------------------------


def test_repetition_at_the_limit_is_accepted() -> None:
    graph = archdsl.check(NET.format(f"relu x {MAX_REPEAT}"))
    assert len(graph) == MAX_REPEAT + 1


def test_repetition_beyond_the_limit() -> None:
    text = "network n {\n  input [3, 8, 8]\n  stage: relu x 2 ** 20\n}"
    err = limit_error(
        text,
        f"repetition count 1048576 exceeds the limit of {MAX_REPEAT}",
        *locate(text, "2 ** 20"),
    )
    assert err.span.end_column is not None  # the caret covers the count


@pytest.mark.parametrize("count", ["-1", "1.5", "true", '"3"', "none", "[2]"])
def test_repetition_count_must_be_a_natural_number(count: str) -> None:
    text = NET.format(f"relu x {count}")
    err = error_of(text)
    assert type(err) is archdsl.ArchTypeError
    assert "repetition count must be a non-negative integer" in err.message
    assert (err.line, err.column) == locate(text, count)


# ---- recursion and nesting -----------------------------------------------------------------


def test_direct_block_recursion() -> None:
    text = "block a {\n  relu -> a\n}\nnetwork n { input [3, 8, 8]; a }"
    limit_error(text, "block 'a' is recursive (a -> a)", *locate(text, "a\n}"))


def test_mutual_block_recursion() -> None:
    text = "block a { relu -> b }\nblock b { c }\nblock c { a }\nnetwork n { input [3, 8, 8]; a }"
    limit_error(text, "block 'a' is recursive (a -> b -> c -> a)", *locate(text, "a }"))


def test_bounded_recursion_is_still_recursion() -> None:
    """Recursion is an error even when a condition would stop it (design.md: use for or x N)."""
    text = "block a(k) { if k > 0 { a(k - 1) } }\nnetwork n { input [3, 8, 8]; a(3) }"
    limit_error(text, "block 'a' is recursive", *locate(text, "a(k - 1)"))


def test_recursion_in_an_imported_block_points_into_its_file(tmp_path: Path) -> None:
    (tmp_path / "lib.arch").write_text("block a {\n  relu -> a\n}\n", encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text('import "lib.arch"\nnetwork n { input [3, 8, 8]; a }\n', encoding="utf-8")
    with pytest.raises(archdsl.ArchLimitError, match=r"recursive \(a -> a\)") as info:
        archdsl.check_file(main_spec)
    assert info.value.path == str(tmp_path / "lib.arch")
    assert (info.value.line, info.value.column) == (2, 11)
    assert "relu -> a" in info.value.render()


def test_block_nesting_limit() -> None:
    blocks = [f"block b{i} {{ b{i + 1} }}" for i in range(60)] + ["block b60 { relu }"]
    text = "\n".join(blocks) + "\nnetwork n { input [3, 8, 8]; b0 }"
    limit_error(
        text,
        f"blocks nested deeper than {MAX_BLOCK_DEPTH}",
        *locate(text, f"b{MAX_BLOCK_DEPTH} }}"),
    )


def test_block_nesting_at_the_limit_compiles_and_runs() -> None:
    import torch

    blocks = [f"block b{i} {{ b{i + 1} }}" for i in range(MAX_BLOCK_DEPTH - 1)]
    text = "\n".join(
        [
            *blocks,
            f"block b{MAX_BLOCK_DEPTH - 1} {{ conv(2, 1) }}",
            "network n { input [3, 8, 8]; b0 }",
        ]
    )
    model = archdsl.compile(text)
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 2, 8, 8)


def too_deep(text: str) -> tuple[int, int]:
    """Where the bracket depth (parentheses, brackets and braces together) first exceeds
    the limit."""
    depth = 0
    for pos, ch in enumerate(text):
        depth += (ch in "([{") - (ch in ")]}")
        if depth > MAX_NESTING:
            return text.count("\n", 0, pos) + 1, pos - (text.rfind("\n", 0, pos) + 1) + 1
    raise AssertionError("not too deep")


@pytest.mark.parametrize(
    ("opener", "closer", "inner"),
    [
        ("(", ")", "1"),
        ("[", "]", "1"),
        ("[", "]", ""),
        ("seq { ", " }", "relu"),
        ("(", ")", "relu"),
        ("add { (); ", " }", "relu"),
        ("if true { ", " }", "relu"),
        ("for i in [1] { ", " }", "relu"),
    ],
)
def test_bracket_nesting_limit(opener: str, closer: str, inner: str) -> None:
    depth = MAX_NESTING + 1
    body = opener * depth + inner + closer * depth
    text = f"v = {body}" if inner in ("1", "") else NET.format(body)
    limit_error(text, f"nesting deeper than {MAX_NESTING} levels", *too_deep(text))


@pytest.mark.parametrize("opener,closer", [("(", ")"), ("[", "]")])
def test_bracket_nesting_at_the_limit_is_accepted(opener: str, closer: str) -> None:
    text = "v = " + opener * MAX_NESTING + "1" + closer * MAX_NESTING + "\n" + NET.format("relu")
    archdsl.check(text)


# Left-nested operator chains far beyond Python's stack: none may raise RecursionError.
DEEP = 5_000
DEEP_EXPRESSIONS = {
    "sum": " + ".join(["a"] * DEEP),
    "product": " * ".join(["a"] * DEEP),
    "and": " and ".join(["true"] * DEEP),
    "or": " or ".join(["false"] * DEEP),
    "unary minus": "-" * DEEP + "1",
    "not": "not " * DEEP + "true",
    "power": " ** ".join(["1"] * DEEP),
    "index": "[1]" + "[0]" * DEEP,
    "attribute": "in" + ".c" * DEEP,
    "ternary": " if true else ".join(["1"] * DEEP),
}
SUM_100K = " + ".join(["a"] * 100_000)  # 400 kB: within the file limit


def _deep_error(expr: str, seconds: float) -> archdsl.ArchError:
    text = "a = 1\nv = " + expr + "\n" + NET.format("relu")
    assert len(text) <= MAX_SOURCE_BYTES
    return error_of(text, seconds=seconds)


def check_or_limit(text: str, seconds: float) -> archdsl.ArchError | None:
    """None if ``check`` accepts ``text``, else its ArchError, which must be a limit (or the
    'nested too deeply' error); a RecursionError or any other exception fails the test."""
    with within(seconds):
        try:
            archdsl.check(text)
        except archdsl.ArchError as e:
            e.render()
            assert "nested too deeply" in e.message or type(e) is archdsl.ArchLimitError, str(e)
            return e
        except Hang:
            pytest.fail(f"check() still running after {seconds} s")
    return None


@pytest.mark.parametrize("name", sorted(DEEP_EXPRESSIONS))
def test_deep_expression_is_a_limit_error_not_a_recursion_error(name: str) -> None:
    text = "a = 1\nv = " + DEEP_EXPRESSIONS[name] + "\n" + NET.format("relu")
    err = check_or_limit(text, seconds=20)
    assert err is None or type(err) is archdsl.ArchLimitError, f"{type(err).__name__}: {err}"


def test_sum_of_100k_terms_is_a_limit_error_not_a_recursion_error() -> None:
    text = "a = 1\nv = " + SUM_100K + "\n" + NET.format("relu")
    assert len(text) <= MAX_SOURCE_BYTES
    err = check_or_limit(text, seconds=60)
    assert err is None or type(err) is archdsl.ArchLimitError, f"{type(err).__name__}: {err}"


EXPR_DEPTH_MESSAGE = f"expression nested deeper than {MAX_EXPR_DEPTH} levels"


@pytest.mark.parametrize("name", sorted(DEEP_EXPRESSIONS))
def test_deep_expression_error_points_at_the_expression(name: str) -> None:
    err = _deep_error(DEEP_EXPRESSIONS[name], seconds=5)
    assert type(err) is archdsl.ArchLimitError, f"{type(err).__name__}: {err}"
    assert EXPR_DEPTH_MESSAGE in err.message
    assert (err.line, err.column) == (2, 5)  # where the expression after "v = " starts


def test_deep_argument_error_points_at_the_argument() -> None:
    text = "a = 1\n" + NET.format("conv(8, 3) -> conv(1 + " + " + ".join(["a"] * DEEP) + ", 3)")
    err = limit_error(text, EXPR_DEPTH_MESSAGE, *locate(text, "1 + a"))
    assert err.span.end_column == err.column + 1  # the caret under its first token


def test_deep_expression_is_refused_quickly() -> None:
    err = _deep_error(SUM_100K, seconds=1.0)
    assert type(err) is archdsl.ArchLimitError and EXPR_DEPTH_MESSAGE in err.message
    assert (err.line, err.column) == (2, 5)


# Expressions of exactly n levels, in each direction of nesting.
DEPTH_SHAPES = {
    "left-nested": lambda n: " + ".join(["a"] * (n + 1)),
    "right-nested": lambda n: " ** ".join(["1"] * (n + 1)),
    "prefix": lambda n: "-" * n + "1",
    "calls": lambda n: "max(" * 30 + " + ".join(["a"] * (n - 29)) + ")" * 30,
}


@pytest.mark.parametrize("name", sorted(DEPTH_SHAPES))
def test_expression_depth_limit_is_exact(name: str) -> None:
    """An expression of exactly MAX_EXPR_DEPTH levels is accepted, even evaluated inside
    blocks and seqs nested to the module limit; one level more is refused."""
    make, deepest = DEPTH_SHAPES[name], "a = 1\n" + _nested_blocks(8, 7)
    archdsl.check(deepest.replace("conv(2, 1)", f"k = {make(MAX_EXPR_DEPTH)}; conv(2, 1)"))
    text = deepest.replace("conv(2, 1)", f"k = {make(MAX_EXPR_DEPTH + 1)}; conv(2, 1)")
    line, column = locate(text, "k = ")
    limit_error(text, EXPR_DEPTH_MESSAGE, line, column + 4)


def test_long_else_if_chain_is_an_arch_error_not_a_recursion_error() -> None:
    for n in (300, 5000):
        check_or_limit(NET.format("if false {} else " * n + "{ relu }"), seconds=30)


@pytest.mark.parametrize("n", [MAX_NESTING, 300, 5000])
def test_long_else_if_chain_is_a_limit_error_at_the_chain(n: int) -> None:
    """Each 'else if' nests its branch one level deeper: with the network's braces and the
    branch's own, the chain's (MAX_NESTING - 1)th 'else if' is the first too deep."""
    text = NET.format("if false {} else " * n + "{ relu }")
    err = limit_error(
        text, f"nesting deeper than {MAX_NESTING} levels", *locate(text, "if", nth=MAX_NESTING - 1)
    )
    assert err.span.end_column == err.column + 2  # the caret under "if"
    line, column = locate(text, "else if")
    assert err.notes[0].startswith(
        f"each 'else if' is one level deeper than the 'if' before it ({MAX_NESTING - 1} here, "
        f"the first at {line}:{column + 5})"
    )


def test_else_if_chain_at_the_nesting_limit_is_accepted() -> None:
    graph = archdsl.check(NET.format("if false {} else " * (MAX_NESTING - 1) + "{ relu }"))
    assert [n.op for n in graph.nodes()] == ["input", "relu"]
    with pytest.raises(archdsl.ArchLimitError):  # brackets and links count together
        archdsl.check(NET.format("(" + "if false {} else " * (MAX_NESTING - 1) + "{ relu })"))


def _nested_blocks(blocks: int, seqs: int) -> str:
    lines = []
    for i in range(blocks):
        inner = f"b{i + 1}" if i < blocks - 1 else "conv(2, 1)"
        lines.append(f"block b{i} {{ " + "seq { " * seqs + inner + " }" * seqs + " }")
    return "\n".join([*lines, "network n { input [3, 8, 8]; b0 }"])


def test_deeply_nested_blocks_are_an_arch_error_not_a_recursion_error() -> None:
    """Within both documented limits (48 blocks, 64 brackets), nesting multiplies."""
    check_or_limit(_nested_blocks(MAX_BLOCK_DEPTH - 1, MAX_NESTING - 2), seconds=30)


def test_a_spec_too_deep_to_run_is_refused_at_check() -> None:
    """10 blocks of 20 nested seqs are within the block and bracket limits, but 210 nested
    modules would exceed Python's stack in the forward pass: refused when checked."""
    text = _nested_blocks(10, 20)
    # b0..b2 and their 60 seqs are 63 modules, b3 the 64th: b3's first seq is one too many
    limit_error(
        text, f"modules nested deeper than {MAX_SCOPE_DEPTH}", *locate(text, "seq {", nth=60)
    )


def test_nesting_within_the_documented_limits_is_accepted_or_a_limit_error() -> None:
    text = _nested_blocks(40, 5)
    try:
        archdsl.check(text)
    except archdsl.ArchError as e:
        assert type(e) is archdsl.ArchLimitError, f"{type(e).__name__}: {e}"


def test_modules_nested_to_the_scope_limit_compile_and_run() -> None:
    import torch

    model = archdsl.compile(_nested_blocks(8, 7))  # 8 blocks of 1 + 7 modules: 64 deep
    assert model(torch.zeros(1, 3, 8, 8)).shape == (1, 2, 8, 8)
    with pytest.raises(archdsl.ArchLimitError, match=f"deeper than {MAX_SCOPE_DEPTH}"):
        archdsl.check(_nested_blocks(8, 8))  # 72 deep


def _blocks_nesting(blocks: int, opening: str, closing: str, depth: int, last: str) -> str:
    """``blocks`` blocks, each calling the next inside ``depth`` nestings of ``opening``."""
    lines = []
    for i in range(blocks):
        inner = f"b{i + 1}" if i < blocks - 1 else last
        lines.append(f"block b{i} {{ " + opening * depth + inner + closing * depth + " }")
    return "\n".join([*lines, "network n { input [3, 8, 8]; b0 }"])


NESTINGS = {  # shape -> (opening, closing, the layer at the bottom)
    "if bodies": ("if true { ", " }", "conv(2, 1)"),
    "groups": ("(relu -> ", ")", "conv(2, 1)"),
    "merge branches": ("add { () ; ", " }", "conv(3, 1)"),
}


def _under(frames: int, fn: Callable[[], object]) -> object:
    """Call ``fn`` with ``frames`` more Python frames on the stack (as a deep caller has)."""
    return fn() if frames == 0 else _under(frames - 1, fn)


@pytest.mark.parametrize("shape", sorted(NESTINGS))
def test_nesting_that_makes_no_module_is_a_limit_error(shape: str) -> None:
    """47 blocks of 60 nested ifs, groups or merges are within the block, module and
    bracket limits, but nest chains thousands deep: refused at the chain that goes past
    MAX_CHAIN_DEPTH, not by Python's stack."""
    opening, closing, last = NESTINGS[shape]
    text = _blocks_nesting(47, opening, closing, 60, last)
    err = error_of(text, seconds=5)
    assert type(err) is archdsl.ArchLimitError, f"{type(err).__name__}: {err}"
    assert f"chains nested deeper than {MAX_CHAIN_DEPTH}" in err.message


def test_nested_ifs_refused_at_the_first_chain_past_the_limit() -> None:
    # Levels: the network's chain 1, b0's body 2, its 60 if bodies 3-62, b1 63-123, b2's
    # body 124 and if bodies from 125: the 161st level is the body of b2's 37th if, whose
    # chain starts at its 38th.
    text = _blocks_nesting(47, "if true { ", " }", 60, "conv(2, 1)")
    assert MAX_CHAIN_DEPTH == 160
    limit_error(text, "chains nested deeper than 160", *locate(text, "if true", nth=120 + 37))


@pytest.mark.parametrize("depth", [52, 53])
def test_nested_ifs_at_the_chain_limit_run_whatever_the_callers_stack(depth: int) -> None:
    """3 blocks of 52 ifs are 160 levels exactly: accepted even when the caller has used 600
    frames of Python's stack; 53 are refused."""
    text = _blocks_nesting(3, "if true { ", " }", depth, "conv(2, 1)")
    if depth == 52:
        graph = _under(600, lambda: archdsl.check(text))
        assert isinstance(graph, Graph)
    else:
        with pytest.raises(archdsl.ArchLimitError, match="chains nested deeper than 160"):
            _under(600, lambda: archdsl.check(text))


# ---- size ----------------------------------------------------------------------------------


def test_node_limit() -> None:
    text = NET.format(f"(relu x {MAX_REPEAT}) x {MAX_NODES // MAX_REPEAT + 1}")
    limit_error(
        text, f"the network has more than {MAX_NODES} nodes", *locate(text, "relu"), seconds=30
    )


def test_file_size_limit(tmp_path: Path) -> None:
    text = NET.format("relu") + "\n#" + "x" * MAX_SOURCE_BYTES
    err = limit_error(text, f"the limit is {MAX_SOURCE_BYTES}", 1, 1)
    assert f"{len(text)} characters" in err.message
    big = tmp_path / "big.arch"  # from a file, only the limit (plus one) is read
    big.write_text(text + "x" * 5 * MAX_SOURCE_BYTES, encoding="utf-8")
    with pytest.raises(archdsl.ArchLimitError, match=f"{MAX_SOURCE_BYTES + 1} characters"):
        archdsl.check_file(big)


def test_file_size_limit_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = tmp_path / "big.arch"
    big.write_text("#" * (MAX_SOURCE_BYTES + 10), encoding="utf-8")
    assert main(["check", str(big)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{big}:1:1: error: spec file is ")
    assert len(err) < 1000  # the caret line is a window, not the megabyte


def test_file_at_the_size_limit_is_parsed() -> None:
    text = NET.format("relu")
    text += "\n#" + "x" * (MAX_SOURCE_BYTES - len(text) - 2)
    assert len(text) == MAX_SOURCE_BYTES
    archdsl.check(text)


def test_a_spec_within_the_limits_checks_quickly() -> None:
    text = NET.format(" -> ".join(["relu"] * 100_000))
    assert len(text) < MAX_SOURCE_BYTES
    with within(6.0):  # about 1.5 to 1.9 s here: linear, not quadratic
        try:
            archdsl.check(text)
        except Hang:
            pytest.fail("check() still running after 6 s")


def test_nul_byte_is_a_syntax_error_where_it_is(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "network n {\n  input [3, 8, 8]\n  conv(8, 3)\x00 -> relu\n}\n"
    err = error_of(text)
    assert type(err) is archdsl.ArchSyntaxError and err.message == "NUL byte in spec file"
    assert (err.line, err.column) == (3, 13)
    spec = tmp_path / "nul.arch"
    spec.write_bytes(text.encode())
    assert main(["check", str(spec)]) == 1
    assert capsys.readouterr().err.startswith(f"{spec}:3:13: error: NUL byte")


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
    monkeypatch.setattr(evaluate, "MAX_STEPS", MAX_STEPS // 20)
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


# ---- imports: depth, cycles --------------------------------------------------------------------


def test_import_depth_limit(tmp_path: Path) -> None:
    n = MAX_IMPORT_DEPTH + 5
    for i in range(n):
        (tmp_path / f"m{i}.arch").write_text(f'import "m{i + 1}.arch"\n', encoding="utf-8")
    (tmp_path / f"m{n}.arch").write_text("block b { relu }\n", encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text('import "m0.arch"\nnetwork n { input [3, 8, 8]; b }\n', encoding="utf-8")
    with pytest.raises(
        archdsl.ArchLimitError, match=f"imports nested deeper than {MAX_IMPORT_DEPTH}"
    ) as info:
        archdsl.check_file(main_spec)
    # main.arch and m0 ... m30 are open: m30's import of m31 is the one too deep
    assert info.value.path == str(tmp_path / f"m{MAX_IMPORT_DEPTH - 2}.arch")
    assert (info.value.line, info.value.column) == (1, 1)


def test_import_depth_at_the_limit(tmp_path: Path) -> None:
    n = MAX_IMPORT_DEPTH - 2  # main.arch is the first level
    for i in range(n):
        (tmp_path / f"m{i}.arch").write_text(f'import "m{i + 1}.arch"\n', encoding="utf-8")
    (tmp_path / f"m{n}.arch").write_text("block b { relu }\n", encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text('import "m0.arch"\nnetwork n { input [3, 8, 8]; b }\n', encoding="utf-8")
    archdsl.check_file(main_spec)


def test_import_cycle(tmp_path: Path) -> None:
    (tmp_path / "a.arch").write_text('import "b.arch"\nblock a { relu }\n', encoding="utf-8")
    (tmp_path / "b.arch").write_text('block b { relu }\nimport "a.arch"\n', encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text('import "a.arch"\nnetwork n { input [3, 8, 8]; a }\n', encoding="utf-8")
    with pytest.raises(
        archdsl.ArchImportError, match=r"import cycle: a.arch -> b.arch -> a.arch"
    ) as info:
        archdsl.check_file(main_spec)
    assert info.value.path == str(tmp_path / "b.arch")
    assert (info.value.line, info.value.column) == (2, 1)


def test_self_import(tmp_path: Path) -> None:
    spec = tmp_path / "self.arch"
    spec.write_text('import "self.arch"\nnetwork n { input [3, 8, 8]; relu }\n', encoding="utf-8")
    with pytest.raises(archdsl.ArchImportError, match=r"import cycle: self.arch -> self.arch"):
        archdsl.check_file(spec)


def test_diamond_imports_load_once(tmp_path: Path) -> None:
    (tmp_path / "base.arch").write_text("block b { relu }\n", encoding="utf-8")
    (tmp_path / "l.arch").write_text('import "base.arch"\n', encoding="utf-8")
    (tmp_path / "r.arch").write_text('import "base.arch"\n', encoding="utf-8")
    main_spec = tmp_path / "main.arch"
    main_spec.write_text(
        'import "l.arch"\nimport "r.arch"\nnetwork n { input [3, 8, 8]; b }\n', encoding="utf-8"
    )
    archdsl.check_file(main_spec)


# ---- no code execution ---------------------------------------------------------------------------

SENTINEL = "/tmp/archdsl-pwned"

PAYLOADS = {
    "__import__": f'__import__("os").system("touch {SENTINEL}")',
    "__import__ call": '__import__("os")',
    "eval": 'eval("1 + 1")',
    "exec": 'exec("import os")',
    "compile": 'compile("1", "f", "eval")',
    "open": f'open("{SENTINEL}", "w")',
    "getattr": 'getattr(1, "__class__")',
    "attribute of a literal": "(1).__class__",
    "dunder chain": "().__class__.__bases__[0].__subclasses__()",
    "attribute of a name": "a.__class__",
    "attribute of a string": '"x".join',
    "format method": '"{}".format(1)',
    "f-string": 'f"{1 + 1}"',
    "percent format": '"%s" % 1',
    "lambda": "lambda: 1",
    "lambda with args": "(lambda a: a)(1)",
    "dict": '{"a": 1}',
    "set": "{1}",
    "walrus": "(b := 1)",
    "starred": "[*range(3)]",
    "keyword argument to a builtin": "max(1, key=1)",
    "builtins": "__builtins__",
    "globals": "globals()",
    "locals": "locals()",
    "vars": "vars()",
    "dir": "dir()",
    "breakpoint": "breakpoint()",
    "subscript slice": "[1, 2, 3][0:2]",
    "backslash continuation": "1 + \\\n 1",
    "bytes": 'b"x"',
    "raw string escape": r'"\x41"',
    "semicolon import": "1; import os",
    "not a name": "$HOME",
    "backticks": "`id`",
    "shell": "$(id)",
    "class": "class A: pass",
}


@pytest.mark.parametrize("name", sorted(PAYLOADS))
@pytest.mark.parametrize("where", ["constant", "argument", "layer"])
def test_python_payloads_are_syntax_or_name_errors(name: str, where: str) -> None:
    payload = PAYLOADS[name]
    if where == "constant":
        text = f"a = 1\nv = {payload}\n" + NET.format("relu")
    elif where == "argument":
        text = "a = 1\n" + NET.format(f"conv({payload}, 3)")
    else:
        text = "a = 1\n" + NET.format(f"relu -> {payload}")
    err = error_of(text)
    allowed = (archdsl.ArchSyntaxError, archdsl.ArchNameError, archdsl.ArchTypeError)
    assert isinstance(err, allowed), f"{type(err).__name__}: {err}"
    if isinstance(err, archdsl.ArchTypeError):  # only for values the language has
        assert any(m in err.message for m in ("has no attribute", "cannot apply", "keyword")), (
            err.message
        )
    assert err.line >= 2
    assert not os.path.exists(SENTINEL)


@pytest.mark.parametrize(
    "label",
    [
        "__class__",
        "__init__",
        "__dict__",
        "__getattr__",
        "__reduce__",
        "__module__",
        "_modules",
        "_parameters",
        "_buffers",
        "_code",
    ],
)
def test_labels_cannot_name_module_internals(label: str) -> None:
    import torch

    text = NET.format(f"{label}: conv(4, 3) -> relu")
    try:
        model = archdsl.compile(text)
        model(torch.zeros(1, 3, 8, 8))
    except archdsl.ArchNameError as e:
        assert "reserved" in e.message
        return
    pytest.fail(f"label '{label}' accepted")


@pytest.mark.parametrize(
    "value",
    [
        '__import__("os")',
        'eval("1")',
        "lambda: 1",
        'f"{1}"',
        "x.__class__",
        "(1).__class__",
        'open("/etc/passwd")',
        "$(id)",
        "`id`",
    ],
)
def test_cli_set_values_run_nothing(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "lenet5", "--set", f"num_classes={value}"]) in (1, 2)
    err = capsys.readouterr().err
    assert "error" in err and "Traceback" not in err


def test_archdsl_never_calls_eval_exec_or_import() -> None:
    """The package calls no builtin eval/exec/compile/__import__ and no import_module at all
    (torch.fx's code generation does, on code built from checked identifiers only)."""
    builtins = {"eval", "exec", "compile", "__import__"}
    for path in PACKAGE.rglob("*.py"):
        tree = pyast.parse(path.read_text(encoding="utf-8"))
        for node in pyast.walk(tree):
            if not isinstance(node, pyast.Call):
                continue
            func = node.func
            bad = (
                (isinstance(func, pyast.Name) and func.id in builtins)
                or (isinstance(func, pyast.Attribute) and func.attr == "import_module")
                or (
                    isinstance(func, pyast.Attribute)
                    and isinstance(func.value, pyast.Name)
                    and func.value.id == "builtins"
                )
            )
            assert not bad, (
                f"{path.relative_to(PACKAGE)}:{node.lineno} calls {pyast.unparse(func)}()"
            )


# ---- imports: the spec roots -------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``proj/`` (the entry folder: main.arch, lib/blocks.arch, sub/) and ``outside/``
    (secret.arch), side by side."""
    proj, outside = tmp_path / "proj", tmp_path / "outside"
    (proj / "lib").mkdir(parents=True)
    (proj / "sub").mkdir()
    outside.mkdir()
    (proj / "lib" / "blocks.arch").write_text("block b { relu }\n", encoding="utf-8")
    (outside / "secret.arch").write_text("block s { relu }\n", encoding="utf-8")
    return tmp_path


def _spec(path: Path, importing: str, layer: str = "relu") -> Path:
    path.write_text(
        f'import "{importing}"\nnetwork n {{ input [3, 8, 8]; {layer} }}\n', encoding="utf-8"
    )
    return path


def outside_roots(path: Path, **kwargs: object) -> archdsl.ArchImportError:
    with pytest.raises(archdsl.ArchImportError) as info:
        archdsl.check_file(path, **kwargs)
    err = info.value
    assert "outside the spec roots" in err.message, err.message
    assert "search path" in err.message  # says how to allow it
    assert (err.path, err.line, err.column) == (str(path), 1, 1)
    return err


def test_imports_below_the_entry_folder_are_allowed(tree: Path) -> None:
    archdsl.check_file(_spec(tree / "proj" / "main.arch", "lib/blocks.arch", "b"))


def test_path_traversal_is_refused(tree: Path) -> None:
    outside_roots(_spec(tree / "proj" / "main.arch", "../outside/secret.arch", "s"))


def test_deep_path_traversal_to_system_files_is_refused(tree: Path) -> None:
    err = outside_roots(_spec(tree / "proj" / "main.arch", "../" * 40 + "etc/passwd"))
    assert "root:" not in err.render()  # nothing of the file is shown


def test_traversal_that_comes_back_inside_is_allowed(tree: Path) -> None:
    archdsl.check_file(_spec(tree / "proj" / "main.arch", "../proj/lib/blocks.arch", "b"))


def test_absolute_import_is_refused(tree: Path) -> None:
    target = tree / "proj" / "lib" / "blocks.arch"  # even one inside the roots
    spec = _spec(tree / "proj" / "main.arch", str(target), "b")
    with pytest.raises(archdsl.ArchImportError, match="import path must be relative") as info:
        archdsl.check_file(spec)
    assert (info.value.line, info.value.column) == (1, 1)


def test_symlink_to_a_file_outside_is_refused(tree: Path) -> None:
    (tree / "proj" / "link.arch").symlink_to(tree / "outside" / "secret.arch")
    outside_roots(_spec(tree / "proj" / "main.arch", "link.arch", "s"))


def test_symlinked_folder_pointing_outside_is_refused(tree: Path) -> None:
    (tree / "proj" / "ext").symlink_to(tree / "outside", target_is_directory=True)
    outside_roots(_spec(tree / "proj" / "main.arch", "ext/secret.arch", "s"))


def test_symlink_within_the_roots_is_allowed(tree: Path) -> None:
    (tree / "proj" / "alias.arch").symlink_to(tree / "proj" / "lib" / "blocks.arch")
    archdsl.check_file(_spec(tree / "proj" / "main.arch", "alias.arch", "b"))


def test_search_path_allows_a_folder(tree: Path) -> None:
    spec = _spec(tree / "proj" / "main.arch", "../outside/secret.arch", "s")
    archdsl.check_file(spec, search_path=[tree / "outside"])
    archdsl.check_file(
        _spec(tree / "proj" / "other.arch", "secret.arch", "s"), search_path=[tree / "outside"]
    )


def test_imported_file_cannot_escape_either(tree: Path) -> None:
    (tree / "proj" / "lib" / "evil.arch").write_text(
        'import "../../outside/secret.arch"\n', encoding="utf-8"
    )
    spec = _spec(tree / "proj" / "main.arch", "lib/evil.arch", "s")
    with pytest.raises(archdsl.ArchImportError, match="outside the spec roots") as info:
        archdsl.check_file(spec)
    assert info.value.path == str(tree / "proj" / "lib" / "evil.arch")


def test_bundled_library_cannot_be_used_to_escape(tree: Path) -> None:
    outside_roots(_spec(tree / "proj" / "main.arch", "lib/../../../../../../../../etc/hostname"))


def test_source_text_imports_resolve_under_the_working_directory(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree / "proj")
    archdsl.check('import "lib/blocks.arch"\nnetwork n { input [3, 8, 8]; b }')
    with pytest.raises(archdsl.ArchImportError, match="outside the spec roots"):
        archdsl.check('import "../outside/secret.arch"\nnetwork n { input [3, 8, 8]; s }')


def test_bundled_library_imports_from_anywhere(tree: Path) -> None:
    archdsl.check_file(_spec(tree / "proj" / "main.arch", "lib/resnet.arch", "basic(3)"))
    assert (bundled_spec_root() / "lib" / "resnet.arch").is_file()


def test_special_files_are_not_read(tree: Path) -> None:
    os.mkfifo(tree / "proj" / "fifo.arch")  # reading would block forever
    with pytest.raises(archdsl.ArchImportError, match="cannot find"):
        with within(5, wall=True):  # blocking on a read would take no CPU time
            archdsl.check_file(_spec(tree / "proj" / "main.arch", "fifo.arch"))


def test_import_of_a_folder(tree: Path) -> None:
    with pytest.raises(archdsl.ArchImportError, match="cannot find"):
        archdsl.check_file(_spec(tree / "proj" / "main.arch", "lib"))


def test_non_utf8_import(tree: Path) -> None:
    (tree / "proj" / "bin.arch").write_bytes(b"block b { relu }\n\xff\xfe\n")
    with pytest.raises(archdsl.ArchImportError, match="not UTF-8"):
        archdsl.check_file(_spec(tree / "proj" / "main.arch", "bin.arch", "b"))


def test_source_with_a_path_imports_like_the_file(tree: Path) -> None:
    spec = _spec(tree / "proj" / "main.arch", "lib/blocks.arch", "b")
    archdsl.check_file(spec)
    archdsl.check(spec.read_text(encoding="utf-8"), path=str(spec))


def test_symlinked_entry_file(tree: Path) -> None:
    spec = _spec(tree / "proj" / "main.arch", "lib/blocks.arch", "b")
    (tree / "outside" / "lib").mkdir()
    (tree / "outside" / "lib" / "blocks.arch").write_text("block b { relu }\n", encoding="utf-8")
    link = tree / "outside" / "main.arch"
    link.symlink_to(spec)
    archdsl.check_file(link)


def test_overlong_import_path(tree: Path) -> None:
    spec = _spec(tree / "proj" / "main.arch", "a" * 5000 + ".arch")
    with pytest.raises(archdsl.ArchImportError):
        archdsl.check_file(spec)


def test_cli_can_allow_a_folder(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tree / "proj" / "main.arch", "../outside/secret.arch", "s")
    assert main(["check", str(spec), "--search-path", str(tree / "outside")]) == 0


def test_import_refusals_through_the_cli(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tree / "proj" / "main.arch", "../outside/secret.arch", "s")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["check", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:1:1: error: import ")
    assert "Traceback" not in err


def test_recursion_limit_is_untouched() -> None:
    """archdsl does not raise Python's recursion limit to get its work done."""
    before = sys.getrecursionlimit()
    with contextlib.suppress(archdsl.ArchError):
        archdsl.check("v = " + "-" * 5000 + "1\n" + NET.format("relu"))
    assert sys.getrecursionlimit() == before


def test_the_time_limit_interrupts_a_loop_and_leaves_no_timer_behind() -> None:
    before = signal.getsignal(signal.SIGPROF)
    with pytest.raises(Hang), within(0.2):
        while True:
            pass
    assert signal.getitimer(signal.ITIMER_PROF) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGPROF) is before
