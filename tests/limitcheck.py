"""What the tests of archdsl's limits share (test_limits.py, test_limits_numbers.py,
test_imports_and_payloads.py): a network around one statement, a time limit, the error a
check raises within it, and the line and column of a piece of a spec."""

from __future__ import annotations

import pytest
from timelimit import Hang, TimeLimit

import archdsl

NET = "network n {{ input [3, 8, 8]; {} }}"


def within(seconds: float, wall: bool = False) -> TimeLimit:
    """Fail (with :class:`Hang`) if the body takes more than ``seconds`` of this process's
    CPU time (wall time with ``wall=True``); see tests/timelimit.py."""
    return TimeLimit(seconds, wall=wall)


def error_of(text: str, seconds: float = 5.0, **kwargs: object) -> archdsl.ArchError:
    """The ArchError ``check(text)`` raises, within ``seconds``; anything else fails."""
    with within(seconds):
        try:
            archdsl.check(text, **kwargs)
        except archdsl.ArchError as e:
            e.render()  # renders without crashing
            return e
        except Hang:
            pytest.fail(f"check() still running after {seconds} s")
    pytest.fail("check() accepted the spec")


def limit_error(
    text: str, match: str, line: int, column: int, seconds: float = 5.0, **kwargs: object
) -> archdsl.ArchError:
    err = error_of(text, seconds, **kwargs)
    assert type(err) is archdsl.ArchLimitError, f"{type(err).__name__}: {err}"
    assert match in err.message, err.message
    assert (err.line, err.column) == (line, column), str(err)
    return err


def locate(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, column) of the ``nth`` occurrence of ``needle`` in ``text``."""
    pos = -1
    for _ in range(nth + 1):
        pos = text.index(needle, pos + 1)
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1
