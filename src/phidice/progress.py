"""Progress bars for long work: tqdm when it is installed (the ``io`` extra), silently none otherwise."""

from __future__ import annotations

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


def progress(iterable: Iterable | None = None, **kwargs):
    """``tqdm.auto.tqdm(iterable, **kwargs)``, or an iterator without a bar when tqdm is not installed."""
    try:
        from tqdm.auto import tqdm  # optional (io extra)
    except ImportError:
        return _NoBar(iterable, **kwargs)
    return tqdm(iterable, **kwargs)
