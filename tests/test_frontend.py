"""Grammar and AST: parsing every construct (chains, statements, comments, definitions,
repetition, control flow, merges, seq) and the source spans the AST and the graph carry.

The evaluator's operators and builtins are tested in test_expressions.py; elaboration (the
naming rule, ``in`` branching, parameter overrides, error locations) in
test_elaboration.py. No torch here: ``archdsl.check`` and the parser are pure Python.
"""

from __future__ import annotations

import pytest

import archdsl
from archdsl.frontend import ast, parse
from spectext import expr, net, paths

# ---- helpers -----------------------------------------------------------------------------


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


def test_label_parts_join_with_a_dash():
    """torchvision's RegNet names its blocks ``block1-0``: a label joins names, digits and
    interpolations with "-"."""
    src = net(
        "  s: seq { for i in range(2) { block{1}-{i}: relu } }\n"
        "  -> b1-0: relu -> a-b-c_d: relu -> t{2}-y{3}: relu"
    )
    assert paths(src) == ["s.block1-0", "s.block1-1", "b1-0", "a-b-c_d", "t2-y3"]


@pytest.mark.parametrize(
    "label, message, column",
    [
        ("a+b", "a label joins its parts with '-' only", 2),
        ("a-1.5", "a label's part after '-' is a name or digits, not 1.5", 3),
        ("a-1e3", "a label's part after '-' is a name or digits, not 1e3", 3),
        ('a{"x-"}', "label 'ax-' is not a valid name (letters, digits, _, and '-' between", 1),
        ('{"a"}', "unexpected '{'", 1),
    ],
)
def test_label_dash_errors(label: str, message: str, column: int) -> None:
    src = f"network n {{ input [4]; {label}: relu }}"
    with pytest.raises(archdsl.ArchError, match=message.replace("(", r"\(")) as e:
        archdsl.check(src)
    assert e.value.column == src.index(label) + column


def test_side_output_label_has_no_dash() -> None:
    """A side output's label is a field of the training-mode outputs (a namedtuple)."""
    src = "network n { input [4]; linear(3) -> side aux-1: linear(2) }"
    with pytest.raises(archdsl.ArchError, match="no '-'") as e:
        archdsl.check(src)
    assert e.value.column == src.index("aux-1") + 1


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
