"""The Pygments lexer and the TextMate grammar."""

from __future__ import annotations

import doctest
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("pygments")

from pygments import lex
from pygments.lexers import get_lexer_by_name, get_lexer_for_filename
from pygments.token import Comment, Error, Keyword, Name, Number, Operator, String

from archdsl import highlight
from archdsl.highlight import FUNCTIONS, OP_NAMES, ArchdslLexer

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.arch")) + sorted((ROOT / "specs" / "lib").glob("*.arch"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_no_error_tokens(path: Path) -> None:
    text = path.read_text()
    tokens = list(lex(text, ArchdslLexer()))
    assert [v for t, v in tokens if t in Error] == []
    assert "".join(v for _, v in tokens) == text


def _kinds(text: str) -> dict[str, object]:
    return {v: t for t, v in lex(text, ArchdslLexer()) if v.strip()}


def test_classifies() -> None:
    kinds = _kinds(
        'import "lib/resnet.arch"  # a comment\n'
        "block stem(c = 64) { conv1: conv(c, 7, stride=2) -> relu x 2 }\n"
        "network n { input [3, 224, 224]; add { (); seq { bn } } -> flatten -> b1-0: relu }\n"
        "block r(s) { concat if s == 1 { (); relu } }\n"
        "k = make_divisible(2.5e1, 8) if true else none\n"
        "network f { input [3, 8, 8]; body: b(); @body.layer3 -> conv(8, 1) }\n"
    )
    assert kinds["import"] in Keyword
    assert kinds['"lib/resnet.arch"'] in String
    assert kinds["# a comment"] in Comment
    assert kinds["block"] in Keyword and kinds["network"] in Keyword
    assert kinds["stem"] in Name.Class
    assert kinds["conv1"] is Name.Label and kinds["b1-0"] is Name.Label
    assert kinds["conv"] is Name.Builtin and kinds["relu"] is Name.Builtin
    assert kinds["flatten"] is Name.Builtin and kinds["bn"] is Name.Builtin
    assert kinds["x"] in Operator and kinds["->"] in Operator
    assert (
        kinds["concat"] in Keyword
        and kinds["add"] in Keyword
        and kinds["seq"] in Keyword
        and kinds["input"] in Keyword
    )
    assert kinds["7"] in Number.Integer and kinds["2.5e1"] in Number.Float
    assert kinds["make_divisible"] in Name.Function
    assert kinds["true"] in Keyword.Constant and kinds["none"] in Keyword.Constant
    assert kinds["k"] is Name
    assert kinds["@body.layer3"] is Name.Variable


def test_registered_with_pygments() -> None:
    try:
        lexer = get_lexer_by_name("archdsl")
    except Exception:  # the entry point needs `pip install -e .` after pyproject changes
        pytest.skip("archdsl's pygments entry point is not installed")
    assert isinstance(lexer, ArchdslLexer)
    assert isinstance(get_lexer_for_filename("resnet.arch"), ArchdslLexer)


def test_doctest() -> None:
    assert doctest.testmod(highlight).failed == 0


def test_textmate_grammar_names_every_op() -> None:
    grammar = json.loads((ROOT / "editors" / "archdsl.tmLanguage.json").read_text())
    assert grammar["scopeName"] == "source.archdsl"
    op_pattern = grammar["repository"]["op"]["match"]
    assert set(OP_NAMES) <= set(re.findall(r"\w+", op_pattern))
    function_pattern = grammar["repository"]["function"]["match"]
    assert set(FUNCTIONS) <= set(re.findall(r"\w+", function_pattern))
    for rule in grammar["repository"].values():  # every regex compiles
        for r in rule.get("patterns", [rule]):
            if "match" in r:
                re.compile(r["match"])
