"""A label's text: its parts joined, interpolations computed, and the name checked."""

from __future__ import annotations

import re

from archdsl.elaborate.evaluate import Env, evaluate
from archdsl.elaborate.values import show, type_name
from archdsl.errors import ArchNameError, ArchTypeError
from archdsl.frontend import ast
from archdsl.ir.reserved import RESERVED_LABELS

# a label: a name, or names and digits joined by "-" (torchvision's RegNet: block1-0)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*")


def label_text(label: ast.Label, env: Env) -> str:
    """The text of ``label`` in ``env``: its parts, interpolations computed, checked to be a
    name a torch module can take."""
    text = []
    for part in label.parts:
        if isinstance(part, str):
            text.append(part)
            continue
        value = evaluate(part, env)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ArchTypeError(
                f"a label can interpolate integers and strings, not {type_name(value)} {show(value)}",
                part.span,
            )
        text.append(str(value))
    name = "".join(text)
    if not _IDENTIFIER.fullmatch(name):
        raise ArchTypeError(
            f"label '{name}' is not a valid name (letters, digits, _, and '-' between them)",
            label.span,
        )
    if name in RESERVED_LABELS or name.startswith("_"):
        raise ArchNameError(
            f"label '{name}' is reserved: it is a Python keyword, an attribute every torch "
            f"module has, or starts with '_'; choose another name",
            label.span,
        )
    return name
