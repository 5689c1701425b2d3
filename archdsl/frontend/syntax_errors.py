"""Lark's parse errors as ArchSyntaxErrors: what was expected, said in words, and the
common mistakes (a statement run on, a bracket never closed, a computed label without its
':', a layer chosen with ``a if cond else b``) named."""

from __future__ import annotations

import re

from lark import Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from archdsl.errors import ArchSyntaxError, Span, source_lines

_TOKEN_WORDS = {
    "_NL": "end of line",
    "$END": "end of file",
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "ARROW": "'->'",
    "REPEAT": "'x'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "COMMA": "','",
    "EQUAL": "'='",
    "COLON": "':'",
    "DOT": "'.'",
    "ELSE": "'else'",
    "COMP_OP": "a comparison",
    "ADD_OP": "'+' or '-'",
    "MUL_OP": "an operator",
}


# Tokens that would merely continue an expression or a chain; listed only when nothing
# else could come next, so "conv(4 3)" says "expected ',' or ')'".
_CONTINUATIONS = {
    "ADD_OP",
    "MUL_OP",
    "POW",
    "COMP_OP",
    "DOT",
    "LSQB",
    "IF",
    "AND",
    "OR",
    "ARROW",
    "REPEAT",
    "FOR",
    "LPAR",
    "COLON",
    "LBRACE",
}


_EXPRESSION_START = {
    "NUMBER",
    "STRING",
    "TRUE",
    "FALSE",
    "NONE",
    "IN",
    "NOT",
    "ADD_OP",
    "LSQB",
    "LPAR",
    "NAME",
}


def _describe(expected: set[str]) -> str:
    structural = expected - _CONTINUATIONS
    if structural:
        expected = structural
    if {"NUMBER", "STRING"} <= expected:
        words = ["an expression"] + sorted(
            {_TOKEN_WORDS.get(t, t.lower().strip("_")) for t in expected - _EXPRESSION_START}
        )
    else:
        words = sorted({_TOKEN_WORDS.get(t, t.lower().strip("_")) for t in expected})
    if len(words) > 6:
        words = words[:6] + ["..."]
    if len(words) == 2:
        return " or ".join(words)
    return ", ".join(words)


_CLOSING = {"(": "')'", "[": "']'", "{": "'}'"}


def _unclosed(open_tokens: list[Token]) -> str:
    tok = open_tokens[-1]
    return (
        f"; the '{tok.value}' at {tok.line}:{tok.column} is never closed with {_CLOSING[tok.value]}"
    )


def syntax_error(
    e: UnexpectedInput, text: str, path: str, open_tokens: list[Token]
) -> ArchSyntaxError:
    """Lark's exception ``e`` as an :class:`ArchSyntaxError` at its place in ``text``;
    ``open_tokens`` are the brackets not yet closed where parsing stopped."""
    line, col = getattr(e, "line", 0) or 0, getattr(e, "column", 0) or 0
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else ""
        rest = text[pos + 1 :].split("\n", 1)[0]
        if ch in "\"'" and ch not in rest:
            msg = "unterminated string: add the closing quote on the same line"
        else:
            msg = f"unexpected character {ch!r}"
    elif isinstance(e, UnexpectedEOF):
        lines = source_lines(text)
        line, col = len(lines), len(lines[-1]) + 1
        msg = f"unexpected end of file; expected {_describe(set(e.expected))}"
        if open_tokens:
            msg = "unexpected end of file" + _unclosed(open_tokens)
    elif isinstance(e, UnexpectedToken):
        tok = e.token
        if tok.type == "$END":
            lines = source_lines(text)
            line, col = len(lines), len(lines[-1]) + 1
            what = "end of file"
            if open_tokens:
                msg = "unexpected end of file" + _unclosed(open_tokens)
                return ArchSyntaxError(msg, Span(path, max(line, 1), max(col, 1)), text)
        elif tok.type == "_NL":
            what = "end of line"
        else:
            what = repr(tok.value)
        try:  # the tokens the parser really accepts here, not the LALR state's lookaheads
            expected = set(e.interactive_parser.accepts())
        except Exception:  # pragma: no cover - lark internals
            expected = set(e.expected)
        msg = f"unexpected {what}; expected {_describe(expected)}"
        label = _unfinished_label(e, tok, expected, text)
        if label is not None:
            return _label_error(label, what, text, path)
        if tok.type == "IF" and not expected & (_EXPRESSION_START | {"IF"}):
            msg = (
                "unexpected 'if' after a layer: layers are chosen with an if statement, "
                "'if cond { layers } else { layers }'; 'a if cond else b' chooses values"
            )
        elif tok.type == "REPEAT" and "NAME" in expected:
            msg = "'x' is reserved for repetition ('item x N') and cannot be a name"
        elif tok.type == "NAME" and "REPEAT" in expected and tok.value != "x":
            msg += " (statements are separated by newlines or ';')"
    else:  # pragma: no cover - other lark errors
        msg = str(e).splitlines()[0]
    end = col + 1
    return ArchSyntaxError(msg, Span(path, max(line, 1), max(col, 1), line, end), text)


def _unfinished_label(
    e: UnexpectedToken, tok: Token, expected: set[str], text: str
) -> re.Match[str] | None:
    """Where a label with a computed part (``word{expr}``) that the error cut short starts
    in ``text`` (the match of its word and first brace), or None. ``residual { conv(...) }``
    parses as such a label: the parser wants its ':' (or, at a newline inside the braces,
    its '}')."""
    if "COLON" not in expected and not (tok.type == "_NL" and expected == {"RBRACE"}):
        return None
    try:
        stack = e.interactive_parser.parser_state.value_stack
    except AttributeError:  # pragma: no cover - lark internals
        return None
    # label_word gives a plain str (names are Tokens): the label being parsed is the last
    words = [v for v in stack if type(v) is str]
    if not words:
        return None
    before = text[: tok.start_pos if tok.start_pos is not None else len(text)]
    found = list(re.finditer(rf"(?<!\w){re.escape(words[-1])}\s*\{{", before))
    return found[-1] if found else None


def _label_error(label: re.Match[str], what: str, text: str, path: str) -> ArchSyntaxError:
    start, brace = label.start(), label.end() - 1
    word_end = start + len(label.group()[:-1].rstrip())
    before = text[:start]
    line = before.count("\n") + 1
    column = start - (before.rfind("\n") + 1) + 1
    span = Span(path, line, column, line, column + (word_end - start))
    err = ArchSyntaxError(
        f"unexpected {what}: '{label.group()}' reads as a label with a computed part, as in "
        "'denselayer{i + 1}: layer', and needs ':' and the labelled item after its '}'",
        span,
        text,
    )
    if brace > word_end:  # "residual {": meant as a construct
        err.notes.append(
            "layers are grouped with 'add { branch; branch }' (a residual: "
            "'add { (); layers }'), 'concat { ... }', 'mul { ... }' or 'seq { ... }'; a "
            "block is called with parentheses, 'name(args)'"
        )
    return err
