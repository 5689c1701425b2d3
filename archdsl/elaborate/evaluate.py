"""The expression evaluator: the only way a spec computes a value. No Python eval/exec.

Values are ``int``, ``float``, ``bool``, ``str``, ``None``, tuples (the language's lists)
and :class:`InShape` (``in``, the shape of the current block's input).

>>> from archdsl.frontend import parse
>>> expr = parse("v = make_divisible(32 * 1.1, 8) + max([1, 2])").defs[0].value
>>> evaluate(expr, Env({}))
34
"""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from archdsl.errors import ArchError, ArchLimitError, ArchNameError, ArchTypeError, Span
from archdsl.frontend import ast
from archdsl.frontend.parser import MAX_NESTING
from archdsl.ops.base import format_value

MAX_INT = 10**18
MAX_LIST = 100_000
MAX_STRING = 10_000
MAX_STEPS = 500_000
"""Evaluation work allowed to load a spec's files, and again to elaborate one network: a
step is an expression evaluated (a builtin call counts two), a statement, a loop or
repetition pass, or a list item a builtin or operator reads or builds; opening a module
costs :data:`MODULE_STEPS`. Steps take 0.2 to 1.4 us each (more where they build layers),
so the budget runs out in under a second; the bundled specs take at most about 19,000."""
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


@dataclass(frozen=True, repr=False)
class InShape:
    """``in``: the per-sample shape of a block's input, e.g. ``in.c``, ``in.h``, ``in.w``."""

    shape: tuple[int, ...]

    def __repr__(self) -> str:  # as the language would show it in a message
        return "in" + str(list(self.shape))

    def attribute(self, name: str, span: Span) -> Any:
        dims = self.shape
        if name == "shape":
            return dims
        if name == "rank":
            return len(dims)
        if name in ("c", "f"):
            return dims[0]
        if name in ("h", "w"):
            if len(dims) != 3:
                raise ArchTypeError(f"in.{name}: the input has shape {list(dims)}, no spatial size", span)
            return dims[1] if name == "h" else dims[2]
        raise ArchNameError(
            f"'in' has no attribute '{name}'{_did_you_mean(name, ['c', 'h', 'w', 'shape', 'rank'])}",
            span,
        )


@dataclass(frozen=True)
class Scaling:
    """Compound-scaling multipliers of the network being elaborated (EfficientNet).

    ``scale_channels(c)`` and ``scale_depth(n)`` read them; ``network b = a scaled(...)``
    sets them.
    """

    width: float = 1.0
    depth: float = 1.0
    resolution: float = 1.0


class Env:
    """A chain of name frames: block or network locals over a file's top-level names.

    ``in_shape`` (``in``), ``scaling`` and ``budget`` (the steps left) are inherited by
    child frames.
    """

    in_shape: InShape | None
    scaling: Scaling
    budget: Budget

    def __init__(self, names: Mapping[str, Any], parent: Env | None = None,
                 in_shape: InShape | None = None, scaling: Scaling | None = None,
                 budget: Budget | None = None):
        self.names = dict(names)
        self.parent = parent
        if parent is not None:  # inherit what is not given
            in_shape = parent.in_shape if in_shape is None else in_shape
            scaling = parent.scaling if scaling is None else scaling
            budget = parent.budget if budget is None else budget
        self.in_shape = in_shape
        self.scaling = scaling if scaling is not None else Scaling()
        self.budget = budget if budget is not None else Budget()

    def child(self, names: Mapping[str, Any] | None = None, in_shape: InShape | None = None,
              scaling: Scaling | None = None, budget: Budget | None = None) -> Env:
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


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    return _did_you_mean(name, candidates)


def type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "none"
    if isinstance(v, tuple):
        return "list"
    if isinstance(v, InShape):
        return "shape"
    return type(v).__name__


