"""Arguments the ``.py`` output writes as the spec's arithmetic rather than as parameters.

A spec that writes ``conv(out, kernel, padding=(kernel - 1) // 2)`` means the padding to
follow the kernel. Where a class parameter's every slot is a leaf argument the spec wrote
as integer arithmetic over names, each of which the class has as a parameter, and the
expression gives the parameter's value in every instance the class stands for, the
parameter goes and the argument is written as the expression over the class's parameter
names (``padding=(kernel - 1) // 2``), as a person would write it. Only ``+ - * // %``,
unary minus, integer literals and names: Python computes those exactly as the spec does.

>>> from archdsl.frontend import ast
>>> from archdsl.errors import Span
>>> at = Span("<string>", 1, 1)
>>> e = ast.BinOp(at, "//", ast.BinOp(at, "-", ast.Name(at, "k"), ast.Literal(at, 1)),
...               ast.Literal(at, 2))
>>> render(e, {"k": "kernel"}), value(e, {"k": 7})
('(kernel - 1) // 2', 3)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from archdsl.frontend import ast

if TYPE_CHECKING:
    from archdsl.backends.python_analysis import ClassParam

# binding strength of each operator the output may write: a higher one binds tighter
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "//": 2, "%": 2}
_UNARY = 3
_ATOM = 4


@dataclass
class Derived:
    """An argument written as ``expr`` over the class parameters ``names`` maps to."""

    expr: ast.Expr
    names: dict[str, ClassParam]  # the spec's name -> the class parameter it reads

    def text(self) -> str:
        return render(self.expr, {k: p.name for k, p in self.names.items()})


def free_names(expr: ast.Expr) -> list[str] | None:
    """The names ``expr`` reads, in order, or None when it is more than integer arithmetic."""
    if isinstance(expr, ast.Name):
        return [expr.id]
    if isinstance(expr, ast.Literal):
        return [] if type(expr.value) is int else None
    if isinstance(expr, ast.UnaryOp) and expr.op == "-":
        return free_names(expr.operand)
    if isinstance(expr, ast.BinOp) and expr.op in _PRECEDENCE:
        left, right = free_names(expr.left), free_names(expr.right)
        if left is None or right is None:
            return None
        return left + [n for n in right if n not in left]
    return None


def value(expr: ast.Expr, env: Mapping[str, Any]) -> Any:
    """``expr`` (accepted by :func:`free_names`) computed over ``env``, None when it cannot
    be (a name not an integer, a division by zero)."""
    if isinstance(expr, ast.Name):
        v = env.get(expr.id)
        return v if type(v) is int else None
    if isinstance(expr, ast.Literal):
        return expr.value
    if isinstance(expr, ast.UnaryOp):
        v = value(expr.operand, env)
        return None if v is None else -v
    assert isinstance(expr, ast.BinOp)
    a, b = value(expr.left, env), value(expr.right, env)
    if a is None or b is None or (expr.op in ("//", "%") and b == 0):
        return None
    if expr.op == "+":
        return a + b
    if expr.op == "-":
        return a - b
    if expr.op == "*":
        return a * b
    return a // b if expr.op == "//" else a % b


def render(expr: ast.Expr, names: Mapping[str, str]) -> str:
    """``expr`` as Python source, each name as ``names`` gives it, with the parentheses
    Python's precedence needs and no others."""
    return _render(expr, names)[0]


def _render(expr: ast.Expr, names: Mapping[str, str]) -> tuple[str, int]:
    if isinstance(expr, ast.Name):
        return names[expr.id], _ATOM
    if isinstance(expr, ast.Literal):
        return repr(expr.value), _ATOM
    if isinstance(expr, ast.UnaryOp):
        text, inner = _render(expr.operand, names)
        return f"-{text if inner >= _UNARY else f'({text})'}", _UNARY
    assert isinstance(expr, ast.BinOp)
    prec = _PRECEDENCE[expr.op]
    left, lp = _render(expr.left, names)
    right, rp = _render(expr.right, names)
    left = left if lp >= prec else f"({left})"
    right = right if rp > prec else f"({right})"  # a - (b - c); (a + b) is written a + b
    return f"{left} {expr.op} {right}", prec
