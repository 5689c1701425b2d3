"""Grammar, AST and elaboration: parsing every construct, spans, the naming rule, ``in``
branching, parameter overrides, the evaluator's operators and builtins, error locations.

No torch here: ``archdsl.check`` and the parser are pure Python.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archdsl
from archdsl.elaborate.evaluate import Env, evaluate
from archdsl.frontend import ast, parse

# ---- helpers -----------------------------------------------------------------------------


def expr(text: str) -> ast.Expr:
    """The AST of one expression."""
    (assign,) = parse(f"v = {text}").defs
    assert isinstance(assign, ast.Assign)
    return assign.value


def ev(text: str, **names: Any) -> Any:
    """Evaluate an expression; keyword arguments are variables (Python lists become lists)."""
    return evaluate(expr(text), Env({k: as_value(v) for k, v in names.items()}))


def as_value(v: Any) -> Any:
    """A Python value as the language's (lists are tuples)."""
    return tuple(as_value(x) for x in v) if isinstance(v, (list, tuple)) else v


def body(src: str) -> tuple[ast.Node, ...]:
    """The statements of the last definition (a network or block) in ``src``."""
    return parse(src).defs[-1].body.stmts


def chains(src: str) -> list[ast.Chain]:
    return [s for s in body(src) if isinstance(s, ast.Chain)]


def op_names(chain: ast.Chain) -> list[str]:
    return [it.primary.name for it in chain.items]


def label_text(item: ast.Item) -> str | None:
    if item.label is None:
        return None
    parts = item.label.parts if isinstance(item.label, ast.Label) else (item.label,)
    assert all(isinstance(p, str) for p in parts)
    return "".join(parts)


def paths(src: str, **params: Any) -> list[str]:
    """Module paths of the checked graph, in creation order (merges and input left out)."""
    return [n.path for n in archdsl.check(src, **params).nodes() if n.path is not None]


def net(lines: str, input_shape: str = "[4, 8, 8]") -> str:
    """A network around ``lines`` (its body after the input statement)."""
    return f"network n {{\n  input {input_shape}\n{lines}\n}}\n"


# ---- grammar: chains, statements, comments -------------------------------------------------


def test_chain_of_items():
    (chain,) = chains(net("  conv(8, 3) -> bn -> relu"))
    assert op_names(chain) == ["conv", "bn", "relu"]
    conv = chain.items[0].primary
    assert isinstance(conv, ast.OpCall)
    assert [a.value.value for a in conv.args] == [8, 3]
    assert chain.items[1].primary.args == ()


def test_arrow_continuation_lines_are_one_chain():
    src = net(
        "  conv(8, 3)\n"
        "  -> bn\n"
        "\n"
        "  # a comment line between continued lines\n"
        "      -> relu   # trailing comment\n"
        "  -> maxpool(2)"
    )
    (chain,) = chains(src)
    assert op_names(chain) == ["conv", "bn", "relu", "maxpool"]
    assert paths(src) == ["0", "1", "2", "3"]


def test_newline_after_arrow_and_inside_brackets_continues():
    src = net("  conv(8,\n       3,\n       padding=1) ->\n  relu", "[4,\n  8, 8]")
    (chain,) = chains(src)
    assert op_names(chain) == ["conv", "relu"]
    assert archdsl.check(src).output_shape == (8, 8, 8)


def test_newline_without_arrow_starts_a_new_statement():
    src = net("  conv(8, 3)\n  relu")
    assert [op_names(c) for c in chains(src)] == [["conv"], ["relu"]]
    # successive statements run one after the other
    assert archdsl.check(src).output_shape == (8, 6, 6)


def test_semicolons_separate_statements():
    src = "network n { input [4, 8, 8]; conv(8, 3);; relu ; bn; }"
    stmts = body(src)
    assert isinstance(stmts[0], ast.InputStmt)
    assert [op_names(c) for c in chains(src)] == [["conv"], ["relu"], ["bn"]]
    assert paths(src) == ["0", "1", "2"]


