"""Text -> AST. Lark's exceptions become ArchSyntaxError here and nowhere else."""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from lark import Lark, Token, Transformer_NonRecursive, Tree, v_args
from lark.exceptions import (
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from archdsl.errors import ArchError, ArchLimitError, ArchSyntaxError, Span, source_lines
from archdsl.frontend import ast

MAX_SOURCE_BYTES = 1_000_000
# Brackets ( [ { open inside one another, each "else if" of a chain counting as one more:
# the elaborator recurses once per level.
MAX_NESTING = 64
# Levels of one expression: each operator (+, and, not, ., the "if" of a ternary, ...) and
# each call, index, list or parenthesised group is one. The evaluator recurses once per
# level; counted from the tokens, so a 100,000-term sum is refused before it is parsed.
MAX_EXPR_DEPTH = 100

_OPENERS = {"(", "["}
_CLOSERS = {")", "]"}
# A newline after one of these cannot end a statement; before one of these it is ignored.
_JOIN_AFTER = {
    "{", "(", "[", ",", "=", ":", "->", "+", "-", "*", "/", "//", "%", "**",
    "==", "!=", "<", "<=", ">", ">=", "and", "or", "not", "if", "else", "x", "in",
}
_JOIN_BEFORE = {"->", "}", ")", "]", "else", ","}
# Tokens that add a level to the expression they are in, and tokens that end one.
_EXPR_OPERATORS = {
    "+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", ".",
    "and", "or", "not", "if",
}
_EXPR_SEPARATORS = {",", "=", ":", "->", "x"}


class _Level:
    """One open bracket (or the file itself) and the expression being read inside it."""

    __slots__ = ("opener", "outer", "depth", "longest", "start")

    def __init__(self, opener: Token | None, outer: int):
        self.opener = opener
        self.outer = outer  # levels of the expressions around this bracket
        self.depth = 0  # levels of the current element (argument, item, statement part)
        self.longest = 0  # the deepest element so far
        self.start: Token | None = None  # the first token of the current element

    def end_element(self) -> None:
        self.longest = max(self.longest, self.depth)
        self.depth = 0
        self.start = None


class _Postlex:
    """Drops newlines that do not end a statement; bounds nesting and expression depth
    from the token stream, before Lark builds a tree of a huge input."""

    always_accept = ("_NL",)

    def __init__(self) -> None:
        self.path = "<string>"
        self.open: list[Token] = []  # brackets not yet closed, for "never closed" errors
        self.levels: list[_Level] = []
        self.chains: list[list[Token]] = []  # per level: the "if"s of its else-if chain

    def process(self, stream: Iterator[Token]) -> Iterator[Token]:
        self.open = []
        levels = self.levels = [_Level(None, 0)]
        chains = self.chains = [[]]
        pending: Token | None = None
        prev: Token | None = None
        before_prev: Token | None = None
        for tok in stream:
            if tok.type == "_NL":
                # Inside () or [] a newline never ends anything; inside {} it does, even
                # when the braces sit inside parentheses.
                in_parens = bool(self.open) and self.open[-1].value in _OPENERS
                if in_parens or prev is None or _joins_after(prev):
                    continue
                pending = pending or tok
                continue
            value = tok.value
            if pending is not None:
                if not (value in _JOIN_BEFORE and tok.type != "STRING"):
                    yield pending
                    levels[-1].end_element()
                pending = None
            if prev is not None and _is_word(prev) and prev.value == "}" and value != "else":
                chains[-1] = []  # the if-else chain at this level ended
            level = levels[-1]
            if level.start is None:
                level.start = tok
            if not _is_word(tok):
                pass
            elif value in _OPENERS or value == "{":
                self.open.append(tok)
                if value == "{":
                    level.end_element()  # a body or label part: expressions start afresh
                    levels.append(_Level(tok, 0))
                else:
                    levels.append(_Level(tok, level.outer + level.depth))
                chains.append([])
                self._check_nesting(tok)
            elif (value in _CLOSERS or value == "}") and len(levels) > 1:
                self.open.pop()
                chains.pop()
                inner = levels.pop()
                inner.end_element()
                if value != "}":  # a call, index, list or group is a level of its expression
                    self._deeper(levels[-1], inner.longest + 1)
            elif value == "if" and prev is not None and prev.value == "else" and (
                before_prev is not None and before_prev.value == "}"
            ):
                chains[-1].append(tok)  # "} else if": one level deeper than the "if" before
                self._check_nesting(tok, body=1)
            elif value in _EXPR_OPERATORS:
                self._deeper(level, 1)
            elif value in _EXPR_SEPARATORS:
                level.end_element()
            yield tok
            before_prev, prev = prev, tok

    def _check_nesting(self, tok: Token, body: int = 0) -> None:
        """Refuse ``tok`` (a bracket, or an "else if" whose body is ``body`` deeper) beyond
        the nesting limit."""
        chains = self.chains
        links = sum(len(c) for c in chains)
        if len(self.open) + links + body > MAX_NESTING:
            err = ArchLimitError(
                f"nesting deeper than {MAX_NESTING} levels", _tok_span(self.path, tok)
            )
            if links:
                first = next(c[0] for c in chains if c)
                err.notes.append(
                    f"each 'else if' is one level deeper than the 'if' before it ({links} here, "
                    f"the first at {first.line}:{first.column}); a long chain of conditions "
                    "reads better as a lookup in a list"
                )
            raise err

    def _deeper(self, level: _Level, levels: int) -> None:
        level.depth += levels
        if level.outer + level.depth > MAX_EXPR_DEPTH:
            raise ArchLimitError(
                f"expression nested deeper than {MAX_EXPR_DEPTH} levels (each operator, call, "
                "index and bracket is a level): split it with intermediate names",
                self._expression_start(level),
            )

    def _expression_start(self, level: _Level) -> Span:
        """Where the too-deep expression starts: its outermost part that has a level,
        within the innermost braces."""
        levels = self.levels
        first = max(i for i, lv in enumerate(levels) if lv.opener is None or lv.opener.value == "{")
        start = next((lv.start for lv in levels[first:] if lv.depth and lv.start), level.start)
        tok = start or level.opener
        assert tok is not None
        return _tok_span(self.path, tok)


def _is_word(tok: Token) -> bool:
    """A keyword or punctuation, not a name, number or string."""
    return tok.type not in ("NAME", "STRING", "NUMBER")


def _joins_after(tok: Token) -> bool:
    return _is_word(tok) and tok.value in _JOIN_AFTER


def _grammar_cache() -> str | bool:
    """Where Lark keeps the analysed grammar between runs: building the LALR tables takes
    ~100 ms, a third of `archdsl check`'s start-up. A file in the user's cache folder (not
    Lark's default, a pickle in the shared temporary folder that anyone could plant); Lark
    keys it on the grammar, its options and the versions of Lark and Python, and rebuilds it
    when they change. False (no cache) where the folder cannot be made."""
    import os
    import sys

    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.path.join(root, "archdsl")
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
    except OSError:
        return False
    return os.path.join(folder, f"grammar-py{sys.version_info[0]}{sys.version_info[1]}.lark-cache")


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark.open(
        "archdsl.lark",
        rel_to=__file__,
        parser="lalr",
        lexer="basic",
        propagate_positions=True,
        postlex=_Postlex(),
        maybe_placeholders=True,
        cache=_grammar_cache(),
    )


_TOKEN_WORDS = {
    "_NL": "end of line", "$END": "end of file", "NAME": "a name", "NUMBER": "a number",
    "STRING": "a string", "ARROW": "'->'", "REPEAT": "'x'", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','",
    "EQUAL": "'='", "COLON": "':'", "DOT": "'.'", "ELSE": "'else'",
    "COMP_OP": "a comparison", "ADD_OP": "'+' or '-'", "MUL_OP": "an operator",
}


# Tokens that would merely continue an expression or a chain; listed only when nothing
# else could come next, so "conv(4 3)" says "expected ',' or ')'".
_CONTINUATIONS = {
    "ADD_OP", "MUL_OP", "POW", "COMP_OP", "DOT", "LSQB", "IF", "AND", "OR", "ARROW", "REPEAT",
    "FOR", "LPAR", "COLON", "LBRACE",
}


_EXPRESSION_START = {
    "NUMBER", "STRING", "TRUE", "FALSE", "NONE", "IN", "NOT", "ADD_OP", "LSQB", "LPAR", "NAME",
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


def parse(text: str, path: str = "<string>") -> ast.Module:
    """Parse one spec file into an AST :class:`~archdsl.frontend.ast.Module`."""
    if len(text) > MAX_SOURCE_BYTES:
        raise ArchLimitError(
            f"spec file is {len(text)} characters; the limit is {MAX_SOURCE_BYTES}",
            Span(path, 1, 1),
            text,
        )
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        col = text.index("\x00") - (text.rfind("\n", 0, text.index("\x00")) + 1) + 1
        raise ArchSyntaxError("NUL byte in spec file", Span(path, line, col), text)
    parser = _lark()
    parser.options.postlex.path = path  # type: ignore[union-attr]
    try:
        tree = parser.parse(text)
    except ArchLimitError as e:
        e.source = text
        raise
    except UnexpectedInput as e:
        raise _syntax_error(e, text, path) from None
    try:  # the transformer is not recursive: a tree within the limits never overflows
        return _ToAst(path).transform(tree).with_path(path)  # type: ignore[no-any-return]
    except VisitError as e:
        if isinstance(e.orig_exc, ArchError):
            e.orig_exc.source = text
            raise e.orig_exc from None
        raise


_CLOSING = {"(": "')'", "[": "']'", "{": "'}'"}


def _unclosed(open_tokens: list[Token]) -> str:
    tok = open_tokens[-1]
    return f"; the '{tok.value}' at {tok.line}:{tok.column} is never closed with {_CLOSING[tok.value]}"


def _syntax_error(e: UnexpectedInput, text: str, path: str) -> ArchSyntaxError:
    line, col = getattr(e, "line", 0) or 0, getattr(e, "column", 0) or 0
    open_tokens = list(_lark().options.postlex.open)  # type: ignore[union-attr]
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else ""
        rest = text[pos + 1:].split("\n", 1)[0]
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
        if tok.type == "REPEAT" and "NAME" in expected:
            msg = "'x' is reserved for repetition ('item x N') and cannot be a name"
        elif tok.type == "NAME" and "REPEAT" in expected and tok.value != "x":
            msg += " (statements are separated by newlines or ';')"
    else:  # pragma: no cover - other lark errors
        msg = str(e).splitlines()[0]
    end = col + 1
    return ArchSyntaxError(msg, Span(path, max(line, 1), max(col, 1), line, end), text)


def _span(path: str, meta: object) -> Span:
    if getattr(meta, "empty", True):
        return Span(path, 0, 0)
    return Span(path, meta.line, meta.column, meta.end_line, meta.end_column)  # type: ignore[attr-defined]


def _tok_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line or 0, tok.column or 0, tok.end_line, tok.end_column)


class _ModuleResult:
    def __init__(self, defs: tuple[ast.Node, ...], span: Span):
        self.defs, self.span = defs, span

    def with_path(self, path: str) -> ast.Module:
        return ast.Module(self.span, path, self.defs)


@v_args(meta=True)
class _ToAst(Transformer_NonRecursive):
    """Builds AST nodes from the parse tree, and nothing else."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def _s(self, meta: object) -> Span:
        return _span(self.path, meta)

    # ---- top level
    def start(self, meta, children):
        return _ModuleResult(tuple(c for c in children if c is not None), self._s(meta))

    def import_stmt(self, meta, children):
        return ast.Import(self._s(meta), _unquote(children[0]))

    def block_def(self, meta, children):
        name, params, body = children
        return ast.BlockDef(self._s(meta), str(name), tuple(params or ()), body)

    def network_def(self, meta, children):
        name, params, body = children
        return ast.NetworkDef(self._s(meta), str(name), tuple(params or ()), body)

    def network_alias(self, meta, children):
        name, ref = children
        base, args, scales, base_span = ref
        return ast.NetworkAlias(self._s(meta), str(name), base, base_span, args, scales)

    def network_ref(self, meta, children):
        base = children[0]
        scales = tuple(c for c in children if isinstance(c, ast.ScaleClause))
        return (str(base), _args(children), scales, _tok_span(self.path, base))

    def scale_clause(self, meta, children):
        return ast.ScaleClause(self._s(meta), _args(children))

    def params(self, meta, children):
        return tuple(c for c in children if c is not None)

    def param(self, meta, children):
        name, default = children
        return ast.ParamDef(self._s(meta), str(name), default)

    # ---- statements
    def body(self, meta, children):
        return ast.Body(self._s(meta), tuple(c for c in children if c is not None))

    def assign(self, meta, children):
        return ast.Assign(self._s(meta), str(children[0]), children[1])

    def input_stmt(self, meta, children):
        shape, _arrow, chain = children
        return ast.InputStmt(self._s(meta), shape, chain)

    def init_stmt(self, meta, children):
        names = [str(c) for c in children if isinstance(c, Token)]
        *target, tensor, fn = names
        return ast.InitStmt(self._s(meta), tuple(target), tensor, fn, _args(children))

    def chain(self, meta, children):
        items = tuple(c for c in children if isinstance(c, (ast.Item, ast.SideItem)))
        return ast.Chain(self._s(meta), items)

    def item(self, meta, children):
        label, primary, _x, repeat = children
        return ast.Item(self._s(meta), label, primary, repeat)

    def side_item(self, meta, children):
        return ast.SideItem(self._s(meta), children[0], children[1])

    def label_word(self, meta, children):
        return str(children[0])

    def label(self, meta, children):
        parts = tuple(str(c) if isinstance(c, (Token, str)) else c for c in children if c is not None)
        return ast.Label(self._s(meta), parts)

    def op_call(self, meta, children):
        name, *args = children
        return ast.OpCall(self._s(meta), str(name), _args(args), _tok_span(self.path, name))

    def group(self, meta, children):
        chain = children[0] if children[0] is not None else ast.Chain(self._s(meta), ())
        return ast.Group(self._s(meta), chain)

    def merge(self, meta, children):
        kind, *branches = children
        return ast.Merge(self._s(meta), str(kind), tuple(b for b in branches if b is not None))

    def seq(self, meta, children):
        return ast.Seq(self._s(meta), children[0])

    def if_item(self, meta, children):
        cond, then, _else, other = children
        if isinstance(other, ast.If):
            other = ast.Body(other.span, (ast.Chain(other.span, (ast.Item(other.span, None, other, None),)),))
        return ast.If(self._s(meta), cond, then, other)

    def for_item(self, meta, children):
        var, iterable, body = children
        return ast.For(self._s(meta), str(var), iterable, body, _tok_span(self.path, var))

    def arg(self, meta, children):
        name, value = children
        return ast.Arg(str(name) if name is not None else None, value, self._s(meta))

    # ---- expressions
    def ternary(self, meta, children):
        then, cond, _else, other = children
        return ast.Ternary(self._s(meta), cond, then, other)

    def or_op(self, meta, children):
        return ast.BinOp(self._s(meta), "or", children[0], children[1])

    def and_op(self, meta, children):
        return ast.BinOp(self._s(meta), "and", children[0], children[1])

    def not_op(self, meta, children):
        return ast.UnaryOp(self._s(meta), "not", children[0])

    def compare(self, meta, children):
        left, op, right = children
        return ast.BinOp(self._s(meta), str(op), left, right)

    def binop(self, meta, children):
        left, op, right = children
        return ast.BinOp(self._s(meta), str(op), left, right)

    def unop(self, meta, children):
        op, operand = children
        return ast.UnaryOp(self._s(meta), str(op), operand)

    def pow_op(self, meta, children):
        return ast.BinOp(self._s(meta), "**", children[0], children[2])

    def index(self, meta, children):
        return ast.Index(self._s(meta), children[0], children[1])

    def attr(self, meta, children):
        return ast.Attr(self._s(meta), children[0], str(children[1]))

    def call(self, meta, children):
        name, *args = children
        return ast.Call(self._s(meta), str(name), _args(args))

    def number(self, meta, children):
        text = str(children[0])
        if len(text.split(".")[0].split("e")[0].split("E")[0]) > 19:
            raise ArchLimitError(
                f"number {text[:24]}{'...' * (len(text) > 24)} is too large (limit 10^18)", self._s(meta)
            )
        if any(c in text for c in ".eE"):
            value: int | float = float(text)
        else:
            value = int(text)
            if value > 10**18:
                raise ArchLimitError(f"number {text} is too large (limit 10^18)", self._s(meta))
        return ast.Literal(self._s(meta), value)

    def string(self, meta, children):
        return ast.Literal(self._s(meta), _unquote(children[0]))

    def true(self, meta, children):
        return ast.Literal(self._s(meta), True)

    def false(self, meta, children):
        return ast.Literal(self._s(meta), False)

    def none(self, meta, children):
        return ast.Literal(self._s(meta), None)

    def name(self, meta, children):
        return ast.Name(self._s(meta), str(children[0]))

    def in_ref(self, meta, children):
        return ast.InRef(self._s(meta))

    def comprehension(self, meta, children):
        expr, var, iterable = children
        return ast.Comprehension(self._s(meta), expr, str(var), iterable, _tok_span(self.path, var))

    def list(self, meta, children):
        return ast.ListExpr(self._s(meta), tuple(c for c in children if c is not None))


def _args(children: list) -> tuple[ast.Arg, ...]:
    return tuple(c for c in children if isinstance(c, ast.Arg))


def _unquote(tok: Token | str) -> str:
    return str(tok)[1:-1]


__all__ = ["parse", "Tree"]
