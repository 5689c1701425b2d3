"""AST dataclasses. Every node carries the span of the text it came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from archdsl.errors import Span

# ---- expressions -----------------------------------------------------------------


@dataclass(frozen=True)
class Expr:
    span: Span


@dataclass(frozen=True)
class Literal(Expr):
    value: Any  # int, float, str, bool or None


@dataclass(frozen=True)
class Name(Expr):
    id: str


@dataclass(frozen=True)
class InRef(Expr):
    """``in``: the shape of the current block's input."""


@dataclass(frozen=True)
class ListExpr(Expr):
    items: tuple[Expr, ...]


@dataclass(frozen=True)
class Comprehension(Expr):
    """``[expr for var in iterable]``, or ``[expr for var in iterable if cond]``: the items
    for which ``cond`` holds."""

    expr: Expr
    var: str
    iterable: Expr
    cond: Expr | None = None
    var_span: Span | None = None  # the loop variable's name


@dataclass(frozen=True)
class Index(Expr):
    base: Expr
    index: Expr


@dataclass(frozen=True)
class Slice(Expr):
    """``base[start:stop]``, either bound left out."""

    base: Expr
    start: Expr | None
    stop: Expr | None


@dataclass(frozen=True)
class Attr(Expr):
    base: Expr
    name: str


@dataclass(frozen=True)
class Arg:
    name: str | None
    value: Expr
    span: Span


@dataclass(frozen=True)
class Call(Expr):
    func: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class BinOp(Expr):
    op: str  # + - * / // % ** == != < <= > >= and or
    left: Expr
    right: Expr


@dataclass(frozen=True)
class UnaryOp(Expr):
    op: str  # - + not
    operand: Expr


@dataclass(frozen=True)
class Ternary(Expr):
    cond: Expr
    then: Expr
    other: Expr


# ---- chains and items -------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    span: Span


@dataclass(frozen=True)
class OpCall(Node):
    """``name`` or ``name(args)``: an op or a block instance."""

    name: str
    args: tuple[Arg, ...]
    name_span: Span


@dataclass(frozen=True)
class Chain(Node):
    items: tuple[Item | SideItem, ...]


@dataclass(frozen=True)
class Group(Node):
    chain: Chain


@dataclass(frozen=True)
class Ref(Node):
    """``@backbone.layer3``: the output of a module computed earlier, named by its path from
    the network or block instance it is in; labels, and the numbers of unlabelled members.
    No parts: ``@in``, the input of the block instance (or network). A part may be an
    expression, ``@features.{k + 1}``: a number (or a label) computed."""

    parts: tuple[Label | str | Expr, ...]


@dataclass(frozen=True)
class RefArg(Expr):
    """A reference written as an argument, ``resize(@backbone.4)``: the size of that value,
    taken only by a parameter of kind ``size_of``; anywhere else an error."""

    ref: Ref


@dataclass(frozen=True)
class Merge(Node):
    kind: str  # add, concat, mul
    branches: tuple[Chain, ...]
    cond: Expr | None = None  # `add if cond { ... }`: false leaves out the () branches


@dataclass(frozen=True)
class Body(Node):
    stmts: tuple[Node, ...]


@dataclass(frozen=True)
class Seq(Node):
    body: Body


@dataclass(frozen=True)
class If(Node):
    cond: Expr
    then: Body
    other: Body | None


@dataclass(frozen=True)
class For(Node):
    var: str
    iterable: Expr
    body: Body
    var_span: Span | None = None  # the loop variable's name


@dataclass(frozen=True)
class Label(Node):
    """``name`` or a template like ``denselayer{i + 1}``: text and expressions in order."""

    parts: tuple[str | Expr, ...]


@dataclass(frozen=True)
class Item(Node):
    label: Label | None
    primary: Node
    repeat: Expr | None


@dataclass(frozen=True)
class SideItem(Node):
    """``side aux1: head(...)``: a training-only side output; the chain goes on unchanged."""

    label: Label
    primary: Node


# ---- statements -------------------------------------------------------------------


@dataclass(frozen=True)
class Assign(Node):
    name: str
    value: Expr


@dataclass(frozen=True)
class InputStmt(Node):
    """``input [C, H, W]``, optionally followed by ``-> chain``."""

    shape: Expr
    chain: Chain | None = None


@dataclass(frozen=True)
class InitStmt(Node):
    """``init conv.weight = kaiming_normal(mode="fan_out")`` (every module of an op) or
    ``init AuxLogits.fc.weight = normal(0, 0.001)`` (modules whose path ends so)."""

    target: tuple[str, ...]
    tensor: str
    fn: str
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class AssertStmt(Node):
    """``assert in.c % groups == 0, "groups must divide the channels"``: an error with the
    message (at the condition) when the condition is false."""

    cond: Expr
    message: str | None


@dataclass(frozen=True)
class OutputField(Node):
    """``logits = out`` in an ``outputs`` statement: the field ``logits`` holds the output
    ``out`` (the main output, a side output by its label, or a value of the network by its
    label); ``aux1`` alone is ``aux1 = aux1``; ``p2 = @fpn.p2`` a value by its path, then
    ``source`` is ``"@fpn.p2"`` (as written) and ``ref`` the reference."""

    name: str
    source: str
    source_span: Span
    ref: Ref | None = None


@dataclass(frozen=True)
class OutputsStmt(Node):
    """``outputs(logits = out, aux_logits2 = aux2, aux_logits1 = aux1)``: the fields of
    what a network with side outputs returns in training mode, in order; or
    ``outputs(p2 = @fpn.p2, ..., pool = out)``, values a network returns in both modes."""

    fields: tuple[OutputField, ...]


# ---- definitions ------------------------------------------------------------------


@dataclass(frozen=True)
class ParamDef(Node):
    name: str
    default: Expr | None


@dataclass(frozen=True)
class BlockDef(Node):
    name: str
    params: tuple[ParamDef, ...]
    body: Body


@dataclass(frozen=True)
class NetworkDef(Node):
    name: str
    params: tuple[ParamDef, ...]
    body: Body


@dataclass(frozen=True)
class ScaleClause(Node):
    args: tuple[Arg, ...]


@dataclass(frozen=True)
class NetworkAlias(Node):
    """``network b = a(args) scaled(...)``."""

    name: str
    base: str
    base_span: Span
    args: tuple[Arg, ...]
    scales: tuple[ScaleClause, ...]


@dataclass(frozen=True)
class Import(Node):
    path: str


@dataclass(frozen=True)
class Module(Node):
    """One spec file."""

    path: str
    defs: tuple[Node, ...]


# ---- walking ----------------------------------------------------------------------


def children(node: object) -> Iterator[Node | Expr | Arg]:
    """The AST nodes directly inside ``node``, in source order (tuples flattened)."""
    for value in vars(node).values():
        items = value if isinstance(value, tuple) else (value,)
        for item in items:
            if isinstance(item, (Node, Expr, Arg)):
                yield item


def walk(node: object) -> Iterator[object]:
    """``node`` and everything inside it, depth first in source order, iteratively (specs
    may nest deeply)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(list(children(current))))