def test_semicolons_and_newlines_between_definitions():
    src = "c = 4; block b() { relu }; network n { input [c, 2, 2]; b() }"
    defs = parse(src).defs
    assert [type(d).__name__ for d in defs] == ["Assign", "BlockDef", "NetworkDef"]
    assert archdsl.check(src).input_shape == (4, 2, 2)


def test_comments_everywhere():
    src = (
        "# leading comment\n"
        "block b(c,   # first parameter\n"
        "        k = 3) {  # after brace\n"
        "  conv(c, k) # after a layer\n"
        "}\n"
        "# between definitions\n"
        "network n {\n"
        "  input [3, 8, 8]  # input\n"
        "  b(4)\n"
        "}  # the end"
    )
    assert archdsl.check(src).output_shape == (4, 6, 6)


def test_empty_file_and_blank_lines():
    assert parse("").defs == ()
    assert parse("\n\n# only a comment\n\n").defs == ()


def test_labels():
    (chain,) = chains(net("  a: conv(8, 3) -> relu -> b_2: bn"))
    assert [label_text(i) for i in chain.items] == ["a", None, "b_2"]


def test_label_template_interpolates():
    src = net("  for i in range(3) { layer{i + 1}: relu }\n  -> stage{2 * 2}_{'y'}: relu")
    (chain,) = chains(src)
    (item,) = chain.items[0].primary.body.stmts[0].items
    assert isinstance(item.label, ast.Label)
    assert item.label.parts[0] == "layer"
    assert isinstance(item.label.parts[1], ast.Expr)
    assert paths(src) == ["layer1", "layer2", "layer3", "stage4_y"]


# ---- grammar: definitions ---------------------------------------------------------------


def test_block_with_defaults():
    src = "block b(c, k = 3, s = k - 2,) { conv(c, k, stride=s) }\nnetwork n { input [1, 9, 9]; b(2) }"
    block = parse(src).defs[0]
    assert isinstance(block, ast.BlockDef) and block.name == "b"
    assert [p.name for p in block.params] == ["c", "k", "s"]
    assert block.params[0].default is None
    assert block.params[1].default.value == 3
    assert isinstance(block.params[2].default, ast.BinOp)
    assert archdsl.check(src).output_shape == (2, 7, 7)  # k=3, stride 1


@pytest.mark.parametrize(
    "call, shape",
    [
        ("b(2)", (2, 7, 7)),
        ("b(2, 5)", (2, 2, 2)),
        ("b(2, k=1, s=1)", (2, 9, 9)),
        ("b(c=3, s=2)", (3, 4, 4)),
        ("b(2, 3, 3)", (2, 3, 3)),
    ],
)
def test_block_arguments_bind_positionally_and_by_keyword(call, shape):
    src = f"block b(c, k = 3, s = k - 2) {{ conv(c, k, stride=s) }}\nnetwork n {{ input [1, 9, 9]; {call} }}"
    assert archdsl.check(src).output_shape == shape


def test_block_without_parameters_and_parentheses():
    src = "block act { relu }\nnetwork n { input [1, 2, 2]; act -> act() }"
    assert parse(src).defs[0].params == ()
    assert paths(src) == ["0.0", "1.0"]


def test_network_definition():
    src = "network n(num_classes = 10, width = 4) {\n  input [3, 8, 8]\n  conv(width, 3)\n}"
    (defn,) = parse(src).defs
    assert isinstance(defn, ast.NetworkDef)
    assert defn.name == "n"
    assert [p.name for p in defn.params] == ["num_classes", "width"]
    assert [type(s).__name__ for s in defn.body.stmts] == ["InputStmt", "Chain"]


