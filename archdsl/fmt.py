"""``archdsl fmt``: the canonical layout of a spec, comments kept.

A token-stream formatter over the grammar's own lexer. It keeps the author's line breaks
(a spec's lines usually follow the paper's table) and normalizes everything inside them:

- spacing: ``a -> b``, ``f(a, b=1)``, ``block b(p, q = 1)``, ``x = a + b``, ``-1``,
  ``seq { conv(8, 3); bn }``, ``denselayer{i + 1}: ...``;
- indentation: 2 spaces per brace level; a line inside ``( )``/``[ ]`` lines up after its
  bracket, or 2 spaces in when the bracket ends its line (tables); a line that starts with
  ``->`` continues its chain at the statement's indentation (the house style of the bundled
  specs; ``arrow_indent`` indents it further), a line after a trailing operator 4 more;
- statements: a network's or block's body has one per line; a multi-line brace's first
  and last statements get their own lines; a brace that opens and closes on one line
  stays so, and ``a; b`` elsewhere stays on its line (specs pair a factorized 7x7 that way);
- blank lines: at most one in a row, none at the start or end;
- trailing comments keep their column when there is room (aligned comments stay aligned),
  else sit two spaces after the code; extra spaces after a comma inside brackets are kept
  (aligned tables stay aligned).

It never changes meaning: the result is re-parsed and its AST compared with the input's.

>>> print(format_source("network t{input [3,8,8];conv(4,3)->relu}"), end="")
network t {
  input [3, 8, 8]
  conv(4, 3) -> relu
}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lark import Lark, Token

from archdsl.errors import Span
from archdsl.frontend import ast, parse
from archdsl.frontend import parser as _parser

_VALUE_TYPES = ("NAME", "NUMBER", "STRING")
_VALUE_WORDS = (")", "]", "true", "false", "none")
# keywords after which a "{" opens a body (as opposed to a label's "{expr}")
_HEADERS = {"if", "else", "for", "block", "network", "seq", "add", "concat", "mul"}
_CONTINUE_AFTER = _parser._JOIN_AFTER - {"{"}


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark.open(
        "archdsl.lark", rel_to=_parser.__file__, parser="lalr", lexer="basic", cache=False
    )


def _is_word(tok: Token) -> bool:
    """A keyword or punctuation, not a name, number or string."""
    return tok.type not in _VALUE_TYPES


def _ends_value(tok: Token | None) -> bool:
    return tok is not None and (tok.type in _VALUE_TYPES or tok.value in _VALUE_WORDS)


@dataclass
class _Open:
    char: str  # "(", "[", "{"
    kind: str  # "call", "params", "group", "list", "body", "inline", "label"
    col: int  # output column of the bracket
    line_indent: int  # indentation of the output line that opened it
    hanging: bool  # the bracket ended its source line
    definition: bool = False  # the body of a network or block


class _Formatter:
    def __init__(self, text: str, arrow_indent: int):
        self.toks = list(_lark().lex(text, dont_ignore=True))
        self.arrow_indent = arrow_indent
        self.lines: list[str] = []
        self.cur = ""  # the output line being built
        self.indent = 0  # its indentation
        self.blank = 0  # blank lines owed before the next line
        self.stack: list[_Open] = []
        self.prev: Token | None = None  # previous code token
        self.prev_closed: _Open | None = None  # the bracket the previous token closed
        self.prev_dash = False  # the previous token joins a label's parts (block1-0)
        # inside a reference (@backbone.layer{i}.0): the depth of its label braces
        self.ref: int | None = None
        self.header: str | bool = False  # the header keyword that waits for its "{"
        self.break_next = False  # the next code token starts a new line

    # ---- the token stream
    def _next_code(self, i: int) -> Token | None:
        for tok in self.toks[i + 1 :]:
            if tok.type.startswith("__IGNORE"):
                continue
            return tok
        return None

    def _label_dash(self, i: int) -> bool:
        """Whether the token at i is a "-" that joins a label's parts (``block{s}-{i}:``):
        names, digits, ``{...}`` and "-" follow it up to the label's ":"."""
        if self.toks[i].type != "ADD_OP" or self.toks[i].value != "-":
            return False
        depth = 0
        for tok in self.toks[i + 1 :]:
            if tok.type.startswith("__IGNORE"):
                continue
            if _is_word(tok) and tok.value in ("{", "}"):
                depth += 1 if tok.value == "{" else -1
                if depth < 0:
                    return False
            elif depth == 0 and _is_word(tok) and tok.value == ":":
                return True
            elif depth == 0 and not (
                tok.type in ("NAME", "NUMBER") or tok.type == "ADD_OP" and tok.value == "-"
            ):
                return False
            elif depth > 0 and tok.type in ("_NL", "COMMENT"):
                return False
        return False

    def _label_word(self, i: int) -> bool:
        """Whether the keyword at i is a label (``block{i + 4}: ...``, ``block: ...``), as
        ``block`` and ``network`` may be, rather than the header of a body."""
        if self.toks[i].value not in ("block", "network"):
            return False
        nxt = self._next_code(i)
        return nxt is not None and _is_word(nxt) and nxt.value in ("{", ":")

    def _same_line_close(self, i: int) -> bool:
        """Whether the "{" at i closes before any newline."""
        depth = 0
        for tok in self.toks[i:]:
            if tok.type == "_NL" and "\n" in tok.value:
                return False
            if tok.type == "COMMENT":
                return False
            if tok.value in ("{", "(", "[") and _is_word(tok):
                depth += 1
            elif tok.value in ("}", ")", "]") and _is_word(tok):
                depth -= 1
                if depth == 0:
                    return True
        return False

    def run(self) -> str:
        for i, tok in enumerate(self.toks):
            if tok.type.startswith("__IGNORE"):
                continue
            if tok.type == "_NL":
                self.newline(tok)
            elif tok.type == "COMMENT":
                self.comment(tok, i)
            else:
                self.code(tok, i)
        self.end_line()
        return "\n".join(self.lines) + "\n" if self.lines else ""

    # ---- lines
    def end_line(self) -> None:
        if self.cur:
            self.lines.extend([""] * self.blank)
            self.lines.append(self.cur.rstrip())
            self.blank = 0
        self.cur = ""
        self.break_next = False

    def newline(self, tok: Token) -> None:
        newlines = tok.value.count("\n")
        top = self.stack[-1] if self.stack else None
        if newlines == 0:  # only ";": kept, except directly in a network's or block's body
            if top is not None and not top.definition:
                self.cur += ";"
                return
        if not self.cur:
            return
        self.end_line()
        if newlines > 1 and self.lines:
            self.blank = 1

    def line_indent(self, first: Token | None) -> int:
        value = first.value if first is not None and _is_word(first) else None
        top = self.stack[-1] if self.stack else None
        if top is None or top.kind in ("body", "inline"):
            if top is None:
                base = 0
            elif value == "}":
                return top.line_indent
            else:
                base = top.line_indent + 2
            if value == "->":
                return base + self.arrow_indent
            p = self.prev
            if p is not None and _is_word(p) and p.value in _CONTINUE_AFTER and value != "}":
                return base + 4
            return base
        if top.kind == "label":
            return top.col + 1
        if top.hanging:
            return top.line_indent if value == top_closer(top) else top.line_indent + 2
        return top.col if value == top_closer(top) else top.col + 1

    def start_line(self, first: Token | None) -> None:
        self.indent = self.line_indent(first)
        self.cur = " " * self.indent

    def comment(self, tok: Token, i: int) -> None:
        text = tok.value.rstrip()
        if self.cur.strip():
            gap_ok = (
                self.toks[i - 1].type.startswith("__IGNORE") and len(self.toks[i - 1].value) >= 2
            )
            col = (tok.column or 1) - 1
            width = len(self.cur.rstrip())
            self.cur = self.cur.rstrip()
            pad = col - width if gap_ok and col >= width + 2 else 2
            self.cur += " " * pad + text
            return
        self.start_line(None)
        self.cur += text

    # ---- code
    def code(self, tok: Token, i: int) -> None:
        v = tok.value
        word = _is_word(tok)
        top = self.stack[-1] if self.stack else None
        if word and v == "}" and top is not None and top.kind == "body" and self.cur.strip():
            self.end_line()
        elif self.break_next and self.cur.strip():
            self.end_line()
        self.break_next = False
        joined = self._in_ref(tok)
        if not self.cur:
            self.start_line(tok)
        else:
            self.cur = self.cur.rstrip(" ") + " " * (0 if joined else self.space(tok, i))
        col = len(self.cur)
        self.cur += v
        if word and v in _HEADERS and not self._label_word(i):
            self.header = v
        self.prev_closed = None
        self.prev_dash = self._label_dash(i)
        if word and v in ("(", "["):
            nxt = self._next_code(i)
            hanging = nxt is None or nxt.type in ("_NL", "COMMENT")
            self.stack.append(_Open(v, self.bracket_kind(tok, i), col, self.indent, hanging))
        elif word and v == "{":
            top_level = self.header in ("block", "network")
            if self.header:
                kind = "inline" if not top_level and self._same_line_close(i) else "body"
                self.header = False
            else:
                kind = "label"
            # a body indents from its statement's first line, not from a continuation line
            # (e.g. the last line of a network's parameters)
            statement = top is None or top.kind in ("body", "inline")
            base = (0 if top is None else top.line_indent + 2) if statement else self.indent
            self.stack.append(
                _Open(v, kind, col, base if kind == "body" else self.indent, False, top_level)
            )
            if kind == "body":
                self.break_next = True
        elif word and v in (")", "]", "}") and self.stack:
            self.prev_closed = self.stack.pop()
        self.prev = tok

    def _in_ref(self, tok: Token) -> bool:
        """Follow a reference's tokens; whether ``tok`` joins the one before it with no
        space (``@``, ``backbone``, ``.``, ``layer``, ``{``...``}``, ``.0``)."""
        v, word = tok.value, _is_word(tok)
        if word and v == "@":
            self.ref = -1
            return False
        if self.ref is None:
            return False
        if self.ref > 0:  # inside a label's {expr}: spaced as any expression
            if word and v == "}":
                self.ref -= 1
                return True
            if word and v == "{":
                self.ref += 1
            return False
        if (
            tok.type in ("NAME", "NUMBER")
            or word
            and v in (".", "-", "{")
            or self.ref < 0
            and v == "in"
        ):
            self.ref = 1 if word and v == "{" else 0
            return True
        self.ref = None
        return False

    def bracket_kind(self, tok: Token, i: int) -> str:
        if tok.value == "[":
            return "list"
        p = self.prev
        if p is not None and (p.type == "NAME" or p.value in ("scaled", "outputs")):
            before = self._prev_code(i, 2)
            if before is not None and _is_word(before) and before.value in ("block", "network"):
                return "params"
            return "call"
        return "group"

    def _prev_code(self, i: int, n: int) -> Token | None:
        for tok in reversed(self.toks[:i]):
            if tok.type.startswith("__IGNORE") or tok.type in ("_NL", "COMMENT"):
                continue
            n -= 1
            if n == 0:
                return tok
        return None

    def space(self, tok: Token, i: int) -> int:
        """Spaces between the previous code token and ``tok`` on one line."""
        p = self.prev
        assert p is not None
        pv, v = p.value, tok.value
        pw, w = _is_word(p), _is_word(tok)
        top = self.stack[-1] if self.stack else None
        closed = self.prev_closed
        if self.cur.endswith(";"):
            return 1
        if self.prev_dash or self._label_dash(i):
            return 0
        if w and v in (",", ")", "]", ".", ":"):
            return 0
        if tok.type == "NUMBER" and v.startswith(".") and p.type in ("NAME", "NUMBER"):
            return 0  # a numbered part of an init rule's path: classifier.1.weight
        if pw and pv in ("(", "[", "."):
            return 0
        if pw and pv == ":" and top is not None and top.char == "[":
            return 0  # a slice: v[1:], v[:-1]
        if pw and pv == ",":
            orig = self.toks[i - 1]
            if top is not None and top.char in "([" and orig.type.startswith("__IGNORE"):
                return max(1, len(orig.value))
            return 1
        if w and v == "=" or pw and pv == "=":
            return 0 if top is not None and top.kind in ("call", "list", "group") else 1
        if w and v == "(":
            return 0 if p.type == "NAME" or pv in ("scaled", "outputs") else 1
        if w and v == "[":
            return 0 if p.type in ("NAME", "STRING") or (pw and pv in (")", "]")) else 1
        if w and v == "{":
            if self.header:
                return 1
            return 0
        if pw and pv == "{":
            return 0 if top is not None and top.kind == "label" or v == "}" else 1
        if w and v == "}":
            return 0 if top is not None and top.kind == "label" else 1
        if closed is not None and closed.kind == "label" and (tok.type == "NAME" or v == "{"):
            return 0
        if pw and pv in ("+", "-") and p.type == "ADD_OP" and self._unary(i):
            return 0
        return 1

    def _unary(self, i: int) -> bool:
        """Whether the sign before token i is unary."""
        before = self._prev_code(i, 2)
        return not _ends_value(before)


def top_closer(top: _Open) -> str:
    return {"(": ")", "[": "]", "{": "}"}[top.char]


def _strip_spans(node: Any) -> Any:
    if isinstance(node, Span):
        return None
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,) + tuple(
            _strip_spans(getattr(node, f.name)) for f in dataclasses.fields(node)
        )
    if isinstance(node, (tuple, list)):
        return tuple(_strip_spans(x) for x in node)
    return node


def same_ast(a: ast.Module, b: ast.Module) -> bool:
    """Whether two parsed modules are the same program (spans ignored)."""
    return _strip_spans(a) == _strip_spans(b)


def format_source(text: str, *, path: str = "<string>", arrow_indent: int = 0) -> str:
    """The canonical layout of a spec; raises ArchSyntaxError when it does not parse."""
    before = parse(text, path)
    out = _Formatter(text, arrow_indent).run()
    after = parse(out, path)
    if not same_ast(before, after):  # pragma: no cover - a formatter bug
        raise RuntimeError(f"{path}: formatting would change the spec's meaning (an archdsl bug)")
    return out


__all__ = ["format_source", "same_ast"]
