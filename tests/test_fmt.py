"""The formatter: canonical, idempotent, comment-keeping and meaning-preserving."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import archdsl
from archdsl import fmt
from archdsl.fmt import format_source, same_ast
from archdsl.frontend import parse
from archdsl_cli.main import main

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.arch")) + sorted((ROOT / "specs" / "lib").glob("*.arch"))
# networks written as a user would (labels with a dash, add if): formatted too
SPECS += sorted((Path(__file__).parent / "data" / "user_nets").glob("*.arch"))
BAD = sorted((Path(__file__).parent / "bad_specs").glob("*.arch"))


def _parses(path: Path) -> bool:
    try:
        parse(path.read_text(), str(path))
    except archdsl.ArchError:
        return False
    return True


CORPUS = SPECS + [p for p in BAD if _parses(p)]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.name)
def test_same_ast_and_idempotent(path: Path) -> None:
    text = path.read_text()
    once = format_source(text, path=str(path))
    assert same_ast(parse(text, str(path)), parse(once, str(path)))
    assert format_source(once, path=str(path)) == once


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_bundled_specs_are_formatted(path: Path) -> None:
    text = path.read_text()
    assert format_source(text, path=str(path)) == text, f"run: archdsl fmt {path}"


def test_bad_corpus_has_parsing_files() -> None:
    assert any(p in CORPUS for p in BAD)


def test_doctest() -> None:
    assert doctest.testmod(fmt).failed == 0


CASES = [
    # spacing
    ("y=1+2*3", "y = 1 + 2 * 3\n"),
    ("v = - 1", "v = -1\n"),
    ("v = a -1", "v = a - 1\n"),
    ("v = f( a,b = 2 )", "v = f(a, b=2)\n"),
    ("v = [ 1,2 ][0]", "v = [1, 2][0]\n"),
    ("v = not(a)and b", "v = not (a) and b\n"),
    ("v = 2**3", "v = 2 ** 3\n"),
    (
        "network n=resnet(layers=[2,2] )scaled( width=2 )",
        "network n = resnet(layers=[2, 2]) scaled(width=2)\n",
    ),
    # a network's training-mode fields are written as keyword arguments
    (
        "network n{input [4]\noutputs ( logits = out,aux )\nlinear(3)->side aux:linear(2)}",
        "network n {\n  input [4]\n  outputs(logits=out, aux)\n  linear(3) -> side aux: linear(2)\n}\n",
    ),
    # block parameters keep ' = ', keyword arguments do not
    ("block b(p,q=1){conv(p,3,stride=q)}", "block b(p, q = 1) {\n  conv(p, 3, stride=q)\n}\n"),
    # labels, interpolation, repetition, one-line bodies, merges
    (
        "network n{\ninput [3,8,8]\nl{1}a:conv(4,3)x 2->seq{relu;identity}->add{();relu}\n}",
        "network n {\n  input [3, 8, 8]\n"
        "  l{1}a: conv(4, 3) x 2 -> seq { relu; identity } -> add { (); relu }\n}\n",
    ),
    # the keywords that may be labels are labels before '{' and ':', not headers
    (
        "network n{\ninput [3,8,8]\nfor i in range(2){block{i+4}:conv(4,3)}\nblock:relu\n}",
        "network n {\n  input [3, 8, 8]\n  for i in range(2) { block{i + 4}: conv(4, 3) }\n"
        "  block: relu\n}\n",
    ),
    # a label's parts join with '-' and no spaces; a minus in an expression keeps them
    (
        "network n{input [4]\nfor i in range(2){block{1} - {i-1}:relu}\nb1 - 0:relu->c-d:relu}",
        "network n {\n  input [4]\n  for i in range(2) { block{1}-{i - 1}: relu }\n"
        "  b1-0: relu -> c-d: relu\n}\n",
    ),
    # references as arguments, and @in, join their '@' as any reference
    (
        "network n{input [3,8,8]\na:conv(4,1)->resize( @a,mode='bilinear')->resize(size=@ in)}",
        "network n {\n  input [3, 8, 8]\n"
        "  a: conv(4, 1) -> resize(@a, mode='bilinear') -> resize(size=@in)\n}\n",
    ),
    # a merge under a condition
    (
        "block b(s){add  if s==1{()\nrelu}\nconcat if(s>1){();relu}}",
        "block b(s) {\n  add if s == 1 {\n    ()\n    relu\n  }\n"
        "  concat if (s > 1) { (); relu }\n}\n",
    ),
    # slices: no spaces around their colon
    ("v = w[1 :]+w[ : -1]+w[a+1:b]", "v = w[1:] + w[:-1] + w[a + 1:b]\n"),
    # comments, blank lines, continuation lines
    (
        "# head\n\n\n\nnetwork n{ # c\ninput [3,8,8]\n   conv(4,3) # a\n->relu\n}\n\n",
        "# head\n\nnetwork n {  # c\n  input [3, 8, 8]\n  conv(4, 3)  # a\n  -> relu\n}\n",
    ),
    # tables keep their alignment and hang 2 spaces in; comments keep their column
    (
        "t = [\n    [1,  16],   # a\n    [6, 240],   # b\n]\n",
        "t = [\n  [1,  16],     # a\n  [6, 240],     # b\n]\n",
    ),
    # visual indentation under an open parenthesis
    ("v = f(1,\n 2)", "v = f(1,\n      2)\n"),
    # if / else and a body that follows its brace on the same line
    (
        "block b{ if a { relu } else {\ntanh }}",
        "block b {\n  if a { relu } else {\n    tanh\n  }\n}\n",
    ),
]


@pytest.mark.parametrize("source, expected", CASES)
def test_layout(source: str, expected: str) -> None:
    assert format_source(source) == expected
    assert format_source(expected) == expected


def test_arrow_indent_option() -> None:
    src = "network n {\n  input [3, 8, 8]\n  conv(4, 3)\n  -> relu\n}\n"
    assert "    -> relu" in format_source(src, arrow_indent=2)


def test_syntax_error_is_reported() -> None:
    with pytest.raises(archdsl.ArchSyntaxError):
        format_source("network n {")


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ugly, good = tmp_path / "ugly.arch", tmp_path / "good.arch"
    ugly.write_text("network t{input [3,8,8];conv(4,3)->relu}\n")
    good.write_text(format_source(ugly.read_text()))
    assert main(["fmt", "--check", str(good)]) == 0
    assert main(["fmt", "--check", str(ugly), str(good)]) == 1
    assert "would reformat" in capsys.readouterr().out
    assert ugly.read_text() != good.read_text()  # --check changes nothing
    assert main(["fmt", str(ugly)]) == 0
    assert ugly.read_text() == good.read_text()
    bad = tmp_path / "bad.arch"
    bad.write_text("network n {")
    assert main(["fmt", str(bad)]) == 1
    assert "error" in capsys.readouterr().err
