"""The builtin functions of the expression language (``min``, ``range``, ``make_divisible``,
``scale_channels``, ...) and the numeric checks they share with the evaluator: integers
within :data:`~archdsl.elaborate.values.MAX_INT`, floats finite.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Any

from archdsl.elaborate.values import MAX_INT, MAX_LIST, Scaling, show, type_name
from archdsl.errors import ArchLimitError, ArchTypeError, Span


def is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_num(v: Any, span: Span) -> Any:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and abs(v) > MAX_INT:
        raise ArchLimitError(f"number {show(v)} is too large (limit {MAX_INT:.0e})", span)
    if isinstance(v, float) and not math.isfinite(v):
        finite("", v, span)
    return v


FLOAT_LIMIT = f"(a float is at most {sys.float_info.max:.3e})"


def finite(what: str, v: Any, span: Span) -> Any:
    """``v``, unless it is an infinite float (too large: a limit) or nan (not a number).
    Neither is a value of the language: every way to make one is refused where it happens,
    so a builtin converting to an integer never meets an OverflowError."""
    if isinstance(v, float) and not math.isfinite(v):
        if math.isnan(v):
            raise ArchTypeError(f"{what}nan is not a number", span)
        raise ArchLimitError(f"{what}number {show(v)} is too large {FLOAT_LIMIT}", span)
    return v


def _num_arg(name: str, v: Any, span: Span) -> int | float:
    if not is_num(v):
        raise ArchTypeError(f"{name}() needs a number, got {type_name(v)} {show(v)}", span)
    return v  # type: ignore[no-any-return]


def _to_int(name: str, v: Any, convert: Callable[[Any], int], span: Span) -> int:
    """``convert(v)`` (``int``, ``round``, ``math.ceil``, ``math.floor``) for builtin
    ``name``: a number, finite, and an integer within the limit."""
    v = finite(f"{name}(): ", _num_arg(name, v, span), span)
    return check_num(convert(v), span)  # type: ignore[no-any-return]


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
        return round(float(finite("round(): ", v, span)), nd)
    return _to_int("round", v, round, span)


def _bi_log(args: list[Any], span: Span) -> float:
    """``log(x)``, the natural logarithm, or ``log(x, base)``, as Python's ``math.log``
    (RegNet's quantised widths)."""
    if len(args) not in (1, 2):
        raise ArchTypeError(f"log() takes 1 or 2 arguments, got {len(args)}", span)
    x = _num_arg("log", args[0], span)
    if x <= 0:
        raise ArchTypeError(f"log() of {show(x)}: it needs a positive number", span)
    if len(args) == 1:
        return math.log(x)
    base = _num_arg("log", args[1], span)
    if base <= 0 or base == 1:
        raise ArchTypeError(f"log(): base {show(base)} must be positive and not 1", span)
    return math.log(x, base)


def _bi_range(args: list[Any], span: Span) -> Any:
    if not 1 <= len(args) <= 3 or not all(
        isinstance(a, int) and not isinstance(a, bool) for a in args
    ):
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
        raise ArchTypeError(
            "make_divisible(value, divisor=8, min_value=none) takes 1 to 3 arguments", span
        )
    v = finite("make_divisible(): ", _num_arg("make_divisible", args[0], span), span)
    divisor = args[1] if len(args) > 1 else 8
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor < 1:
        raise ArchTypeError("make_divisible(): divisor must be a positive integer", span)
    min_value = args[2] if len(args) > 2 else None
    if min_value is not None and not is_num(min_value):
        raise ArchTypeError("make_divisible(): min_value must be a number or none", span)
    finite("make_divisible(): ", min_value, span)
    return check_num(make_divisible(v, divisor, min_value), span)


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
    return check_num(sum(v), span)


def _bi_cumsum(v: Any, span: Span) -> Any:
    if not isinstance(v, tuple):
        raise ArchTypeError(f"cumsum() needs a list, got {type_name(v)}", span)
    out, total = [], 0
    for x in v:
        total = check_num(total + _num_arg("cumsum", x, span), span)
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
    return check_num(make_divisible(scaled, divisor), span)  # type: ignore[no-any-return]


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
    "log": _bi_log,
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
