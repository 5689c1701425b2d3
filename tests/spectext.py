"""What the frontend tests share (test_frontend.py, test_expressions.py,
test_elaboration.py): an expression's AST, the module paths a spec checks to, and a network
around a few lines."""

from __future__ import annotations

from typing import Any

import archdsl
from archdsl.frontend import ast, parse


def expr(text: str) -> ast.Expr:
    """The AST of one expression."""
    (assign,) = parse(f"v = {text}").defs
    assert isinstance(assign, ast.Assign)
    return assign.value


def paths(src: str, **params: Any) -> list[str]:
    """Module paths of the checked graph, in creation order (merges and input left out)."""
    return [n.path for n in archdsl.check(src, **params).nodes() if n.path is not None]


def net(lines: str, input_shape: str = "[4, 8, 8]") -> str:
    """A network around ``lines`` (its body after the input statement)."""
    return f"network n {{\n  input {input_shape}\n{lines}\n}}\n"
