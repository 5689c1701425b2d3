"""Errors a user can cause. Every one carries a source location.

The CLI prints them as ``file:line:col: error: message``, then the source line and a caret.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Span:
    """A region of a source file: 1-based line and column, end exclusive."""

    path: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        if self.line <= 0:
            return self.path
        return f"{self.path}:{self.line}:{self.column}"


UNKNOWN_SPAN = Span("<unknown>", 0, 0)
MAX_SHOWN = 160  # characters of a source line shown under an error
MAX_ERRORS = 20  # independent errors reported together (the first raised, the rest attached)
MAX_CALLS_SHOWN = 8  # calls listed under an error; the middle of a longer chain is elided


def source_lines(text: str) -> list[str]:
    """The lines of a source text as the lexer numbers them: split at ``\\n`` only (a
    trailing ``\\r`` dropped), unlike :meth:`str.splitlines`, which also breaks at ``\\f``,
    ``\\v``, ``\\x1c``-``\\x1e``, ``\\x85`` and ``\\u2028``/``\\u2029``."""
    lines = text.split("\n")
    if len(lines) > 1 and lines[-1] == "":
        lines.pop()  # a final newline ends the last line; it does not start another
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _shown(ch: str) -> str:
    """A character as a terminal can show it: tabs as a space, characters that would move
    the cursor or reorder the text (controls, line separators, bidi marks) escaped."""
    if ch == "\t":
        return " "
    if ch.isprintable():
        return ch
    return ascii(ch)[1:-1]  # e.g. \x0c, \x85, \u2028, \u202e


def _cells(text: str) -> int:
    """Terminal columns ``text`` takes: wide (East Asian) characters two, combining none."""
    return sum(
        0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1
        for c in text
    )


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on escaped (newlines kept)."""
    if text.isprintable():
        return text
    return "\n".join(
        "".join(_shown(c) if c != "\t" else c for c in line) for line in text.split("\n")
    )


class ArchError(Exception):
    """Base of every error caused by a spec or its parameters.

    ``calls`` is the chain of calls the error happened in, innermost first: ``(kind, name,
    span of the call)``, kind ``"block"``, or ``"network"`` for a network reached through
    ``network b = a(...)``; :meth:`render` lists them as notes (the middle of a chain
    longer than :data:`MAX_CALLS_SHOWN` elided), so the user sees which of a block's uses
    went wrong, and where a library network was given the arguments it failed with.

    ``others`` holds further independent errors found by the same check (at most
    :data:`MAX_ERRORS` in all, ``omitted`` counts those beyond): :meth:`render` shows them
    after this one, then the count.
    """

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, source: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span or UNKNOWN_SPAN
        self.source = source  # full text of the file, for rendering the caret line
        self.notes: list[str] = []
        self.calls: list[tuple[str, str, Span]] = []
        self.others: list[ArchError] = []
        self.omitted = 0

    @property
    def path(self) -> str:
        return self.span.path

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def column(self) -> int:
        return self.span.column

    def __str__(self) -> str:
        return f"{self.span}: {self.kind}: {self.message}"

    def render(self) -> str:
        """The full message: location, text, the offending source line and a caret, and the
        same for each of ``others``, then how many errors there are."""
        parts = [self._render_one(), *(e._render_one() for e in self.others)]
        if self.omitted:
            parts.append(f"{len(parts) + self.omitted} errors (the first {len(parts)} shown)")
        elif self.others:
            parts.append(f"{len(parts)} errors")
        return "\n".join(parts)

    def _render_one(self) -> str:
        out = [printable(str(self))]
        text = self.source
        if text is None and self.span.line > 0:
            try:
                with open(self.span.path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                text = None
        if text is not None and self.span.line > 0:
            lines = source_lines(text)
            if 0 < self.span.line <= len(lines):
                out.extend(self._caret_lines(lines[self.span.line - 1]))
        out.extend(f"  note: {printable(n)}" for n in [*self.notes, *self._call_notes()])
        return "\n".join(out)

    def _call_notes(self) -> list[str]:
        notes = [f"in {kind} '{name}' called at {span}" for kind, name, span in self.calls]
        if len(notes) <= MAX_CALLS_SHOWN:
            return notes
        inner, outer = MAX_CALLS_SHOWN - 2, 2
        elided = len(notes) - inner - outer
        return [*notes[:inner], f"... {elided} more calls", *notes[-outer:]]

    def _caret_lines(self, src: str) -> list[str]:
        """The source line (a window of it if long) and a caret under the span."""
        col = max(self.span.column, 1)
        width = 1
        if self.span.end_line == self.span.line and self.span.end_column:
            width = max(1, self.span.end_column - col)
        if len(src) > MAX_SHOWN:  # show a window around the column, not a huge line
            start = max(0, col - 1 - MAX_SHOWN // 2)
            src = src[start : start + MAX_SHOWN]
            col -= start
        col = min(col, len(src) + 1)
        width = min(width, max(1, len(src) - col + 1))
        shown = [_shown(c) for c in src]
        before = _cells("".join(shown[: col - 1]))
        under = max(1, _cells("".join(shown[col - 1 : col - 1 + width])))
        return ["  " + "".join(shown), "  " + " " * before + "^" * under]


class ArchSyntaxError(ArchError):
    """The text does not follow the grammar."""


class ArchNameError(ArchError):
    """An unknown or duplicate name: op, block, network, parameter, variable."""


class ArchTypeError(ArchError):
    """A value of the wrong kind or arity: argument types, counts, bad literal values."""


class ArchShapeError(ArchError):
    """Tensor shapes that do not fit together."""


class ArchImportError(ArchError):
    """An import that is missing, cyclic or outside the spec roots."""


class ArchLimitError(ArchError):
    """A spec that exceeds a safety limit (recursion, repetition, size)."""


def together(errors: Sequence[ArchError]) -> ArchError:
    """The first error, carrying every other one (each once) as its ``others``."""
    flat: list[ArchError] = []
    seen: set[tuple[Any, ...]] = set()
    omitted = 0
    for e in errors:
        omitted += e.omitted
        for err in (e, *e.others):
            key = (type(err), err.span, err.message)
            if key not in seen:
                seen.add(key)
                flat.append(err)
    first = flat[0]
    for err in flat:
        err.others, err.omitted = [], 0
    first.others = flat[1:MAX_ERRORS]
    first.omitted = omitted + max(0, len(flat) - MAX_ERRORS)
    return first
