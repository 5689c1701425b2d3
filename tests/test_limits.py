"""Safety limits: a spec is untrusted input.

Every limit of docs/language.md is hit here and must answer with an ``ArchLimitError`` (or
the documented error) at the ``file:line:col`` of the construct that crossed it, quickly:
repetition, block recursion and nesting, bracket nesting, deep expressions (no
``RecursionError`` ever reaches the caller), node count and file size. The limits on
numbers, lists, strings, work and parameter counts are tested in test_limits_numbers.py;
imports and code execution in test_imports_and_payloads.py.

Tests marked ``xfail(strict=True)`` state behaviour archdsl does not have yet (each reason
names the missing check); a fix turns them into failures until the mark is removed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from timelimit import Hang

import archdsl
from archdsl.elaborate.elaborator import (
    MAX_BLOCK_DEPTH,
    MAX_CHAIN_DEPTH,
    MAX_NODES,
    MAX_REPEAT,
    MAX_SCOPE_DEPTH,
)
from archdsl.frontend.parser import MAX_EXPR_DEPTH, MAX_NESTING, MAX_SOURCE_BYTES
from archdsl.ir import Graph
from archdsl_cli.main import main
from limitcheck import NET, error_of, limit_error, locate, within

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
