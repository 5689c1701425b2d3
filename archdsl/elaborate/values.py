"""The language's values as the compiler holds them: the literal limits, ``in`` (the
shape of a block's input), the compound-scaling multipliers, and how values are named and
shown in messages.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from archdsl.errors import ArchNameError, ArchTypeError, Span
from archdsl.ops.base import format_value
from archdsl.ops.registry import OPS, known_as

MAX_INT = 10**18
MAX_LIST = 100_000
MAX_STRING = 10_000


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
                raise ArchTypeError(
                    f"in.{name}: the input has shape {list(dims)}, no spatial size", span
                )
            return dims[1] if name == "h" else dims[2]
        raise ArchNameError(
            f"'in' has no attribute '{name}'{did_you_mean(name, ['c', 'h', 'w', 'shape', 'rank'])}",
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


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like ``name``, if one is close enough to be a likely misspelling."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    match = closest(name, candidates)
    return f"; did you mean '{match}'?" if match is not None else ""


def unknown_layer(name: str, blocks: Iterable[str]) -> str:
    """The error for a layer ``name`` that is neither an op nor a block: the op it means if
    it is another framework's word for one (``Conv2d``, ``dense``), else the closest name."""
    meant = known_as(name)
    hint = f"; did you mean '{meant}'?" if meant else did_you_mean(name, [*OPS, *blocks])
    return f"unknown op or block '{name}'{hint}"


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
