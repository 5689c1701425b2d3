"""A time limit for a block of test code that might hang: ``with TimeLimit(5): ...``.

Counts this process's CPU time (SIGPROF), so a spec that would hang costs the suite a few
seconds, not forever, and a loaded machine (the other xdist worker, a CI neighbour) cannot
make a fast case look slow; ``wall=True`` counts wall time (SIGALRM), for a body that might
block without running.

The signal repeats every 50 ms after the limit, because an exception raised while a gc
callback runs is swallowed there. It is a class, not a generator-based context manager:
a signal landing in ``contextlib``'s ``__exit__`` would leave the generator, and with it
the disarming ``finally``, suspended, and the timer firing into whatever ran next; here a
signal that lands in ``__exit__`` itself is ignored, and ``__exit__`` disarms first.
"""

from __future__ import annotations

import signal
from types import FrameType, TracebackType


class Hang(BaseException):
    """The body ran past its limit. Not an Exception, so no handler in archdsl swallows it."""


class TimeLimit:
    def __init__(self, seconds: float, *, wall: bool = False, error: type[BaseException] = Hang):
        self.seconds = seconds
        self.error = error
        self.sig, self.timer = (
            (signal.SIGALRM, signal.ITIMER_REAL) if wall else (signal.SIGPROF, signal.ITIMER_PROF)
        )
        self.armed = False
        self.previous: object = None

    def _expired(self, signum: int, frame: FrameType | None) -> None:
        if self.armed and (frame is None or frame.f_code is not TimeLimit.__exit__.__code__):
            raise self.error(f"still running after {self.seconds} s")

    def __enter__(self) -> TimeLimit:
        if not hasattr(signal, "setitimer"):  # pragma: no cover - Windows: no limit
            return self
        self.previous = signal.signal(self.sig, self._expired)
        self.armed = True
        signal.setitimer(self.timer, self.seconds, 0.05)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self.armed:
            return
        self.armed = False
        signal.setitimer(self.timer, 0)
        signal.signal(self.sig, self.previous)  # type: ignore[arg-type]
