"""Attribute validation: every bound argument checked against its Param's kind.

The elaborator binds positional and keyword arguments, fills in defaults, then calls
:func:`normalize_attrs`. Normalized values are what shape rules, stats and backends see:
pairs are ``(int, int)`` tuples, floats are ``float``, ``"same"``/``"valid"`` padding stays
a string, and ``none`` (Python ``None``) survives only for ``nullable`` params.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from archdsl.ops.base import REQUIRED, OpDef, Param, SizeOf, ValueProblem, format_value


class _Bad(Exception):
    """Internal: a value does not fit its kind; the caller builds the message."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_at_least(low: int | None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if value.__class__ is not int:  # the evaluator's integers are plain ints
            if not _is_int(value):
                raise _Bad
            value = int(value)
        if low is not None and value < low:
            raise _Bad
        return value

    return check


def _float_at_least(low: float | None, high: float | None = None) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        if not (_is_int(value) or isinstance(value, float)):
            raise _Bad
        number = float(value)
        if not math.isfinite(number):
            raise _Bad
        if (low is not None and number < low) or (high is not None and number > high):
            raise _Bad
        return number

    return check


def _floats(value: Any) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or not value:
        raise _Bad
    check = _float_at_least(None)
    return tuple(check(v) for v in value)


def _pair_at_least(low: int) -> Callable[[Any], tuple[int, int]]:
    def check(value: Any) -> tuple[int, int]:
        if value.__class__ is int:  # the common case, a plain int: no list
            if value < low:
                raise _Bad
            return value, value
        items = list(value) if isinstance(value, (list, tuple)) else [value, value]
        if len(items) != 2 or not all(_is_int(v) and v >= low for v in items):
            raise _Bad
        return int(items[0]), int(items[1])

    return check


def _padding(value: Any) -> str | tuple[int, int]:
    if isinstance(value, str):
        if value in ("same", "valid"):
            return value
        raise _Bad
    return _pair_at_least(0)(value)


def _size_of(value: Any) -> SizeOf | tuple[int, int]:
    if value.__class__ is SizeOf:
        return value
    return _pair_at_least(1)(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Bad
    return value


def _any(value: Any) -> Any:
    return value


# kind -> (what the value must be, in words; normalizer raising _Bad)
KINDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "int": ("an integer", _int_at_least(None)),
    "posint": ("a positive integer", _int_at_least(1)),
    "nonneg": ("a non-negative integer", _int_at_least(0)),
    "float": ("a number", _float_at_least(None)),
    "nonneg_float": ("a non-negative number", _float_at_least(0.0)),
    "prob": ("a number between 0 and 1", _float_at_least(0.0, 1.0)),
    "bool": ("true or false", _bool),
    "str": ("a string", _str),
    "pair": ("a positive integer or a list of two", _pair_at_least(1)),
    "nonneg_pair": ("a non-negative integer or a list of two", _pair_at_least(0)),
    "padding": (
        'a non-negative integer, a list of two, "same" or "valid"',
        _padding,
    ),
    "size": ("a positive integer or a list of two", _pair_at_least(1)),
    "size_of": (
        "a positive integer, a list of two, or a reference (@label, @in) to the value "
        "whose size it is",
        _size_of,
    ),
    "floats": ("a non-empty list of numbers", _floats),
    "any": ("any value", _any),
}


def describe_param(param: Param) -> str:
    """What a value of ``param`` must be, in words (used in errors and the reference)."""
    if param.choices:
        words = "one of " + ", ".join(format_value(c) for c in param.choices)
    else:
        words = KINDS[param.kind][0]
    return words + (" or none" if param.nullable else "")


def normalize_value(op: str, param: Param, value: Any) -> Any:
    """Validate and normalize one argument; raises ValueProblem naming the param."""
    if value is None and param.nullable:
        return None
    _, normalize = KINDS[param.kind]
    try:
        if value is None:
            raise _Bad
        result = normalize(value)
        if param.choices and result not in param.choices:
            raise _Bad
    except _Bad:
        raise ValueProblem(
            f"{op}: {param.name} must be {describe_param(param)}, got {format_value(value)}",
            param=param.name,
        ) from None
    return result


def normalize_attrs(opdef: OpDef, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Check every bound argument of ``opdef`` and return them normalized, in param order.

    ``attrs`` must bind every param (the caller fills in defaults). Unknown names and
    missing required arguments are reported as ValueProblem too, naming the param.
    """
    known, plan = _plan(opdef)
    if len(attrs) > len(known) or not known.issuperset(attrs):
        for name in attrs:
            if name not in known:
                expected = ", ".join(p.name for p in opdef.params) or "no arguments"
                raise ValueProblem(
                    f"{opdef.name}: unknown argument {name} (takes {expected})", param=name
                )
    result: dict[str, Any] = {}
    # normalize_value, inlined: a large network normalizes hundreds of thousands of values
    for name, normalize, choices, param in plan:
        value = attrs.get(name, REQUIRED)
        if value is REQUIRED:
            raise ValueProblem(f"{opdef.name}: missing argument {name}", param=name)
        if value is None:
            result[name] = normalize_value(opdef.name, param, value)
            continue
        try:
            normalized = normalize(value)
            if choices and normalized not in choices:
                raise _Bad
        except _Bad:
            normalize_value(opdef.name, param, value)  # raises ValueProblem with the message
            raise
        result[name] = normalized
    return result


_PLANS: dict[int, tuple[OpDef, frozenset[str], tuple[tuple[Any, ...], ...]]] = {}


def _plan(opdef: OpDef) -> tuple[frozenset[str], tuple[tuple[Any, ...], ...]]:
    """The param names of ``opdef`` and, per param, what normalizes its value; computed
    once per op definition (kept with it, so its id is not reused while cached)."""
    cached = _PLANS.get(id(opdef))
    if cached is None or cached[0] is not opdef:
        plan = tuple((p.name, KINDS[p.kind][1], p.choices, p) for p in opdef.params)
        cached = _PLANS[id(opdef)] = (opdef, frozenset(p.name for p in opdef.params), plan)
    return cached[1], cached[2]


def bind_defaults(opdef: OpDef, attrs: Mapping[str, Any]) -> dict[str, Any]:
    """``attrs`` with every missing param that has a default filled in (for tools and tests)."""
    bound = {p.name: p.default for p in opdef.params if p.default is not REQUIRED}
    bound.update(attrs)
    return bound
