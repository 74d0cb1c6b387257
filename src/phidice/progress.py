"""Progress bars for long work: tqdm when it is installed (the ``io`` extra), silently none otherwise.

In a non-interactive log (the stream is not a terminal: CI, ``nohup``, a job scheduler, ``2> log.txt``) a
redrawn bar would write hundreds of carriage-return frames into the file; there each step gets one plain line
instead, at most one every ``PHIDICE_PROGRESS_INTERVAL`` seconds (default 10) plus the last one.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable


class _NoBar:
    """The part of tqdm's interface phidice uses, doing nothing."""

    def __init__(self, iterable=None, **kwargs):
        self._iterable = iterable

    def __iter__(self):
        return iter(self._iterable if self._iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args, **kwargs) -> None:
        pass

    def set_postfix_str(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass


class _LogLines(_NoBar):
    """One line per step, ``desc: n/total [elapsed, postfix]``, rate-limited; the last step always printed."""

    def __init__(
        self,
        iterable=None,
        *,
        total=None,
        desc: str | None = None,
        unit: str = "it",
        file=None,
        interval: float | None = None,
        **kwargs,
    ):
        super().__init__(iterable)
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.unit, self.file = total, desc or "progress", unit, file or sys.stderr
        self.interval = float(os.environ.get("PHIDICE_PROGRESS_INTERVAL", 10)) if interval is None else interval
        self.n, self.postfix, self.start = 0, "", time.monotonic()
        self.last: float | None = None

    def __iter__(self):
        for item in super().__iter__():
            yield item
            self.update()
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.n == self.total or self.last is None or now - self.last >= self.interval:
            self._line(now)

    def _line(self, now: float) -> None:
        self.last = now
        count = f"{self.n}/{self.total}" if self.total is not None else str(self.n)
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {count} {self.unit} [{now - self.start:.1f} s{extra}]", file=self.file, flush=True)

    def set_postfix(self, *args, **kwargs) -> None:
        items = dict(*args, **kwargs)
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", *args, **kwargs) -> None:
        self.postfix = str(s)

    def close(self) -> None:
        if self.n and self.last is not None and self.n != self.total:  # the last state, if not printed yet
            self._line(time.monotonic())
        self.last = None


def _interactive(stream) -> bool:
    """A terminal, or a Jupyter kernel (whose widgets redraw in place)."""
    if "ipykernel" in sys.modules:
        return True
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def progress(iterable: Iterable | None = None, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)`` on a terminal; one line per step in a non-interactive log; an
    iterator without a bar when tqdm is not installed or ``disable=True``."""
    try:
        from tqdm.auto import tqdm  # optional (io extra)
    except ImportError:
        return _NoBar(iterable, **kwargs)
    if kwargs.get("disable"):
        return _NoBar(iterable, **kwargs)
    if not _interactive(kwargs.get("file") or sys.stderr):
        return _LogLines(iterable, **{k: v for k, v in kwargs.items() if k != "disable"})
    return tqdm(iterable, **kwargs)
