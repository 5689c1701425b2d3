"""What the fuzzing tests share (test_fuzz.py, test_fuzz_regressions.py): the oracle
that judges one case. ``archdsl.check`` must return a graph or raise an ``ArchError`` that
renders, within a time limit; ``archdsl check FILE``, run in-process, must exit 0 or 1 and
never print a traceback."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import re
import time
from pathlib import Path

from hypothesis import note
from hypothesis.control import currently_in_test_context
from timelimit import TimeLimit

import archdsl
from archdsl_cli.main import main

CASE_SECONDS = 1.0
"""The slowest a case of ordinary size may be (measured twice, so a load spike does not
fail it), on the machine the budgets were set on: a slower one multiplies both budgets by
its :func:`slowness`."""

LARGE_CASE_SECONDS = 3.0
"""The slowest a case may be that reaches a size limit (an ``ArchLimitError``) or checks a
network of more than :data:`LARGE_NODES` layers. The limits (``MAX_STEPS`` evaluation
steps, ``MAX_NODES`` layers) allow that much work, which takes up to about 1.5 s here: a
network of 190,000 layers checks in 1.3 s, a dense block of 10,000 layers runs out of steps
after 1.0 s. A hang or a blow-up worse than linear still exceeds it."""

LARGE_NODES = 20_000

REFERENCE_SECONDS = 0.18
"""The CPU time of checking ``conv(3, 3, padding=1) x 10000`` on the machine the budgets
above were set on: a fifth of the dense block's 1.0 s (the two measured side by side on
2026-12-07, 0.37 and 2.0 s, on a machine about twice as slow)."""


@functools.cache
def slowness() -> float:
    """How many times slower than that machine this one checks specs, at least 1 (best of
    three runs of the reference, once per process): the budgets scale with it, so a slower
    machine does not fail them and a blow-up worse than linear still does."""
    text = "network n { input [3, 8, 8]; conv(3, 3, padding=1) x 10000 }"
    best = math.inf
    for _ in range(3):
        start = time.process_time()
        archdsl.check(text)
        best = min(best, time.process_time() - start)
    return max(1.0, best / REFERENCE_SECONDS)


# ---- the oracle -------------------------------------------------------------------------


class CaseTimeout(BaseException):
    """Raised by :func:`time_limit` in the main thread; not an Exception, so no handler in
    archdsl swallows it."""


def time_limit(seconds: float) -> TimeLimit:
    """Interrupt the body after ``seconds`` of this process's CPU time, so a hanging case
    fails instead of hanging the test run (tests/timelimit.py)."""
    return TimeLimit(seconds, error=CaseTimeout)


HANG_SECONDS = 10 * CASE_SECONDS
"""After this long a case counts as hanging and is interrupted."""


def _check_once(text: str, path: str, hang: float) -> tuple[str, float, float]:
    """The outcome, the CPU seconds it took and the most it may take."""
    start = time.process_time()  # CPU time: a busy neighbour does not slow a case
    limit = CASE_SECONDS * slowness()
    try:
        with time_limit(hang):
            graph = archdsl.check(text, path=path)
        outcome = "ok"
        if sum(1 for _ in graph.nodes()) > LARGE_NODES:
            limit = LARGE_CASE_SECONDS * slowness()
    except archdsl.ArchError as e:
        rendered = e.render()  # what the CLI prints; must not crash either
        assert rendered.startswith(str(e.span)), rendered
        assert isinstance(e.line, int) and isinstance(e.column, int)
        outcome = type(e).__name__
        if isinstance(e, archdsl.ArchLimitError):
            limit = LARGE_CASE_SECONDS * slowness()
    except CaseTimeout:
        return "timeout", time.process_time() - start, limit
    return outcome, time.process_time() - start, limit


def run_case(text: str, path: str = "<fuzz>", hang: float = HANG_SECONDS) -> str:
    """Check ``text``; fail on anything but a graph or an ArchError, or on a slow case.

    Returns the outcome (``"ok"`` or the ArchError class name) for ``note``/statistics.
    """
    outcome, seconds, limit = _check_once(text, path, hang)
    if outcome != "timeout" and seconds > limit:  # a loaded CI machine is not a bug
        outcome, seconds, limit = _check_once(text, path, hang)
    if currently_in_test_context():  # the regression replays run outside hypothesis
        note(f"outcome: {outcome} in {seconds:.3f} s")
    assert outcome != "timeout", f"check() did not finish in {hang} s"
    assert seconds <= limit, f"check() took {seconds:.2f} s (limit {limit:.2f} s)"
    return outcome


def run_cli(
    text: str, folder: Path, name: str = "fuzz.arch", hang: float = HANG_SECONDS
) -> tuple[int, str]:
    """``archdsl check FILE`` in-process: exit 0 or 1 and no traceback, ever."""
    path = folder / name
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with time_limit(hang):
                code = main(["check", str(path)])
    except CaseTimeout:
        raise AssertionError(f"archdsl check did not finish in {hang} s") from None
    stderr = err.getvalue()
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    assert code in (0, 1), (code, stderr)
    if code == 1:
        assert re.match(rf"{re.escape(str(path))}(:\d+:\d+)?: error: |.*: error: ", stderr), stderr
    return code, stderr