def test_network_alias():
    src = "network a(k = 3, c = 2) { input [1, 9, 9]; conv(c, k) }\nnetwork b = a(5)\nnetwork d = b(c=7)"
    defs = parse(src).defs
    alias = defs[1]
    assert isinstance(alias, ast.NetworkAlias)
    assert (alias.name, alias.base) == ("b", "a")
    assert [a.value.value for a in alias.args] == [5]
    assert defs[2].base == "b" and defs[2].args[0].name == "c"
    # the last network is the default; aliases of aliases stack their arguments
    graph = archdsl.check(src)
    assert graph.name == "d"
    assert graph.output_shape == (7, 5, 5)
    assert archdsl.check(src, network="b").output_shape == (2, 5, 5)
    assert archdsl.check(src, network="a").output_shape == (2, 7, 7)
    assert archdsl.check(src, network="d", k=1).output_shape == (7, 9, 9)  # override wins


def test_alias_without_arguments():
    src = "network a { input [1, 4, 4]; relu }\nnetwork b = a"
    assert parse(src).defs[1].args == ()
    assert archdsl.check(src).name == "b"


def test_imports_bundled_library():
    src = 'import "lib/resnet.arch"\nnetwork r = resnet(layers=[1, 1, 1, 1], num_classes=3)'
    assert isinstance(parse(src).defs[0], ast.Import)
    assert archdsl.check(src).output_shape == (3,)


# ---- grammar: repetition, control flow, merges, seq -------------------------------------


def test_repeat():
    (chain,) = chains(net("  relu x 3 -> conv(4, 1) x n + 1 -> relu x 0"))
    reps = [it.repeat for it in chain.items]
    assert reps[0].value == 3
    assert isinstance(reps[1], ast.BinOp) and reps[1].op == "+"
    assert reps[2].value == 0
    src = "network n(k = 2) { input [4, 8, 8]; relu x 3 -> conv(4, 1) x k + 1 -> relu x 0 }"
    assert paths(src) == ["0", "1", "2", "3", "4", "5"]
    assert paths(src, k=0) == ["0", "1", "2", "3"]


def test_if_else_if_else():
    src = (
        "block pick(k) {\n"
        "  if k == 0 { zero: relu }\n"
        "  else if k == 1 { one: sigmoid }\n"
        "  else { other: tanh }\n"
        "}\n"
        "network n(k = 0) { input [1, 2, 2]; p: pick(k) }"
    )
    chain = parse(src).defs[0].body.stmts[0]
    node = chain.items[0].primary
    assert isinstance(node, ast.If)
    assert isinstance(node.other, ast.Body)
    inner = node.other.stmts[0].items[0].primary
    assert isinstance(inner, ast.If) and isinstance(inner.other, ast.Body)
    assert paths(src, k=0) == ["p.zero"]
    assert paths(src, k=1) == ["p.one"]
    assert paths(src, k=2) == ["p.other"]
    ops = [n.op for n in archdsl.check(src, k=5).nodes()]
    assert ops == ["input", "tanh"]


def test_if_without_else():
    src = "network n(on = true) { input [1, 2, 2]; if on { relu } -> sigmoid }"
    node = chains(src)[0].items[0].primary
    assert isinstance(node, ast.If) and node.other is None
    assert paths(src) == ["0", "1"]
    assert paths(src, on=False) == ["0"]


def test_for_loop():
    src = "network n { input [1, 8, 8]; for c in [2, 3, 5] { conv(c, 1) } }"
    loop = chains(src)[0].items[0].primary
    assert isinstance(loop, ast.For) and loop.var == "c"
    assert isinstance(loop.iterable, ast.ListExpr)
    graph = archdsl.check(src)
    assert [n.attrs["out"] for n in graph.nodes() if n.op == "conv"] == [2, 3, 5]
    assert graph.output_shape == (5, 8, 8)


def test_for_over_range_and_empty_list():
    src = "network n(k = 3) { input [1, 8, 8]; for i in range(k) { conv(i + 1, 1) } }"
    assert archdsl.check(src).output_shape == (3, 8, 8)
    assert archdsl.check(src, k=0).output_shape == (1, 8, 8)