def show(v: Any) -> str:
    """A value as the language writes it, long strings and lists abbreviated."""
    return format_value(v)


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
        return float(_finite(f"{what}: ", value, span))
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


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_num(v: Any, span: Span) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and abs(v) > MAX_INT:
        raise ArchLimitError(f"number {show(v)} is too large (limit {MAX_INT:.0e})", span)
    if isinstance(v, float) and not math.isfinite(v):
        _finite("", v, span)
    return v


_FLOAT_LIMIT = f"(a float is at most {sys.float_info.max:.3e})"


def _finite(what: str, v: Any, span: Span) -> Any:
    """``v``, unless it is an infinite float (too large: a limit) or nan (not a number).
    Neither is a value of the language: every way to make one is refused where it happens,
    so a builtin converting to an integer never meets an OverflowError."""
    if isinstance(v, float) and not math.isfinite(v):
        if math.isnan(v):
            raise ArchTypeError(f"{what}nan is not a number", span)
        raise ArchLimitError(f"{what}number {show(v)} is too large {_FLOAT_LIMIT}", span)
    return v


def _num_arg(name: str, v: Any, span: Span) -> int | float:
    if not _is_num(v):
        raise ArchTypeError(f"{name}() needs a number, got {type_name(v)} {show(v)}", span)
    return v  # type: ignore[no-any-return]


def _to_int(name: str, v: Any, convert: Callable[[Any], int], span: Span) -> int:
    """``convert(v)`` (``int``, ``round``, ``math.ceil``, ``math.floor``) for builtin
    ``name``: a number, finite, and an integer within the limit."""
    v = _finite(f"{name}(): ", _num_arg(name, v, span), span)
    return _check_num(convert(v), span)  # type: ignore[no-any-return]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to a multiple of ``divisor``, never below 90% of ``v`` (MobileNet/EfficientNet)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def _bi_minmax(fn: Callable[..., Any], name: str) -> Callable[[list[Any], Span], Any]:
    def impl(args: list[Any], span: Span) -> Any:
        items = list(args[0]) if len(args) == 1 and isinstance(args[0], tuple) else args
        if not items:
            raise ArchTypeError(f"{name}() of nothing", span)
        for v in items:
            _num_arg(name, v, span)
        return fn(items)

    return impl


def _bi_round(args: list[Any], span: Span) -> Any:
    if len(args) not in (1, 2):
        raise ArchTypeError(f"round() takes 1 or 2 arguments, got {len(args)}", span)
    v = _num_arg("round", args[0], span)
    if len(args) == 2:
        nd = args[1]
        if not isinstance(nd, int) or isinstance(nd, bool) or not 0 <= nd <= 15:
            raise ArchTypeError("round(): digits must be an integer 0..15", span)
        return round(float(_finite("round(): ", v, span)), nd)
    return _to_int("round", v, round, span)


def _bi_range(args: list[Any], span: Span) -> Any:
    if not 1 <= len(args) <= 3 or not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise ArchTypeError("range() takes 1 to 3 integers", span)
    if len(args) == 3 and args[2] == 0:
        raise ArchTypeError("range() step must not be zero", span)
    r = range(*args)
    try:
        count = str(len(r))
    except OverflowError:  # more items than a machine word counts
        count = f"more than {sys.maxsize}"
    if count.startswith("more") or int(count) > MAX_LIST:
        raise ArchLimitError(f"range() of {count} items; the limit is {MAX_LIST}", span)
    return tuple(r)


def _bi_make_divisible(args: list[Any], span: Span) -> Any:
    if not 1 <= len(args) <= 3:
        raise ArchTypeError("make_divisible(value, divisor=8, min_value=none) takes 1 to 3 arguments", span)
    v = _finite("make_divisible(): ", _num_arg("make_divisible", args[0], span), span)
    divisor = args[1] if len(args) > 1 else 8
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1:
        raise ArchTypeError("make_divisible(): divisor must be a positive integer", span)
    min_value = args[2] if len(args) > 2 else None
    if min_value is not None and not _is_num(min_value):
        raise ArchTypeError("make_divisible(): min_value must be a number or none", span)
    _finite("make_divisible(): ", min_value, span)
    return _check_num(make_divisible(v, divisor, min_value), span)


