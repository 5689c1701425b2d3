"""Python literals and line layout for the ``.py`` output, as ``ruff format`` writes them.

>>> layout_lines(Group("f(", ["a", "b"], ")"), "")
['f(a, b)']
>>> literal({"mode": "avg", "size": (7, 7)})
'{"mode": "avg", "size": (7, 7)}'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

LINE_LENGTH = 100
INDENT = "    "


def literal(value: Any) -> str:
    """A Python literal as ruff would format it (strings in double quotes)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def literal_expr(value: Any) -> str | Group:
    """:func:`literal`, as a :class:`Group` the layout may split when it is a non-empty
    list or dict (a registered op's attributes and input shapes)."""
    if isinstance(value, list) and value:
        return Group("[", [literal(v) for v in value], "]", collection=True)
    if isinstance(value, dict) and value:
        items: list[str | Group] = [f"{literal(k)}: {literal(v)}" for k, v in value.items()]
        return Group("{", items, "}", collection=True)
    return literal(value)


@dataclass
class Group:
    """A bracketed expression the line layout may split: ``open item, item close``.

    A ``collection`` (a list or dict display) that does not fit goes one item per line
    straight away, as ruff does; call arguments first try one indented line."""

    open: str
    items: list[str | Group]
    close: str
    collection: bool = False


def flat(e: str | Group) -> str:
    """The expression on one line."""
    if isinstance(e, str):
        return e
    return e.open + ", ".join(flat(i) for i in e.items) + e.close


def layout_lines(e: str | Group, indent: str, prefix: str = "", suffix: str = "") -> list[str]:
    """Lines for ``prefix + e + suffix``, split as ruff format splits a bracketed
    expression: one line if it fits, else the contents on one indented line, else one item
    per line with a trailing comma."""
    line = indent + prefix + flat(e) + suffix
    if len(line) <= LINE_LENGTH or isinstance(e, str) or not e.items:
        return [line]
    inner = indent + INDENT
    body = ", ".join(flat(i) for i in e.items)
    if len(inner + body) <= LINE_LENGTH and not (e.collection and len(e.items) > 1):
        return [indent + prefix + e.open, inner + body, indent + e.close + suffix]
    lines = [indent + prefix + e.open]
    for item in e.items:
        lines += layout_lines(item, inner, "", ",")
    lines.append(indent + e.close + suffix)
    return lines


def shape_text(shape: Sequence[int]) -> str:
    """``N x 64 x 56 x 56``: a shape comment, batch first (as torchvision's GoogLeNet)."""
    return " x ".join(["N", *(str(d) for d in shape)])