@pytest.mark.parametrize("kind", ["add", "concat", "mul"])
def test_merges_parse_their_branches(kind):
    src = net(f"  {kind} {{\n    conv(4, 1) -> relu\n    identity; (relu -> relu)\n  }}")
    merge = chains(src)[0].items[0].primary
    assert isinstance(merge, ast.Merge) and merge.kind == kind
    assert [len(b.items) for b in merge.branches] == [2, 1, 1]
    assert isinstance(merge.branches[2].items[0].primary, ast.Group)
    graph = archdsl.check(src)
    assert graph.output_shape == ((12, 8, 8) if kind == "concat" else (4, 8, 8))
    (node,) = [n for n in graph.nodes() if n.op == kind]
    assert [graph.node(i).op for i in graph.inputs(node.id)] == ["relu", "identity", "relu"]


def test_seq():
    src = net("  s: seq {\n    conv(4, 1)\n    relu; bn\n  }")
    item = chains(src)[0].items[0]
    assert isinstance(item.primary, ast.Seq)
    assert len(item.primary.body.stmts) == 3
    assert paths(src) == ["s.0", "s.1", "s.2"]


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
        ("range(1, 2, 0)", archdsl.ArchTypeError, "step"),
        ("make_divisible(10, 0)", archdsl.ArchTypeError, "divisor"),
        ("10 ** 300", archdsl.ArchLimitError, "too large"),
        ("1 < 'a'", archdsl.ArchTypeError, "cannot compare"),
    ],
)
def test_expression_errors(text, error, match):
    with pytest.raises(error, match=match):
        ev(text)


# ---- spans -------------------------------------------------------------------------------


SPAN_SRC = (
    "block b(c) {\n"  # 1
    "  conv(c, 1)\n"  # 2
    "}\n"  # 3
    "network n {\n"  # 4
    "  input [3, 8, 8]\n"  # 5
    "  stem: conv(8, 3,\n"  # 6
    "             padding=1)\n"  # 7
    "    -> relu -> body: b(4)\n"  # 8
    "}\n"
)


def test_spans_of_labels_and_op_calls():
    module = parse(SPAN_SRC, "spans.arch")
    (chain,) = [s for s in module.defs[1].body.stmts if isinstance(s, ast.Chain)]
    stem, relu, blk = chain.items
    assert (stem.span.path, stem.span.line, stem.span.column) == ("spans.arch", 6, 3)
    assert (stem.label.span.line, stem.label.span.column) == (6, 3)
    conv = stem.primary
    assert (conv.span.line, conv.span.column, conv.span.end_line, conv.span.end_column) == (
        6,
        9,
        7,
        24,
    )
    assert (conv.name_span.line, conv.name_span.column, conv.name_span.end_column) == (6, 9, 13)
    padding = conv.args[2]
    assert padding.name == "padding" and (padding.span.line, padding.span.column) == (7, 14)
    assert (padding.value.span.line, padding.value.span.column) == (7, 22)
    assert (relu.span.line, relu.span.column) == (8, 8)
    assert (blk.span.line, blk.span.column) == (8, 16)
    assert (blk.primary.span.line, blk.primary.span.column) == (8, 22)
    assert (chain.span.line, chain.span.column, chain.span.end_line) == (6, 3, 8)
    block = module.defs[0]
    assert (block.span.line, block.span.column, block.span.end_line) == (1, 1, 3)
    inner = block.body.stmts[0].items[0].primary
    assert (inner.span.line, inner.span.column) == (2, 3)


def test_expression_spans():
    e = expr("1 + foo * 2")
    assert (e.span.line, e.span.column) == (1, 5)
    assert (e.right.span.column, e.right.left.span.column, e.right.left.span.end_column) == (
        9,
        9,
        12,
    )


def test_graph_nodes_carry_call_spans():
    graph = archdsl.check(SPAN_SRC, path="spans.arch")
    spans = {n.path: n.span for n in graph.nodes() if n.path}
    assert (spans["stem"].path, spans["stem"].line, spans["stem"].column) == ("spans.arch", 6, 9)
    assert (spans["1"].line, spans["1"].column) == (8, 8)
    assert (spans["body.0"].line, spans["body.0"].column) == (2, 3)  # inside the block
    assert (graph.scopes["body"].span.line, graph.scopes["body"].span.column) == (8, 22)


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
