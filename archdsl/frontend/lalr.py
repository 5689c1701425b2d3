"""Lark's LALR tables, driven by a loop that builds the AST while it parses.

``Lark.parse`` builds a parse tree with positions and a transformer then walks it again:
three quarters of the time of parsing a large spec. Lark's own inline ``transformer=``
option cannot pass positions (``v_args(meta=True)``) to the callbacks, so this module runs
the same parse table with a loop of its own. It shapes each rule's children exactly as
Lark's tree builder does (filtered tokens dropped, ``_rule``s inlined, ``[...]`` as
``None``, ``?rule``s with one child replaced by it) and computes each node's extent exactly
as ``propagate_positions`` does: from the first to the last child that takes up text,
tokens the grammar filters out included, where a ``?rule`` replaced by its child still
extends over its own text (the parentheses of ``(a + b)``) for the rule around it.

Syntax errors are Lark's own: at a token the table does not accept, Lark's parser state is
rebuilt from this loop's stacks and fed the token, so the exception, its expected tokens
and its interactive parser are what ``Lark.parse`` raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput
from lark.lexer import LexerThread
from lark.parsers.lalr_analysis import Shift
from lark.parsers.lalr_interactive_parser import InteractiveParser
from lark.parsers.lalr_parser_state import ParseConf, ParserState

# A node's extent: (line, column, end_line, end_column), or None where it has no text.
Extent = tuple[Any, Any, Any, Any]


def _child_plan(expansion: Sequence[Any], keep_all_tokens: bool, empty: tuple) -> tuple[tuple, int]:
    """Which children of a rule the AST callback gets, as Lark's ``ChildFilterLALR`` does:
    ``(index, inline, nones before)`` per kept child, and the nones after the last."""
    if empty:
        bits = "".join(str(int(b)) for b in empty)
        nones = [len(ones) for ones in bits.split("0")]
    else:
        nones = [0] * (len(expansion) + 1)
    plan = []
    pending = 0
    for i, sym in enumerate(expansion):
        pending += nones[i]
        if keep_all_tokens or not (sym.is_term and sym.filter_out):
            plan.append((i, not sym.is_term and sym.name.startswith("_"), pending))
            pending = 0
    return tuple(plan), pending + nones[len(expansion)]


class Driver:
    """The parse table of one Lark instance, with a plan per rule for building the AST."""

    def __init__(self, lark: Lark, builder_class: type):
        frontend = lark.parser
        self.lark_parser = frontend.parser.parser  # lark's _Parser: tables and tree callbacks
        self.lexer = frontend.lexer.lexer  # the basic lexer, without the postlexer
        self._init_lexer()
        table = self.lark_parser.parse_table
        self.start_state = table.start_states["start"]
        self.end_state = table.end_states["start"]
        plans = {}
        for rule in lark.rules:
            name = rule.alias or rule.options.template_source or rule.origin.name
            include, nones_after = _child_plan(
                rule.expansion, rule.options.keep_all_tokens, rule.options.empty_indices
            )
            # the children as they come, when the plan neither drops, inlines nor adds any
            identity = (
                not nones_after
                and all(
                    i == k and not inline and not nones
                    for k, (i, inline, nones) in enumerate(include)
                )
                and len(include) == len(rule.expansion)
            )
            inline = rule.origin.name.startswith("_")
            func = getattr(builder_class, name, None)
            if func is None and not inline:
                func = _tree(name)
            plans[rule] = (
                len(rule.expansion),
                rule.origin.name,
                None if identity else include,
                nones_after,
                bool(rule.options.expand1 and not rule.alias),
                inline,
                func,
            )
        # state -> symbol -> next state (shift, goto) or a rule's plan (reduce)
        self.table: dict[int, dict[str, Any]] = {
            state: {
                sym: arg if action is Shift else plans[arg] for sym, (action, arg) in row.items()
            }
            for state, row in table.states.items()
        }

    def parse(self, text: str, postlex: Any, builder: Any) -> Any:
        """The start rule's callback result for ``text``; Lark's exceptions as Lark raises
        them, the postlexer's and the callbacks' as they raise them."""
        thread = LexerThread.from_text(self.lexer, text)
        if self.scan is None:
            tokens = postlex.process(thread.lex(None))
        else:
            tokens = postlex.process(self._lex(text))
        table = self.table
        end_state = self.end_state
        states = [self.start_state]
        values: list = []
        extents: list = []
        tok = None
        for tok in _with_end(tokens):
            ttype = tok.type
            while True:
                act = table[states[-1]].get(ttype)
                if act is None:
                    self._fail(tok, states, values, thread)
                if act.__class__ is int:  # shift
                    states.append(act)
                    values.append(tok)
                    extents.append((tok.line, tok.column, tok.end_line, tok.end_column))
                    break
                size, origin, include, nones_after, expand1, inline, func = act
                if size == 1:  # most reductions: the extent stays, the stacks change in place
                    ext = extents[-1]
                    if include is None:
                        if inline:
                            value = [values[-1]]
                        elif expand1:
                            value = values[-1]
                            if value.__class__ is Token:
                                ext = (value.line, value.column, value.end_line, value.end_column)
                            elif value is None:
                                ext = None
                        else:
                            value = func(builder, ext, [values[-1]])
                    else:
                        value, ext = _shape(
                            [values[-1]], ext, include, nones_after, expand1, inline, func, builder
                        )
                    goto = table[states[-2]][origin]
                    states[-1] = goto
                    values[-1] = value
                    extents[-1] = ext
                else:
                    if size:
                        children = values[-size:]
                        del values[-size:]
                        del states[-size:]
                        spans = extents[-size:]
                        del extents[-size:]
                        ext = _extent(spans)
                    else:
                        children = []
                        ext = None
                    if include is not None:  # _shape's filtering, inlined for chains
                        kept: list = []
                        for i, expand, nones in include:
                            if nones:
                                kept += [None] * nones
                            if expand:
                                if kept:
                                    kept += children[i]
                                else:  # left recursion: extend the inlined rule's own list
                                    kept = children[i]
                            else:
                                kept.append(children[i])
                        if nones_after:
                            kept += [None] * nones_after
                        children = kept
                    if inline:
                        value = children
                    else:
                        value, ext = _shape(children, ext, None, 0, expand1, False, func, builder)
                    goto = table[states[-1]][origin]
                    states.append(goto)
                    values.append(value)
                    extents.append(ext)
                if goto == end_state and ttype == "$END":
                    return value

    def _init_lexer(self) -> None:
        """One regular expression for all terminals, in the basic lexer's order, with a last
        alternative that matches any character: where only that one matches, the basic
        lexer finds no token. None (use the basic lexer) where the terminals need more than
        one expression."""
        lexer = self.lexer
        scanner = lexer.scanner  # builds lexer.callback too: keywords matched as NAME
        self.scan: Callable[[str], Iterator[Any]] | None = None
        if len(scanner._mres) != 1 or any(k.startswith("_ERROR") for k in scanner.allowed_types):
            return
        union = scanner._mres[0]
        # Blanks are matched with the token after them, in one step: where the basic
        # lexer's choice at a space, tab or form feed is the ignored [\t \f\r]+, it takes
        # every blank and carriage return that follows, and then lexes what comes next.
        blanks = ""
        if all(
            (m := union.match(ch + "a")) is not None
            and m.lastgroup in lexer.ignore_types
            and lexer.terminals_by_name[m.lastgroup].pattern.to_regexp() == "[\t \x0c\r]+"
            for ch in "\t \x0c"
        ):
            blanks = "(?:[\t \x0c][\t \x0c\r]*)?"
        try:
            self.scan = lexer.re.compile(
                f"{blanks}(?:{union.pattern}|(?P<_ERROR>[\\s\\S]))", lexer.g_regex_flags
            ).finditer
        except (AssertionError, lexer.re.error):  # too many groups for Python's re
            return
        self.retype = {name: cb.scanner.fullmatch for name, cb in lexer.callback.items()}
        self.ignore = lexer.ignore_types
        self.newline = lexer.newline_types
        self.allowed = scanner.allowed_types - lexer.ignore_types or {"<END-OF-FILE>"}

    def _lex(self, text: str) -> Iterator[Token]:
        """The basic lexer's tokens, positions and errors, without its per-token calls."""
        new = getattr(Token, "_future_new", Token)
        retype, ignore, newline = self.retype, self.ignore, self.newline
        keywords: dict[tuple[str, str], str] = {}
        line, line_start = 1, 0
        last = None
        assert self.scan is not None
        for m in self.scan(text):
            kind = m.lastgroup
            value = m.group(kind)
            pos = m.start(kind)
            if kind == "_ERROR":
                raise UnexpectedCharacters(
                    text,
                    pos,
                    line,
                    pos - line_start + 1,
                    allowed=self.allowed,
                    token_history=last and [last],
                    state=None,
                    terminals_by_name=self.lexer.terminals_by_name,
                )
            start_line, column = line, pos - line_start + 1
            if kind in newline:
                breaks = value.count("\n")
                if breaks:
                    line += breaks
                    line_start = pos + value.rindex("\n") + 1
            if kind in ignore:
                continue
            if kind in retype:
                key = (kind, value)
                found = keywords.get(key)
                if found is None:
                    found = keywords[key] = retype[kind](value) or kind
                kind = found
            end = pos + len(value)
            last = new(kind, value, pos, start_line, column, line, end - line_start + 1, end)
            yield last

    def _fail(self, tok: Token, states: list, values: list, thread: LexerThread) -> NoReturn:
        """Raise the exception Lark raises for ``tok`` in this state."""
        conf = ParseConf(self.lark_parser.parse_table, self.lark_parser.callbacks, "start")
        state = ParserState(conf, thread, list(states), list(values))
        try:
            state.feed_token(tok, tok.type == "$END")
        except UnexpectedInput as e:
            e.interactive_parser = InteractiveParser(self.lark_parser, state, thread)
            raise
        raise AssertionError(f"the parse table accepts {tok.type} after all")  # pragma: no cover


