"""Text -> AST. Lark's exceptions become ArchSyntaxError here (worded by syntax_errors.py)
and nowhere else."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedInput

from archdsl.errors import ArchError, ArchLimitError, ArchSyntaxError, Span
from archdsl.frontend import ast
from archdsl.frontend.lalr import Driver, Extent
from archdsl.frontend.syntax_errors import syntax_error

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
}  # fmt: skip
_JOIN_BEFORE = {"->", "}", ")", "]", "else", ","}
# Tokens that add a level to the expression they are in, and tokens that end one.
_EXPR_OPERATORS = {
    "+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", "<=", ">", ">=", ".",
    "and", "or", "not", "if",
}  # fmt: skip
_EXPR_SEPARATORS = {",", "=", ":", "->", "x"}


_PATH_NUMBER = re.compile(r"\.\d+")
"""A numbered part of an ``init`` rule's module path, as the lexer reads it (``.1``)."""


def _label_text(label: ast.Label) -> str:
    """A label as written, its interpolations shown as ``{...}``."""
    return "".join(p if isinstance(p, str) else "{...}" for p in label.parts)


def ref_text(ref: ast.Ref) -> str:
    """A reference as written: ``@backbone.layer3``, ``@in``."""
    if not ref.parts:
        return "@in"
    return "@" + ".".join(
        p if isinstance(p, str) else _label_text(p) if isinstance(p, ast.Label) else "{...}"
        for p in ref.parts
    )


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
            if (
                prev is not None
                and prev.value == "}"
                and value != "else"
                and (
                    prev.type not in _VALUE_TYPES  # _is_word(prev), inlined: once per token
                )
            ):
                chains[-1] = []  # the if-else chain at this level ended
            level = levels[-1]
            if level.start is None:
                level.start = tok
            if tok.type in _VALUE_TYPES:  # not _is_word(tok), inlined: once per token
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
            elif (
                value == "if"
                and prev is not None
                and prev.value == "else"
                and (before_prev is not None and before_prev.value == "}")
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


_VALUE_TYPES = frozenset(("NAME", "STRING", "NUMBER"))


def _is_word(tok: Token) -> bool:
    """A keyword or punctuation, not a name, number or string."""
    return tok.type not in _VALUE_TYPES


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
def _driver() -> Driver:
    _check_field_order()
    return Driver(_lark(), _ToAst)


def _check_field_order() -> None:
    """The classes :class:`_ToAst` fills without their ``__init__`` must still have the
    fields it sets, in that order (``ast.children`` walks them in it), and no
    ``__post_init__``."""
    from dataclasses import fields

    for cls, names in (
        (Span, ["path", "line", "column", "end_line", "end_column"]),
        (ast.OpCall, ["span", "name", "args", "name_span"]),
        (ast.Item, ["span", "label", "primary", "repeat"]),
    ):
        assert [f.name for f in fields(cls)] == names and not hasattr(cls, "__post_init__"), cls


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
    postlex = parser.options.postlex
    postlex.path = path  # type: ignore[union-attr]
    builder = _ToAst(path)
    try:
        result = _driver().parse(text, postlex, builder)
    except ArchLimitError as e:
        e.source = text
        raise
    except UnexpectedInput as e:
        open_tokens = list(postlex.open)  # type: ignore[union-attr]
        raise syntax_error(e, text, path, open_tokens) from None
    if builder.error is not None:  # a number too large, found while the text parsed
        builder.error.source = text
        raise builder.error
    return result.with_path(path)


def _tok_span(path: str, tok: Token) -> Span:
    return Span(path, tok.line or 0, tok.column or 0, tok.end_line, tok.end_column)


def _new_span(
    path: str, line: int, column: int, end_line: int | None, end_column: int | None
) -> Span:
    """``Span(...)`` without the frozen dataclass's five ``object.__setattr__`` calls: a
    large spec makes hundreds of thousands. (Fields set in order, as ``__init__`` would.)"""
    span = _object_new(Span)
    fields = span.__dict__
    fields["path"] = path
    fields["line"] = line
    fields["column"] = column
    fields["end_line"] = end_line
    fields["end_column"] = end_column
    return span


_object_new = object.__new__


class _ModuleResult:
    def __init__(self, defs: tuple[ast.Node, ...], span: Span):
        self.defs, self.span = defs, span

    def with_path(self, path: str) -> ast.Module:
        return ast.Module(self.span, path, self.defs)


class _ToAst:
    """Builds AST nodes from each rule's children and extent as the parser reduces it
    (see :mod:`archdsl.frontend.lalr`), and nothing else."""

    def __init__(self, path: str):
        self.path = path
        self.error: ArchError | None = None  # the first, raised once the whole text parsed
        self._last: Extent | None = None
        self._last_span = Span(path, 0, 0)

    def _s(self, ext: Extent | None) -> Span:
        """The span of an extent; nested rules over the same text share one Span."""
        if ext is None:
            return Span(self.path, 0, 0)
        if ext is not self._last and ext != self._last:
            self._last = ext
            self._last_span = _new_span(self.path, *ext)
        return self._last_span

    def _t(self, tok: Token) -> Span:
        return self._s((tok.line or 0, tok.column or 0, tok.end_line, tok.end_column))

    def _defer(self, err: ArchError) -> None:
        """Keep the first error a callback finds; a syntax error anywhere comes first, as
        when the whole tree was built before any node."""
        if self.error is None:
            self.error = err

    # ---- top level
    def start(self, ext, children):
        return _ModuleResult(tuple(c for c in children if c is not None), self._s(ext))

    def import_stmt(self, ext, children):
        return ast.Import(self._s(ext), _unquote(children[0]))

    def block_def(self, ext, children):
        name, params, body = children
        return ast.BlockDef(self._s(ext), str(name), tuple(params or ()), body)

    def network_def(self, ext, children):
        name, params, body = children
        return ast.NetworkDef(self._s(ext), str(name), tuple(params or ()), body)

    def network_alias(self, ext, children):
        name, ref = children
        base, args, scales, base_span = ref
        return ast.NetworkAlias(self._s(ext), str(name), base, base_span, args, scales)

    def network_ref(self, ext, children):
        base = children[0]
        scales = tuple(c for c in children if isinstance(c, ast.ScaleClause))
        return (str(base), _args(children), scales, self._t(base))

    def scale_clause(self, ext, children):
        return ast.ScaleClause(self._s(ext), _args(children))

    def params(self, ext, children):
        return tuple(c for c in children if c is not None)

    def param(self, ext, children):
        name, default = children
        return ast.ParamDef(self._s(ext), str(name), default)

    # ---- statements
    def body(self, ext, children):
        return ast.Body(self._s(ext), tuple(c for c in children if c is not None))

    def assign(self, ext, children):
        return ast.Assign(self._s(ext), str(children[0]), children[1])

    def input_stmt(self, ext, children):
        shape, _arrow, chain = children
        return ast.InputStmt(self._s(ext), shape, chain)

    def init_stmt(self, ext, children):
        tokens = [c for c in children if isinstance(c, Token)]
        *target, tensor, fn = tokens
        for t in (*target, tensor):
            if t.type == "NUMBER" and (t is tensor or not _PATH_NUMBER.fullmatch(t)):
                self._defer(
                    ArchSyntaxError(
                        f"init: '{t}' is not a part of a module path, which is names and "
                        "numbers (classifier.1.weight) ending in the tensor, weight or bias",
                        self._t(t),
                    )
                )
        parts = tuple(str(t).lstrip(".") for t in target)
        return ast.InitStmt(self._s(ext), parts, str(tensor), str(fn), _args(children))

    def assert_stmt(self, ext, children):
        cond, message = children
        return ast.AssertStmt(self._s(ext), cond, None if message is None else _unquote(message))

    def outputs_stmt(self, ext, children):
        return ast.OutputsStmt(self._s(ext), tuple(c for c in children if c is not None))

    def output_field(self, ext, children):
        name, source = children
        source = name if source is None else source
        if isinstance(source, ast.Ref):
            text = ref_text(source)
            return ast.OutputField(self._s(ext), str(name), text, source.span, source)
        return ast.OutputField(self._s(ext), str(name), str(source), self._t(source))

    def chain(self, ext, children):
        items = tuple(c for c in children if isinstance(c, (ast.Item, ast.SideItem)))
        return ast.Chain(self._s(ext), items)

    def item(self, ext, children):
        label, primary, _x, repeat = children
        node = _object_new(ast.Item)  # ast.Item(...) without its __init__: one per layer
        fields = node.__dict__  # set in the order of the fields, as __init__ would
        fields["span"] = self._s(ext)
        fields["label"] = label
        fields["primary"] = primary
        fields["repeat"] = repeat
        return node

    def side_item(self, ext, children):
        return ast.SideItem(self._s(ext), children[0], children[1])

    def label_word(self, ext, children):
        return str(children[0])

    def label(self, ext, children):
        for c in children:  # "+" and "1.5" parse where "-" and "0" join parts: refused
            if isinstance(c, Token) and c.type == "ADD_OP" and c.value != "-":
                raise ArchSyntaxError("a label joins its parts with '-' only", self._t(c))
            if isinstance(c, Token) and c.type == "NUMBER" and not c.value.isdigit():
                raise ArchSyntaxError(
                    f"a label's part after '-' is a name or digits, not {c.value}", self._t(c)
                )
        parts = tuple(
            str(c) if isinstance(c, (Token, str)) else c for c in children if c is not None
        )
        return ast.Label(self._s(ext), parts)

    def op_call(self, ext, children):
        name = children[0]
        node = _object_new(ast.OpCall)  # ast.OpCall(...) without its __init__: one per layer
        fields = node.__dict__  # set in the order of the fields, as __init__ would
        fields["span"] = self._s(ext)
        fields["name"] = str(name)
        fields["args"] = _args(children[1:]) if len(children) > 1 else ()
        fields["name_span"] = self._t(name)
        return node

    def group(self, ext, children):
        chain = children[0] if children[0] is not None else ast.Chain(self._s(ext), ())
        return ast.Group(self._s(ext), chain)

    def ref(self, ext, children):
        parts = []  # labels, and numbers as strings
        for c in children:
            if isinstance(c, Token):  # a numbered part, ".4", which the lexer reads as a number
                if not _PATH_NUMBER.fullmatch(c):
                    raise ArchSyntaxError(
                        f"'{c}' is not a part of a module path, which is labels and numbers "
                        "(@backbone.layer3, @features.4)",
                        self._t(c),
                    )
                parts.append(str(c).lstrip("."))
            else:
                parts.append(c)
        return ast.Ref(self._s(ext), tuple(parts))

    def input_ref(self, ext, children):
        return ast.Ref(self._s(ext), ())

    def merge(self, ext, children):
        kind, cond, *branches = children
        branches = tuple(b for b in branches if b is not None)
        return ast.Merge(self._s(ext), str(kind), branches, cond)

    def seq(self, ext, children):
        return ast.Seq(self._s(ext), children[0])

    def if_item(self, ext, children):
        cond, then, _else, other = children
        if isinstance(other, ast.If):
            other = ast.Body(
                other.span, (ast.Chain(other.span, (ast.Item(other.span, None, other, None),)),)
            )
        return ast.If(self._s(ext), cond, then, other)

    def for_item(self, ext, children):
        var, iterable, body = children
        return ast.For(self._s(ext), str(var), iterable, body, self._t(var))

    def arg(self, ext, children):
        name, value = children
        if isinstance(value, ast.Ref):
            value = ast.RefArg(value.span, value)
        return ast.Arg(str(name) if name is not None else None, value, self._s(ext))

    # ---- expressions
    def ternary(self, ext, children):
        then, cond, _else, other = children
        return ast.Ternary(self._s(ext), cond, then, other)

    def or_op(self, ext, children):
        return ast.BinOp(self._s(ext), "or", children[0], children[1])

    def and_op(self, ext, children):
        return ast.BinOp(self._s(ext), "and", children[0], children[1])

    def not_op(self, ext, children):
        return ast.UnaryOp(self._s(ext), "not", children[0])

    def compare(self, ext, children):
        left, op, right = children
        return ast.BinOp(self._s(ext), str(op), left, right)

    def binop(self, ext, children):
        left, op, right = children
        return ast.BinOp(self._s(ext), str(op), left, right)

    def unop(self, ext, children):
        op, operand = children
        return ast.UnaryOp(self._s(ext), str(op), operand)

    def pow_op(self, ext, children):
        return ast.BinOp(self._s(ext), "**", children[0], children[2])

    def index(self, ext, children):
        return ast.Index(self._s(ext), children[0], children[1])

    def slice(self, ext, children):
        return ast.Slice(self._s(ext), children[0], children[1], children[2])

    def attr(self, ext, children):
        return ast.Attr(self._s(ext), children[0], str(children[1]))

    def call(self, ext, children):
        name, *args = children
        return ast.Call(self._s(ext), str(name), _args(args))

    def number(self, ext, children):
        text = str(children[0])
        if len(text.split(".")[0].split("e")[0].split("E")[0]) > 19:
            self._defer(
                ArchLimitError(
                    f"number {text[:24]}{'...' * (len(text) > 24)} is too large (limit 10^18)",
                    self._s(ext),
                )
            )
            return ast.Literal(self._s(ext), 0)
        if any(c in text for c in ".eE"):
            value: int | float = float(text)
        else:
            value = int(text)
            if value > 10**18:
                self._defer(
                    ArchLimitError(f"number {text} is too large (limit 10^18)", self._s(ext))
                )
        return ast.Literal(self._s(ext), value)

    def string(self, ext, children):
        return ast.Literal(self._s(ext), _unquote(children[0]))

    def true(self, ext, children):
        return ast.Literal(self._s(ext), True)

    def false(self, ext, children):
        return ast.Literal(self._s(ext), False)

    def none(self, ext, children):
        return ast.Literal(self._s(ext), None)

    def name(self, ext, children):
        return ast.Name(self._s(ext), str(children[0]))

    def in_ref(self, ext, children):
        return ast.InRef(self._s(ext))

    def comprehension(self, ext, children):
        expr, var, iterable, cond = children
        return ast.Comprehension(self._s(ext), expr, str(var), iterable, cond, self._t(var))

    def list(self, ext, children):
        return ast.ListExpr(self._s(ext), tuple(c for c in children if c is not None))


def _args(children: list) -> tuple[ast.Arg, ...]:
    return tuple(c for c in children if isinstance(c, ast.Arg))


def _unquote(tok: Token | str) -> str:
    return str(tok)[1:-1]


__all__ = ["parse", "Tree"]