def _one(name: str, fn: Callable[[Any, Span], Any]) -> Callable[[list[Any], Span], Any]:
    def impl(args: list[Any], span: Span) -> Any:
        if len(args) != 1:
            raise ArchTypeError(f"{name}() takes exactly one argument, got {len(args)}", span)
        return fn(args[0], span)

    return impl


def _bi_int(v: Any, span: Span) -> int:
    if isinstance(v, bool):
        return int(v)
    return _to_int("int", v, int, span)


def _bi_len(v: Any, span: Span) -> int:
    if not isinstance(v, (tuple, str)):
        raise ArchTypeError(f"len() needs a list, got {type_name(v)}", span)
    return len(v)


def _bi_sum(v: Any, span: Span) -> Any:
    if not isinstance(v, tuple):
        raise ArchTypeError(f"sum() needs a list, got {type_name(v)}", span)
    for x in v:
        _num_arg("sum", x, span)
    return _check_num(sum(v), span)


def _bi_cumsum(v: Any, span: Span) -> Any:
    if not isinstance(v, tuple):
        raise ArchTypeError(f"cumsum() needs a list, got {type_name(v)}", span)
    out, total = [], 0
    for x in v:
        total = _check_num(total + _num_arg("cumsum", x, span), span)
        out.append(total)
    return tuple(out)


def _scale_channels(args: list[Any], scaling: Scaling, span: Span) -> int:
    if not 1 <= len(args) <= 2:
        raise ArchTypeError("scale_channels(channels, divisor=8) takes 1 or 2 arguments", span)
    c = _num_arg("scale_channels", args[0], span)
    divisor = args[1] if len(args) > 1 else 8
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1:
        raise ArchTypeError("scale_channels(): divisor must be a positive integer", span)
    scaled = _scaled("scale_channels", c, "width", scaling.width, span)
    return _check_num(make_divisible(scaled, divisor), span)  # type: ignore[no-any-return]


def _scale_depth(args: list[Any], scaling: Scaling, span: Span) -> int:
    if len(args) != 1:
        raise ArchTypeError("scale_depth(repeats) takes one argument", span)
    n = _num_arg("scale_depth", args[0], span)
    scaled = _scaled("scale_depth", n, "depth", scaling.depth, span)
    return _to_int("scale_depth", scaled, math.ceil, span)


def _scaled(name: str, v: float, what: str, multiplier: float, span: Span) -> float:
    """``v * multiplier``, which overflows only when ``v`` is near the largest float."""
    scaled = v * multiplier
    if not math.isfinite(scaled):
        raise ArchLimitError(
            f"{name}(): {show(v)} times the {what} multiplier {show(multiplier)} is too large", span
        )
    return scaled


SCALING_PARAMS = {"scale_channels": ("channels", "divisor"), "scale_depth": ("repeats",)}


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


# Builtins that read the network's compound-scaling multipliers.
SCALING_BUILTINS: dict[str, Callable[[list[Any], Scaling, Span], Any]] = {
    "scale_channels": _scale_channels,
    "scale_depth": _scale_depth,
}

BUILTINS: dict[str, Callable[[list[Any], Span], Any]] = {
    "cumsum": _one("cumsum", _bi_cumsum),
    "min": _bi_minmax(min, "min"),
    "max": _bi_minmax(max, "max"),
    "int": _one("int", _bi_int),
    "float": _one("float", lambda v, s: float(_num_arg("float", v, s))),
    "round": _bi_round,
    "ceil": _one("ceil", lambda v, s: _to_int("ceil", v, math.ceil, s)),
    "floor": _one("floor", lambda v, s: _to_int("floor", v, math.floor, s)),
    "abs": _one("abs", lambda v, s: abs(_num_arg("abs", v, s))),
    "sqrt": _one("sqrt", lambda v, s: _sqrt(_num_arg("sqrt", v, s), s)),
    "len": _one("len", _bi_len),
    "sum": _one("sum", _bi_sum),
    "range": _bi_range,
    "make_divisible": _bi_make_divisible,
}
READS_LISTS = frozenset({"cumsum", "min", "max", "sum"})  # the builtins that read every item


