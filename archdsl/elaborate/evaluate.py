"""The expression evaluator: the only way a spec computes a value. No Python eval/exec.

Values are ``int``, ``float``, ``bool``, ``str``, ``None``, tuples (the language's lists)
and :class:`InShape` (``in``, the shape of the current block's input).

>>> from archdsl.frontend import parse
>>> expr = parse("v = make_divisible(32 * 1.1, 8) + max([1, 2])").defs[0].value
>>> evaluate(expr, Env({}))
34
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

from archdsl.elaborate.builtins import (
    BUILTINS,
    FLOAT_LIMIT,
    READS_LISTS,
    SCALING_BUILTINS,
    SCALING_PARAMS,
    check_num,
    finite,
    is_num,
)
from archdsl.elaborate.values import (
    MAX_INT,
    MAX_LIST,
    MAX_STRING,
    InShape,
    Scaling,
    did_you_mean,
    show,
    type_name,
)
from archdsl.errors import ArchError, ArchLimitError, ArchNameError, ArchTypeError, Span
from archdsl.frontend import ast
from archdsl.frontend.parser import MAX_NESTING, ref_text

MAX_STEPS = 500_000
"""Evaluation work allowed to load a spec's files, and again to elaborate one network: a
step is an expression evaluated (a builtin call counts two), a statement, a loop or
repetition pass, or a list item a builtin or operator reads or builds; opening a module
costs :data:`MODULE_STEPS`. Steps take 0.2 to 1.4 us each, about 2 where they build layers
(a dense block of 10,000 layers runs out after 1.0 s), so the budget runs out in about a
second; the bundled specs take at most about 26,000 (efficientnet_v2_l)."""
MODULE_STEPS = 16
"""Steps of a seq or labelled group, and twice as many of a block call: each takes about
as much time as that many expressions."""


class Budget:
    """The evaluation steps left (:data:`MAX_STEPS`), shared by the evaluator and the
    elaborator as :class:`Env` passes it down. Bounds the time of loops, repetitions and
    comprehensions that create no node, as the node limit bounds those that do; spending
    a step is an integer decrement."""

    __slots__ = ("left", "error", "blamed")

    def __init__(self, steps: int | None = None) -> None:
        self.left = MAX_STEPS if steps is None else steps
        self.error: ArchLimitError | None = None
        self.blamed = False

    def spend(self, steps: int, span: Span) -> None:
        self.left -= steps
        if self.left < 0:
            raise self.exhausted(span)

    def exhausted(self, span: Span) -> ArchLimitError:
        self.error = ArchLimitError(
            f"evaluation takes more than {MAX_STEPS:,} steps (the limit on loops, repetitions "
            f"and calls, even those that create no layer)",
            span,
        )
        return self.error

    def blame(self, e: ArchError, span: Span) -> None:
        """Point the exhausted budget's error at ``span``, if it is the first loop,
        repetition or comprehension the error leaves: the innermost one running."""
        if e is self.error and not self.blamed:
            e.span = span
            self.blamed = True


class Env:
    """A chain of name frames: block or network locals over a file's top-level names.

    ``in_shape`` (``in``), ``scaling`` and ``budget`` (the steps left) are inherited by
    child frames.
    """

    in_shape: InShape | None
    scaling: Scaling
    budget: Budget

    def __init__(
        self,
        names: Mapping[str, Any],
        parent: Env | None = None,
        in_shape: InShape | None = None,
        scaling: Scaling | None = None,
        budget: Budget | None = None,
    ):
        self.names = dict(names)
        self.parent = parent
        if parent is not None:  # inherit what is not given
            in_shape = parent.in_shape if in_shape is None else in_shape
            scaling = parent.scaling if scaling is None else scaling
            budget = parent.budget if budget is None else budget
        self.in_shape = in_shape
        self.scaling = scaling if scaling is not None else Scaling()
        self.budget = budget if budget is not None else Budget()

    def child(
        self,
        names: Mapping[str, Any] | None = None,
        in_shape: InShape | None = None,
        scaling: Scaling | None = None,
        budget: Budget | None = None,
    ) -> Env:
        return Env(names or {}, self, in_shape, scaling, budget)

    def lookup(self, name: str) -> Any:
        env: Env | None = self
        while env is not None:
            if name in env.names:
                return env.names[name]
            env = env.parent
        raise KeyError(name)

    def visible(self) -> list[str]:
        out: set[str] = set()
        env: Env | None = self
        while env is not None:
            out.update(env.names)
            env = env.parent
        return sorted(out)

    def set(self, name: str, value: Any) -> None:
        self.names[name] = value


def from_python(value: Any, what: str, span: Span, depth: int = 0) -> Any:
    """A value given from Python or the command line (``check(text, dropout=0.3)``) as a
    language value, lists as tuples, held to the limits of what a spec can write: integers
    within 10^18, finite floats, strings and lists within their lengths, lists nested at
    most as deep as brackets. Errors begin with ``what`` and point at ``span``."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise ArchLimitError(
                f"{what}: number {show(value)} is too large (limit {MAX_INT:.0e})", span
            )
        return int(value)  # an int subclass (an IntEnum) as a plain int
    if isinstance(value, float):
        return float(finite(f"{what}: ", value, span))
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            raise ArchLimitError(
                f"{what}: string of {len(value):,} characters; the limit is {MAX_STRING:,}", span
            )
        return str(value)
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST:
            raise ArchLimitError(
                f"{what}: list of {len(value):,} items; the limit is {MAX_LIST:,}", span
            )
        if depth >= MAX_NESTING:
            raise ArchLimitError(f"{what}: lists nested deeper than {MAX_NESTING} levels", span)
        return tuple(from_python(v, what, span, depth + 1) for v in value)
    raise ArchTypeError(f"{what}: cannot use a Python {type(value).__name__} as a value", span)


