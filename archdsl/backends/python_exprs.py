"""Arguments the ``.py`` output writes as the spec's arithmetic rather than as parameters.

A spec that writes ``conv(out, kernel, padding=(kernel - 1) // 2)`` means the padding to
follow the kernel, and ``conv(c // 4, 1)`` a width that follows ``c``. A class parameter
goes, and its slots are written as such an expression over the class's parameter names
(``padding=(kernel - 1) // 2``, ``nn.Conv2d(in_channels, in_channels // 4, 1)``), when
one of its slots is a leaf argument the spec wrote as integer arithmetic (``+ - * // %``,
unary minus, integer literals, names and ``in.c``: Python computes those exactly as the spec
does) and the expression gives the parameter's value in every instance the class stands
for; a slot the spec computes otherwise keeps the parameter.
Each name stands for the class parameter with its values in every instance, or becomes a
parameter named as the spec names it (SENet's ``planes``). A channel count that is the
class's input width plus the same number in every instance is written as that sum
(``in_channels + 32``). ``docs/design.md`` says why.

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

from archdsl.backends.python_plan import ClassParam, ClassPlan, Member
from archdsl.errors import Span
from archdsl.frontend import ast
from archdsl.ir import Graph, OpNode

if TYPE_CHECKING:
    from archdsl.backends.python_analysis import Analysis

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
    """The names ``expr`` reads, in order, or None when it is more than integer arithmetic.
    ``in.c`` (the block's input width) reads the name ``in.c``."""
    if isinstance(expr, ast.Name):
        return [expr.id]
    if isinstance(expr, ast.Attr):
        return [_in_name(expr)] if _in_field(expr) else None
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
    if isinstance(expr, ast.Name | ast.Attr):
        v = env.get(_in_name(expr) if isinstance(expr, ast.Attr) else expr.id)
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
    if isinstance(expr, ast.Attr):
        return names[_in_name(expr)], _ATOM
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


def _in_field(expr: ast.Expr, fields: tuple[str, ...] = ("c", "f", "h", "w")) -> bool:
    """Whether ``expr`` is ``in.c``, ``in.f``, ``in.h`` or ``in.w`` (one of ``fields``)."""
    return isinstance(expr, ast.Attr) and isinstance(expr.base, ast.InRef) and expr.name in fields


def input_width(expr: ast.Expr | None) -> bool:
    """Whether ``expr`` is the block's input width, ``in.c`` (``in.f``)."""
    return expr is not None and _in_field(expr, ("c", "f"))


def _in_name(expr: ast.Attr) -> str:
    return f"in.{expr.name}"


# ---- which parameters are arithmetic ----------------------------------------------


def derive(
    analysis: Analysis,
    cls: ClassPlan,
    in_c: tuple[Any, ...],
    out_c: tuple[Any, ...],
    words: dict[str, tuple[Any, ...]],
) -> None:
    """Drop a parameter that one of its slots computes in the spec as arithmetic over
    names, when that arithmetic gives the parameter's value in every instance; its slots
    are written as the arithmetic. A name stands for the class parameter with its value
    in every instance, or, failing one, becomes a parameter named as the spec names it
    (SENet's ``planes`` for ``planes * 2``). The class's own input and output widths
    stay parameters, and so does a parameter the arithmetic reads."""
    fills: dict[int, list[tuple[str, str]]] = {}
    for key, param in cls.slots.items():
        fills.setdefault(id(param), []).append(key)
    read: set[int] = set()  # parameters a derived argument reads
    for p in list(cls.params):
        if id(p) in read or not all(type(v) is int for v in p.values):
            continue
        if p.kind == "channels" and p.values in (in_c, out_c):
            continue
        for key in fills[id(p)]:
            derived = _derivation(analysis, cls, key, p, words)
            if derived is not None:
                break
        else:
            continue
        # not a slot the spec computes otherwise: a stride whose values happen to be
        # those of a padding (k // 2) stays a parameter
        same = [k for k in fills[id(p)] if k == key or _alike(analysis, cls, k, p, words, derived)]
        at = cls.params.index(p)
        if len(same) == len(fills[id(p)]):
            cls.params.remove(p)
        else:
            at += 1
        for q in derived.names.values():
            read.add(id(q))
            if q not in cls.params:  # a name of the spec's, new to the class
                cls.params.insert(at, q)
                at += 1
        for key in same:
            cls.derived[key] = derived
            del cls.slots[key]


def offsets(cls: ClassPlan, in_c: tuple[Any, ...], out_c: tuple[Any, ...]) -> None:
    """A channel count that is the class's input width plus the same number in every
    instance is written so: the layers of a dense block read ``in_channels + 32``,
    ``in_channels + 64`` ... (concatenations widen by what they add), not a parameter
    each."""
    source = next((q for q in cls.params if q.kind == "channels" and q.values == in_c), None)
    if source is None:
        return
    read = {id(q) for d in cls.derived.values() for q in d.names.values()}
    for p in list(cls.params):
        if p.kind != "channels" or p.word or p.values in (in_c, out_c) or id(p) in read:
            continue
        if not all(type(v) is int for v in p.values):
            continue
        gaps = {v - w for v, w in zip(p.values, in_c)}
        if len(gaps) != 1:
            continue
        offset = gaps.pop()
        expr = ast.BinOp(
            _NOWHERE,
            "+" if offset > 0 else "-",
            ast.Name(_NOWHERE, "in"),
            ast.Literal(_NOWHERE, abs(offset)),
        )
        derived = Derived(expr, {"in": source})
        for key, param in list(cls.slots.items()):
            if param is p:
                cls.derived[key] = derived
                del cls.slots[key]
        cls.params.remove(p)


def _derivation(
    analysis: Analysis,
    cls: ClassPlan,
    key: tuple[str, str],
    p: ClassParam,
    words: dict[str, tuple[Any, ...]],
) -> Derived | None:
    """The spec's arithmetic for slot ``key``, if it gives ``p``'s values, with the
    parameter each name it reads stands for."""
    nodes = [_leaf_at(analysis.members, analysis.members[path], key[0]) for path in cls.instances]
    expr = spec_expr(nodes[0], key[1]) if nodes[0] is not None else None
    names = free_names(expr) if expr is not None else None
    if expr is None or not names or isinstance(expr, ast.Name) or None in nodes:
        return None  # a bare name already names the parameter
    envs = [_names_at(analysis.graph, n.scope) for n in nodes if n is not None]
    taken = {q.name for q in cls.params}
    mapping: dict[str, ClassParam] = {}
    for name in names:
        if not all(name in env for env in envs):
            return None
        values = tuple(env[name] for env in envs)
        if not all(type(v) is int for v in values):
            return None
        found = [q for q in cls.params if q is not p and q.values == values]
        found.sort(key=lambda q: q.name != name)  # the parameter of the same name first
        if found:
            mapping[name] = found[0]
            continue
        spelt = [w for w, v in words.items() if v == values and w not in taken]
        spelt.sort(key=lambda w: w != name)
        if not spelt:
            return None
        # widths go by position; a block parameter with a default (SE's ratio `r = 4`) by
        # name, with that default
        width = p.kind == "channels" and spelt[0] not in _defaults_of(analysis, cls)
        kind = "channels" if width else spelt[0]
        mapping[name] = ClassParam(spelt[0], kind, values, key, word=True)
        taken.add(spelt[0])
    for i, v in enumerate(p.values):
        if value(expr, {n: q.values[i] for n, q in mapping.items()}) != v:
            return None
    return Derived(expr, mapping)


def _alike(
    analysis: Analysis,
    cls: ClassPlan,
    key: tuple[str, str],
    p: ClassParam,
    words: dict[str, tuple[Any, ...]],
    derived: Derived,
) -> bool:
    """Whether slot ``key`` is written in the spec as ``derived`` is, over the same
    parameters, or takes its value without an expression of its own (a batch norm's width
    from its input, a child class's parameter)."""
    node = _leaf_at(analysis.members, analysis.members[cls.instances[0]], key[0])
    if node is None or spec_expr(node, key[1]) is None:
        return True
    other = _derivation(analysis, cls, key, p, words)
    if other is None or other.text() != derived.text():
        return False
    return all(
        (q.name, q.values) == (derived.names[n].name, derived.names[n].values)
        for n, q in other.names.items()
    )


def spec_expr(node: OpNode, arg: str) -> ast.Expr | None:
    """The spec's expression for the constructor argument ``arg`` of the module made from
    ``node``, None where the spec wrote a literal or nothing."""
    return node.exprs.get(_OP_ATTRS.get(arg, arg))


def _defaults_of(analysis: Analysis, cls: ClassPlan) -> Mapping[str, Any]:
    """The literal defaults of the block ``cls`` is made from (none for other scopes)."""
    scope = analysis.graph.scopes.get(cls.instances[0])
    return scope.defaults if scope is not None and scope.kind == "block" else {}


def _names_at(graph: Graph, path: str) -> Mapping[str, Any]:
    """The values of the block whose body holds namespace ``path``, with its input's
    ``in.c`` (``in.f``), ``in.h`` and ``in.w``."""
    while path:
        scope = graph.scopes.get(path)
        if scope is not None and scope.kind == "block":
            shape = graph.node(scope.input).shape
            fields = dict(zip(("in.c", "in.h", "in.w"), shape))
            return {**scope.values, **fields, "in.f": shape[0]}
        path = path.rsplit(".", 1)[0] if "." in path else ""
    return {}


_NOWHERE = Span("<archdsl>", 0, 0)
# a constructor argument -> the op attribute it is made from, where the names differ
_OP_ATTRS = {"out_channels": "out", "out_features": "out", "kernel_size": "kernel"}


def _leaf_at(members: dict[str, list[Member]], top: list[Member], where: str) -> OpNode | None:
    """The node of the leaf at attribute path ``where`` (through inline sequentials)."""
    first, _, rest = where.partition(".")
    for m in top:
        if m.attr == first and not m.shared:
            if not rest:
                return m.node if m.leaf is not None else None
            if m.scope is not None:
                return _leaf_at(members, members[m.scope.path], rest)
    return None