def _sqrt(v: float, span: Span) -> float:
    if v < 0:
        raise ArchTypeError(f"sqrt() of a negative number {v}", span)
    return math.sqrt(v)


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
            raise ArchLimitError(f"float literal is too large {_FLOAT_LIMIT}", expr.span)
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
            raise ArchLimitError(f"{show(left)} {expr.op} {show(right)} is too large", expr.span) from None
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
        result = _check_num(fn(args, expr.span), expr.span)
        if result.__class__ is tuple:  # ... and builds
            budget.spend(len(result), expr.span)
        return result
    if isinstance(expr, ast.InRef):
        if env.in_shape is None:
            raise ArchNameError("'in' is only defined inside a block or network body", expr.span)
        return env.in_shape
    if isinstance(expr, ast.ListExpr):
        return tuple(evaluate(e, env) for e in expr.items)
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
            raise ArchTypeError(f"'for' needs a list, got {type_name(values)} {show(values)}", expr.iterable.span)
        inner = env.child()  # one frame for every pass: an expression cannot assign
        out = []
        try:
            budget.spend(len(values), expr.span)
            for v in values:
                inner.names[expr.var] = v
                out.append(evaluate(expr.expr, inner))
        except ArchLimitError as e:
            budget.blame(e, expr.span)
            raise
        return tuple(out)
    if isinstance(expr, ast.UnaryOp):
        v = evaluate(expr.operand, env)
        if expr.op == "not":
            return not _bool(v, "not", expr.operand.span)
        if not _is_num(v):
            raise ArchTypeError(f"unary '{expr.op}' needs a number, got {type_name(v)}", expr.span)
        return -v if expr.op == "-" else v
    if isinstance(expr, ast.Ternary):
        cond = _bool(evaluate(expr.cond, env), "if", expr.cond.span)
        return evaluate(expr.then if cond else expr.other, env)
    raise ArchTypeError(f"cannot evaluate {type(expr).__name__}", expr.span)  # pragma: no cover


def _bool(v: Any, what: str, span: Span) -> bool:
    if not isinstance(v, bool):
        raise ArchTypeError(f"'{what}' needs true or false, got {type_name(v)} {show(v)}", span)
    return v


def _index(base: Any, idx: Any, expr: ast.Index) -> Any:
    if isinstance(base, InShape):
        base = base.shape
    if not isinstance(base, (tuple, str)):
        raise ArchTypeError(f"cannot index a {type_name(base)}", expr.base.span)
    if not isinstance(idx, int) or isinstance(idx, bool):
        raise ArchTypeError(f"list index must be an integer, got {type_name(idx)}", expr.index.span)
    if not -len(base) <= idx < len(base):
        raise ArchTypeError(
            f"index {idx} out of range for a list of {len(base)} items {show(base)}", expr.index.span
        )
    return base[idx]


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
    if _is_num(a) and _is_num(b):
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
        if (_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str)):
            return _COMPARE[op](a, b)
        raise ArchTypeError(f"cannot compare {type_name(a)} {op} {type_name(b)}", span)
    if op == "+" and isinstance(a, tuple) and isinstance(b, tuple):
        if len(a) + len(b) > MAX_LIST:
            raise ArchLimitError(f"list of {len(a) + len(b)} items; the limit is {MAX_LIST}", span)
        budget.spend(len(a) + len(b), span)
        return a + b
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        if len(a) + len(b) > MAX_STRING:
            raise ArchLimitError(f"string of {len(a) + len(b):,} characters; the limit is {MAX_STRING:,}", span)
        return a + b
    if not (_is_num(a) and _is_num(b)):
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
    return _check_num(r, span)