def _extent(spans: list) -> Extent | None:
    """From the start of the first child with an extent to the end of the last."""
    first = next((e for e in spans if e is not None), None)
    if first is None:
        return None
    last = next(e for e in reversed(spans) if e is not None)
    return (first[0], first[1], last[2], last[3])


def _shape(
    children: list,
    ext: Extent | None,
    include: tuple | None,
    nones_after: int,
    expand1: bool,
    inline: bool,
    func: Any,
    builder: Any,
) -> tuple[Any, Extent | None]:
    """A rule's value from its children, as Lark's tree builder shapes them, and the extent
    the rule around it sees."""
    if include is not None:
        kept: list = []
        for i, expand, nones in include:
            if nones:
                kept += [None] * nones
            if expand:
                if kept:
                    kept += children[i]
                else:  # left recursion: extend the inlined rule's own list
                    kept = children[i]
            else:
                kept.append(children[i])
        if nones_after:
            kept += [None] * nones_after
        children = kept
    if inline:
        return children, ext
    if expand1 and len(children) == 1:
        value = children[0]
        if isinstance(value, Token):  # no tree: the token's own position counts
            return value, (value.line, value.column, value.end_line, value.end_column)
        return value, None if value is None else ext
    return func(builder, ext, children), ext


def _with_end(tokens: Iterator[Token]) -> Iterator[Token]:
    tok = None
    for tok in tokens:
        yield tok
    yield Token.new_borrow_pos("$END", "", tok) if tok else Token("$END", "", 0, 1, 1)


def _tree(name: str) -> Callable[[Any, Extent | None, list], Tree]:
    """A rule with no AST callback stays a tree, as with a Lark transformer."""
    return lambda builder, ext, children: Tree(name, children)