def _positional(expr: ast.Call, names: tuple[str, ...], env: Env) -> list[Any]:
    """Arguments of a builtin call in parameter order, keywords placed by name."""
    values: dict[str, Any] = {}
    for i, a in enumerate(expr.args):
        name = a.name if a.name is not None else (names[i] if i < len(names) else None)
        if name is None or name not in names:
            what = f"no parameter '{a.name}'" if a.name else f"at most {len(names)} arguments"
            raise ArchTypeError(f"{expr.func}() takes {what}", a.span)
        if name in values:
            raise ArchTypeError(f"{expr.func}(): '{name}' given twice", a.span)
        values[name] = evaluate(a.value, env)
    out = []
    for name in names:
        if name not in values:
            break
        out.append(values[name])
    if len(out) != len(values):
        raise ArchTypeError(f"{expr.func}(): missing '{names[len(out)]}'", expr.span)
    return out


def evaluate(expr: ast.Expr, env: Env) -> Any:
    """Evaluate an expression in ``env``; errors point at the offending sub-expression.
    Each expression evaluated spends a step of ``env.budget``."""
    budget = env.budget
    budget.left -= 1
    if budget.left < 0:
        raise budget.exhausted(expr.span)
    # The commonest kinds first: each isinstance test costs time on the hot path.
    if isinstance(expr, ast.Literal):
        value = expr.value
        if value.__class__ is float and not math.isfinite(value):  # 1e999 overflows to inf
            raise ArchLimitError(f"float literal is too large {FLOAT_LIMIT}", expr.span)
        return value
    if isinstance(expr, ast.Name):
        try:
            return env.lookup(expr.id)
        except KeyError:
            hint = did_you_mean(expr.id, [*env.visible(), *BUILTINS, *SCALING_BUILTINS])
            raise ArchNameError(f"unknown name '{expr.id}'{hint}", expr.span) from None
    if isinstance(expr, ast.BinOp):
        if expr.op in ("and", "or"):
            left = _bool(evaluate(expr.left, env), expr.op, expr.left.span)
            if (expr.op == "and") != left:
                return left
            return _bool(evaluate(expr.right, env), expr.op, expr.right.span)
        left, right = evaluate(expr.left, env), evaluate(expr.right, env)
        try:
            return _binop(expr.op, left, right, expr, budget)
        except OverflowError:
            raise ArchLimitError(
                f"{show(left)} {expr.op} {show(right)} is too large", expr.span
            ) from None
    if isinstance(expr, ast.Call):
        budget.left -= 1  # a call counts two steps (it takes about twice an operator's time)
        if expr.func in SCALING_BUILTINS:
            args = _positional(expr, SCALING_PARAMS[expr.func], env)
            return SCALING_BUILTINS[expr.func](args, env.scaling, expr.span)
        fn = BUILTINS.get(expr.func)
        if fn is None:
            raise ArchNameError(
                f"unknown function '{expr.func}'{did_you_mean(expr.func, [*BUILTINS, *SCALING_BUILTINS])}",
                expr.span,
            )
        for a in expr.args:
            if a.name is not None:
                raise ArchTypeError(f"{expr.func}() takes no keyword arguments", a.span)
        args = [evaluate(a.value, env) for a in expr.args]
        if expr.func in READS_LISTS:  # a builtin's work is the items it reads ...
            for arg in args:
                if arg.__class__ is tuple:
                    budget.spend(len(arg), expr.span)
        result = check_num(fn(args, expr.span), expr.span)
        if result.__class__ is tuple:  # ... and builds
            budget.spend(len(result), expr.span)
        return result
    if isinstance(expr, ast.InRef):
        if env.in_shape is None:
            raise ArchNameError("'in' is only defined inside a block or network body", expr.span)
        return env.in_shape
    if isinstance(expr, ast.ListExpr):
        return tuple(evaluate(e, env) for e in expr.items)
    if isinstance(expr, ast.Slice):
        bounds = [None if e is None else evaluate(e, env) for e in (expr.start, expr.stop)]
        return _slice(evaluate(expr.base, env), bounds, expr)
    if isinstance(expr, ast.Index):
        return _index(evaluate(expr.base, env), evaluate(expr.index, env), expr)
    if isinstance(expr, ast.Attr):
        base = evaluate(expr.base, env)
        if isinstance(base, InShape):
            return base.attribute(expr.name, expr.span)
        kind = type_name(base)
        article = "an" if kind[0] in "aeiou" else "a"
        raise ArchTypeError(f"{article} {kind} has no attribute '{expr.name}'", expr.span)
    if isinstance(expr, ast.Comprehension):
        values = evaluate(expr.iterable, env)
        if not isinstance(values, tuple):
            raise ArchTypeError(
                f"'for' needs a list, got {type_name(values)} {show(values)}", expr.iterable.span
            )
        inner = env.child()  # one frame for every pass: an expression cannot assign
        out = []
        try:
            budget.spend(len(values), expr.span)
            for v in values:
                inner.names[expr.var] = v
                if expr.cond is None or _bool(evaluate(expr.cond, inner), "if", expr.cond.span):
                    out.append(evaluate(expr.expr, inner))
        except ArchLimitError as e:
            budget.blame(e, expr.span)
            raise
        return tuple(out)
    if isinstance(expr, ast.UnaryOp):
        v = evaluate(expr.operand, env)
        if expr.op == "not":
            return not _bool(v, "not", expr.operand.span)
        if not is_num(v):
            raise ArchTypeError(f"unary '{expr.op}' needs a number, got {type_name(v)}", expr.span)
        return -v if expr.op == "-" else v
    if isinstance(expr, ast.Ternary):
        cond = _bool(evaluate(expr.cond, env), "if", expr.cond.span)
        return evaluate(expr.then if cond else expr.other, env)
    if isinstance(expr, ast.RefArg):  # an argument written @path: a value of the network
        raise ArchTypeError(
            f"'{ref_text(expr.ref)}' is a value the network computes, not a number: a reference "
            "is an argument only where it gives a size (resize(@label), resize(@in))",
            expr.span,
        )
    raise ArchTypeError(f"cannot evaluate {type(expr).__name__}", expr.span)  # pragma: no cover


