"""Progress reporting and cancellation for long computations.

Compute functions take ``progress``:

- ``None`` (the default of the long ones): a progress bar when the job is
  large, nothing otherwise. "Large" is decided without a clock, so a notebook
  shows the same outputs on every machine: the job is large when it makes more
  than :data:`AUTO_MIN_CALLS` model calls. Batches are sized to the probe's
  memory budget, so one call is a roughly constant amount of work (a tenth of
  a second to a few seconds on a laptop CPU, more for bigger models, which
  also get smaller batches and so more calls).
- ``True``: always a bar; ``False``: never.
- a callable ``progress(done, total)``: called as the work advances; it may
  stop the work by raising :class:`Cancelled` (widgets do this when a
  control changes mid-job), and the exception reaches the caller.

Bars come from ``tqdm.auto``: a notebook widget in Jupyter, a text bar on
stderr in a terminal.
"""

from __future__ import annotations

import math
from typing import Any

ProgressArg = "bool | None | Callable[[int, int], object]"

#: ``progress=None`` shows a bar for jobs of more model calls than this.
AUTO_MIN_CALLS = 24


class Cancelled(Exception):
    """Raised to stop a long computation early."""


class Reporter:
    """A ``(done, total)`` callable behind every ``progress`` argument.

    Forwards to the user's callable, or drives a ``tqdm.auto`` bar opened on
    demand and closed when ``done`` reaches ``total`` (or on :meth:`close`,
    or when used as a context manager and the work stops early).

    Args:
        progress: ``None``, ``True``, ``False`` or a callable ``(done, total)``.
        desc: the bar's label.
        calls: how many model calls the whole job makes, when the caller knows
            it. Otherwise it is read from the first report after the start:
            a job that reports once per batch and advanced ``d`` of ``total``
            in its first batch makes about ``ceil(total / d)`` calls.
    """

    def __init__(self, progress: Any, desc: str, calls: int | None = None):
        if not (progress is None or isinstance(progress, bool) or callable(progress)):
            raise TypeError(
                f"progress must be None (a bar for large jobs), True, False or a "
                f"function (done, total); got {progress!r}"
            )
        self.desc = desc
        self.calls = calls
        self._callback = progress if callable(progress) else None
        # None: not decided yet; True / False: a bar is (or will never be) shown
        self._wanted: bool | None = None if progress is None else progress is True
        self.bar: Any = None  # the tqdm instance, once opened
        self.last = (0, 0)

    def __call__(self, done: int, total: int) -> None:
        done, total = int(done), int(total)
        self.last = (done, total)
        if self._callback is not None:
            self._callback(done, total)
            return
        if self._wanted is None:
            self._wanted = self._decide(done, total)
            if self._wanted is None:
                return
        if not self._wanted:
            return
        if self.bar is None:
            from tqdm.auto import tqdm  # a notebook bar in Jupyter, text in a terminal

            self.bar = tqdm(total=total, desc=self.desc, initial=done, leave=True)
        else:
            if total != self.bar.total:
                self.bar.total = total
            self.bar.update(max(0, done - self.bar.n))
        if done >= total:
            self.close()

    def _decide(self, done: int, total: int) -> bool | None:
        """Large job or not, for ``progress=None``; None while it cannot tell yet."""
        if self.calls is not None:
            return self.calls > AUTO_MIN_CALLS
        if done >= total:
            return False  # finished in one step (a cache hit, one batch)
        if done <= 0:
            return None  # the start: wait for the first batch
        return math.ceil(total / done) > AUTO_MIN_CALLS

    def close(self) -> None:
        """End the bar (if any); later reports open no new one."""
        if self.bar is not None:
            self.bar.close()
        self._wanted = False

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def reporter(progress: Any, desc: str, calls: int | None = None) -> Reporter:
    """Normalize a ``progress`` argument into a ``(done, total)`` callable.

    Args:
        progress: ``None`` (a bar when the job makes more than
            :data:`AUTO_MIN_CALLS` model calls), ``True`` (always a bar),
            ``False`` (silent) or a callable ``(done, total)``.
        desc: label of the bar.
        calls: the job's number of model calls, if known in advance (see
            :class:`Reporter`).

    Returns:
        A :class:`Reporter`; call it with ``(done, total)`` as work advances.
        The bar closes itself when ``done`` reaches ``total``; call
        :meth:`Reporter.close` (or use it as a context manager) where work can
        stop early.
    """
    return Reporter(progress, desc, calls)
