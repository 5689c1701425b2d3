"""The op registry's vocabulary: what an op declares about itself.

An op is data plus pure functions of its attributes and input shapes. Shapes here never
include the batch dimension: ``(C, H, W)`` for feature maps, ``(F,)`` for flat features.
Nothing in this package imports torch; module factories live in ``archdsl.backends``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

Shape = tuple[int, ...]


class Required:
    """Marker for a parameter without a default."""

    def __repr__(self) -> str:
        return "<required>"


REQUIRED: Any = Required()


class ShapeProblem(Exception):
    """Raised by a shape rule; the elaborator turns it into an ArchShapeError with a span.

    ``arithmetic`` optionally shows how a bad size came about, e.g.
    ``"(7 + 2*0 - 11) // 4 + 1 = -0"``.
    """

    def __init__(self, message: str, arithmetic: str | None = None):
        super().__init__(message)
        self.message = message
        self.arithmetic = arithmetic


class ValueProblem(Exception):
    """Raised when an attribute value has the wrong type or is out of range.

    ``param`` names the offending parameter so the error can point at its argument.
    """

    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class SizeOf:
    """The spatial size of another value of the network, read at run time: what a
    reference (``@backbone.4``, ``@in``) gives a parameter of kind ``size_of`` (resize's
    ``size``). The graph holds that value as the op's last input; ``ref`` is the reference
    as the spec writes it, for messages and diagrams."""

    ref: str

    def __str__(self) -> str:
        return self.ref


def reads_size(attrs: Mapping[str, Any]) -> bool:
    """Whether an op's attributes take a size from another value (its last input)."""
    return any(v.__class__ is SizeOf for v in attrs.values())


@dataclass(frozen=True)
class Param:
    """One parameter of an op: its name, default and the kind of value it takes.

    Kinds: ``int``, ``posint`` (>= 1), ``nonneg`` (>= 0), ``float``, ``prob`` (0 <= p <= 1),
    ``bool``, ``str``, ``pair`` (an int or a list of two ints, each >= 1),
    ``nonneg_pair`` (same, >= 0), ``padding`` (``nonneg_pair`` or "same" / "valid"),
    ``size`` (an int or a list of two ints >= 1, for adaptive pooling),
    ``nonneg_float`` (a number >= 0), ``floats`` (a non-empty list of numbers),
    ``size_of`` (``size``, or a reference to a value whose spatial size it is: a
    :class:`SizeOf`), ``any``.

    ``choices`` restricts a value to a fixed set (e.g. GELU's ``approximate``);
    ``nullable`` additionally accepts ``none`` (Python ``None``), e.g. pooling's ``stride``.
    Validation and normalization live in :func:`archdsl.ops.attrs.normalize_attrs`.
    """

    name: str
    kind: str = "any"
    default: Any = REQUIRED
    doc: str = ""
    choices: tuple[Any, ...] = ()
    nullable: bool = False


def _zero(attrs: Mapping[str, Any], inputs: list[Shape], out: Shape) -> int:
    return 0


@dataclass(frozen=True)
class OpDef:
    """A built-in op.

    - ``infer(attrs, input_shapes) -> output shape``; raises ShapeProblem.
    - ``count_params(attrs, input_shapes) -> int`` trainable parameters.
    - ``count_buffers(attrs, input_shapes) -> int`` non-trainable state (e.g. running stats).
    - ``macs(attrs, input_shapes, output_shape) -> int`` multiply-accumulates per sample.
    - ``arity``: number of inputs, or -1 for variadic merges (add/concat/mul); one more
      where a ``size_of`` parameter is given a reference (:func:`reads_size`).
    - ``functional``: applied as a function in the forward, with no module and so no
      module path or number (merges, ``resize``: torchvision's ``F.interpolate``).
    - ``stateless``: no parameters or buffers ever (relu, pooling ...).
    - ``torch_class``: name of the torch.nn class it builds (for docs and summaries).
    """

    name: str
    params: tuple[Param, ...]
    infer: Callable[[Mapping[str, Any], list[Shape]], Shape]
    count_params: Callable[[Mapping[str, Any], list[Shape]], int] = lambda a, s: 0
    count_buffers: Callable[[Mapping[str, Any], list[Shape]], int] = lambda a, s: 0
    macs: Callable[[Mapping[str, Any], list[Shape], Shape], int] = _zero
    arity: int = 1
    functional: bool = False
    stateless: bool = True
    doc: str = ""
    aliases: tuple[str, ...] = field(default=())
    torch_class: str = ""

    @cached_property
    def param_names(self) -> tuple[str, ...]:
        """The params' names in order (computed once: every layer of a network binds them)."""
        return tuple(p.name for p in self.params)

    @cached_property
    def defaults(self) -> tuple[tuple[str, Any], ...]:
        """``(name, default)`` of each param, in order (``REQUIRED`` where it has none)."""
        return tuple((p.name, p.default) for p in self.params)


SHOWN_CHARS = 60
"""About how much of a value a message quotes: longer strings and lists are abbreviated
(a spec may hold a 10,000-character string or a 100,000-item list)."""


def format_value(value: Any, width: int = SHOWN_CHARS) -> str:
    """Write a Python value the way the language spells it (``true``, ``none``, ``[3, 3]``),
    in about ``width`` characters: ``"xxx..." (10,000 characters)``, ``[0, 1, ... 99,990
    more]``, ``[[...]]``; an integer beyond 10^18 in scientific notation.

    Error messages quote user values; showing them in the language's own syntax keeps the
    message readable next to the source line.
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) > 10**18:  # str() refuses over 4,300 digits
        exponent = int(math.log10(abs(value)))
        mantissa = abs(value) / 10**exponent
        if mantissa >= 10:  # log10 rounded up
            mantissa, exponent = mantissa / 10, exponent + 1
        return f"{'-' * (value < 0)}{mantissa:.3f}e+{exponent}"
    if isinstance(value, str):
        shown = value if len(value) <= width else value[: max(width // 2, 1)]
        quoted = '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return quoted if shown is value else f'{quoted[:-1]}..." ({len(value):,} characters)'
    if isinstance(value, (list, tuple)):
        if value and width < 5:
            return "[...]"
        parts: list[str] = []
        room = width - 2
        for i, item in enumerate(value):
            if room <= 0:
                parts.append(f"... {len(value) - i:,} more")
                break
            parts.append(format_value(item, room))
            room -= len(parts[-1]) + 2
        return "[" + ", ".join(parts) + "]"
    return repr(value)


def format_shape(shape: Shape) -> str:
    """A per-sample shape as the language writes it: ``[64, 56, 56]``."""
    return "[" + ", ".join(str(d) for d in shape) + "]"