def _bool(v: Any, what: str, span: Span) -> bool:
    if not isinstance(v, bool):
        raise ArchTypeError(f"'{what}' needs true or false, got {type_name(v)} {show(v)}", span)
    return v


def _sequence(base: Any, verb: str, done: str, span: Span) -> tuple[Any, ...] | str:
    """``base`` as something to index or slice: a list, a string, or ``in``'s shape."""
    if isinstance(base, InShape):
        return base.shape
    if not isinstance(base, (tuple, str)):
        raise ArchTypeError(
            f"cannot {verb} {type_name(base)} {show(base)}; only a list can be {done}", span
        )
    return base


def _index(base: Any, idx: Any, expr: ast.Index) -> Any:
    base = _sequence(base, "index", "indexed", expr.base.span)
    if not isinstance(idx, int) or isinstance(idx, bool):
        raise ArchTypeError(f"list index must be an integer, got {type_name(idx)}", expr.index.span)
    if not -len(base) <= idx < len(base):
        raise ArchTypeError(
            f"index {idx} out of range for a list of {len(base)} items {show(base)}",
            expr.index.span,
        )
    return base[idx]


def _slice(base: Any, bounds: list[Any], expr: ast.Slice) -> Any:
    """``base[start:stop]`` as Python slices a list: bounds may be negative or past the end."""
    base = _sequence(base, "slice", "sliced", expr.base.span)
    for bound, e in zip(bounds, (expr.start, expr.stop)):
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            assert e is not None
            raise ArchTypeError(
                f"a slice's bounds must be integers, got {type_name(bound)} {show(bound)}",
                e.span,
            )
    return base[bounds[0] : bounds[1]]


