"""Errors a user can cause. Every one carries a source location.

The CLI prints them as ``file:line:col: error: message``, then the source line and a caret.
"""

from __future__ import annotations

from dataclasses import dataclass


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


class ArchError(Exception):
    """Base of every error caused by a spec or its parameters."""

    kind = "error"

    def __init__(self, message: str, span: Span | None = None, source: str | None = None):
        super().__init__(message)
        self.message = message
        self.span = span or UNKNOWN_SPAN
        self.source = source  # full text of the file, for rendering the caret line
        self.notes: list[str] = []

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
        """The full message: location, text, the offending source line and a caret."""
        out = [str(self)]
        text = self.source
        if text is None and self.span.line > 0:
            try:
                with open(self.span.path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                text = None
        if text is not None and self.span.line > 0:
            lines = text.splitlines()
            if 0 < self.span.line <= len(lines):
                src = lines[self.span.line - 1].replace("\t", " ")
                col = max(self.span.column, 1)
                width = 1
                if self.span.end_line == self.span.line and self.span.end_column:
                    width = max(1, self.span.end_column - col)
                if len(src) > MAX_SHOWN:  # show a window around the column, not a huge line
                    start = max(0, col - 1 - MAX_SHOWN // 2)
                    src = src[start:start + MAX_SHOWN]
                    col -= start
                width = min(width, max(1, len(src) - col + 1))
                out.append("  " + src)
                out.append("  " + " " * (col - 1) + "^" * width)
        out.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(out)


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
