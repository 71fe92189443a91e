"""Progress reporting and cancellation for long computations.

Compute functions take ``progress``: False/None (silent), True (a one-line
text bar on stderr) or a callable ``progress(done, total)``. A callable may
stop the work by raising :class:`Cancelled` (widgets do this when a control
changes mid-job); the exception propagates to the caller.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

ProgressArg = "bool | None | Callable[[int, int], object]"


class Cancelled(Exception):
    """Raised to stop a long computation early."""


class _TextBar:
    def __init__(self, desc: str):
        self.desc = desc
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done < total and now - self.last < 0.25:
            return
        self.last = now
        frac = done / max(total, 1)
        bar = "#" * int(frac * 20)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{self.desc}: [{bar:<20}] {done}/{total} {now - self.start:.1f}s{end}")
        sys.stderr.flush()


def reporter(progress: ProgressArg, desc: str) -> Callable[[int, int], object]:
    """Normalize a ``progress`` argument into a ``(done, total)`` callable."""
    if progress is None or progress is False:
        return lambda done, total: None
    if progress is True:
        return _TextBar(desc)
    if callable(progress):
        return progress
    raise TypeError("progress must be True, False, None or a function (done, total)")