_COMPARE = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _equal(a: Any, b: Any, budget: Budget, span: Span, depth: int = 0) -> bool:
    """The language's ``==``: numbers by value (``1 == 1.0``), lists item by item (a step
    per item), anything else only to a value of its own type (``1 != true``)."""
    if is_num(a) and is_num(b):
        return a == b  # type: ignore[no-any-return]
    if a.__class__ is not b.__class__:
        return False
    if a.__class__ is tuple:
        if a is b:  # values are immutable (and never nan)
            return True
        if len(a) != len(b):
            return False
        if depth >= MAX_NESTING:  # assignments can nest lists deeper than brackets
            raise ArchLimitError(f"comparing lists nested deeper than {MAX_NESTING} levels", span)
        budget.spend(len(a), span)
        for x, y in zip(a, b):
            if x.__class__ is y.__class__ and x.__class__ is not tuple:
                if x != y:  # the common case, inline
                    return False
            elif not _equal(x, y, budget, span, depth + 1):
                return False
        return True
    return a == b  # type: ignore[no-any-return]


def _binop(op: str, a: Any, b: Any, expr: ast.BinOp, budget: Budget) -> Any:
    span = expr.span
    if op in ("==", "!="):
        return _equal(a, b, budget, span) == (op == "==")
    if op in _COMPARE:
        if (is_num(a) and is_num(b)) or (isinstance(a, str) and isinstance(b, str)):
            return _COMPARE[op](a, b)
        raise ArchTypeError(f"cannot compare {type_name(a)} {op} {type_name(b)}", span)
    if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
        if len(a) + len(b) > MAX_LIST:
            raise ArchLimitError(f"list of {len(a) + len(b)} items; the limit is {MAX_LIST}", span)
        budget.spend(len(a) + len(b), span)
        return a + b
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STRING:
            raise ArchLimitError(
                f"string of {len(a) + len(b):,} characters; the limit is {MAX_STRING:,}", span
            )
        return a + b
    if not (is_num(a) and is_num(b)):
        raise ArchTypeError(
            f"cannot apply '{op}' to {type_name(a)} {show(a)} and {type_name(b)} {show(b)}", span
        )
    if op in ("/", "//", "%") and b == 0:
        raise ArchTypeError(f"division by zero in {show(a)} {op} {show(b)}", span)
    if op == "+":
        r = a + b
    elif op == "-":
        r = a - b
    elif op == "*":
        r = a * b
    elif op == "/":
        r = a / b
    elif op == "//":
        r = a // b
    elif op == "%":
        r = a % b
    elif op == "**":
        # An integer power is exact, so it is refused before it grows huge; a float power
        # raises OverflowError instead (too large), or underflows to 0.0 (0.5 ** 2000).
        if isinstance(a, int) and abs(a) > 1 and isinstance(b, int) and b > 64:
            raise ArchLimitError(f"{show(a)} ** {show(b)} is too large", span)
        if a == 0 and b < 0:
            raise ArchTypeError("zero to a negative power", span)
        r = a**b
        if isinstance(r, complex):
            raise ArchTypeError(f"{show(a)} ** {show(b)} is not a real number", span)
    else:  # pragma: no cover
        raise ArchTypeError(f"unknown operator {op}", span)
    if r.__class__ is float and not math.isfinite(r):  # 1e300 * 1e300 overflows to inf
        raise ArchLimitError(f"{show(a)} {op} {show(b)} is too large", span)
    return check_num(r, span)


def check_assert(stmt: ast.AssertStmt, env: Env) -> None:
    """``assert cond, "message"``: nothing when ``cond`` is true, else an error at it."""
    value = evaluate(stmt.cond, env)
    if not isinstance(value, bool):
        raise ArchTypeError(
            f"assert needs a condition (true or false), got {show(value)}", stmt.cond.span
        )
    if not value:
        e = ArchTypeError(
            f"assertion failed: {stmt.message}" if stmt.message else "assertion failed",
            stmt.cond.span,
        )
        seen: dict[str, str] = {}  # the values the condition read, for the reader
        for node in ast.walk(stmt.cond):
            if isinstance(node, ast.InRef):
                seen.setdefault("in", show(evaluate(node, env)).removeprefix("in"))
            elif isinstance(node, ast.Name) and node.id not in seen:
                with contextlib.suppress(ArchError):  # a comprehension's variable, unbound here
                    seen[node.id] = show(evaluate(node, env))
        if seen:
            e.notes.append("where " + ", ".join(f"{k} = {v}" for k, v in seen.items()))
        raise e
