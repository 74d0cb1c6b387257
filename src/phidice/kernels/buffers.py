"""Reused CPU buffers for the probabilities the numba forward keeps, which its backward turns into ∂L/∂logits.

Every training step needs one such (B, C, N) buffer. A fresh one costs a page fault per 4 KiB the first time
it is written (about 1 µs each here) whenever the allocator hands out new pages: always above glibc's 32 MB
mmap threshold, and often below it. At (2, 16, 64³) that is 8193 faults, as long as the kernels themselves
(BENCHMARKS.md §15). The pool keeps the memory of buffers it made and hands it out again once nothing uses it —
on the CPU what PyTorch's caching allocator does on CUDA.

Ownership is exact. The pool keeps a NumPy array per buffer. Each tensor it hands out is ``torch.from_numpy``
of a fresh view of that array, and the tensor's storage holds the only reference to the view. The view is
freed when the last tensor on that storage is: the gradient in ``x.grad``, a view or slice of it, its
``.numpy()``, or its ``untyped_storage()``. A finalizer on the view then marks the buffer free. A buffer in
use is never handed out twice.

A request takes the smallest free buffer of its dtype that holds it and is at most twice its size (a view of its
start), so deep supervision's levels each find theirs, and a size that varies a little reuses the same buffer.
When none fits, the free buffers of that dtype are freed before a new one is made: a pool never holds more than
the buffers of the sizes in use, whatever sizes come and go. In all it holds at most :func:`limit` bytes
(``PHIDICE_CPU_BUFFER_POOL``, default 1 GiB; 0 turns the pool off). :func:`empty_cache` frees the ones not in
use. As for any tensor from ``torch.from_numpy``, a tensor on a pooled buffer cannot grow (``resize_`` beyond
its size raises).
"""

from __future__ import annotations

import math
import os
import threading
import weakref

import numpy as np
import torch

__all__ = ["empty", "empty_cache", "limit", "set_limit", "pooled_bytes"]

_DEFAULT_LIMIT = 1 << 30
_NUMPY_DTYPES = (torch.float32, torch.float64, torch.float16)
_lock = threading.Lock()
_limit: int | None = None
_pool: list[_Buffer] = []


def _new_lock_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a fork while another thread held it would leave the child's copy locked


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_in_child)


class _Buffer:
    __slots__ = ("array", "dtype", "busy")

    def __init__(self, array: np.ndarray, dtype: torch.dtype) -> None:
        self.array = array
        self.dtype = dtype
        self.busy = False


def _release(buf: _Buffer) -> None:
    buf.busy = False


def limit() -> int:
    """Bytes the pool may hold: :func:`set_limit`'s value, else ``PHIDICE_CPU_BUFFER_POOL``, else 1 GiB.

    Raises:
        ValueError: ``PHIDICE_CPU_BUFFER_POOL`` is not a whole number of bytes ≥ 0.
    """
    if _limit is not None:
        return _limit
    raw = os.environ.get("PHIDICE_CPU_BUFFER_POOL", "").strip()
    if not raw:
        return _DEFAULT_LIMIT
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"PHIDICE_CPU_BUFFER_POOL must be a whole number of bytes ≥ 0 (0: no pool); got {raw!r}")
    return value


def set_limit(nbytes: int | None) -> int | None:
    """Set the pool's limit in bytes (0: no pool; ``None``: back to the environment/default); returns the
    previous setting. Buffers over a lower limit are freed as soon as they are not in use.

    Raises:
        ValueError: ``nbytes`` is not an int ≥ 0 or None.
    """
    global _limit
    if nbytes is not None and (isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes < 0):
        raise ValueError(f"nbytes must be an int ≥ 0 or None; got {nbytes!r}")
    with _lock:
        previous, _limit = _limit, nbytes
        _free_until(limit())
    return previous


def pooled_bytes() -> int:
    """Bytes of the buffers the pool holds, in use or free."""
    with _lock:
        return _total()


def empty_cache() -> None:
    """Free the pooled buffers that are not in use (those in use stay valid and leave the pool)."""
    with _lock:
        _pool.clear()


def _total() -> int:
    return sum(b.array.nbytes for b in _pool)


def _free_until(cap: int, dtype: torch.dtype | None = None) -> None:
    """Free buffers not in use (of ``dtype`` only, when given), oldest first, until the pool holds at most
    ``cap`` bytes or only buffers in use."""
    total = _total()
    for buf in [b for b in _pool if not b.busy and dtype in (None, b.dtype)]:
        if total <= cap:
            return
        _pool.remove(buf)
        total -= buf.array.nbytes


def empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised CPU tensor of ``shape`` and ``dtype``: on the smallest free pooled buffer that holds it (and
    is at most twice its size); else on a new buffer, pooled while the limit allows."""
    numel = math.prod(shape)
    with _lock:
        cap = limit()
        nbytes = numel * dtype.itemsize
        if dtype not in _NUMPY_DTYPES or nbytes > cap or numel == 0:
            return torch.empty(shape, dtype=dtype)
        fits = [b for b in _pool if not b.busy and b.dtype == dtype and numel <= b.array.size <= 2 * numel]
        buf = min(fits, key=lambda b: b.array.size, default=None)
        if buf is None:
            _free_until(0, dtype)  # none fits: the free ones of this dtype are of sizes no longer asked for
            _free_until(cap - nbytes)
            if nbytes + _total() > cap:  # the rest is in use
                return torch.empty(shape, dtype=dtype)
            buf = _Buffer(torch.empty(numel, dtype=dtype).numpy(), dtype)  # torch's allocator: aligned, huge pages
            _pool.append(buf)
        view = buf.array[:numel].reshape(shape)  # a new ndarray on the buffer, referenced by the tensor's storage
        buf.busy = True
        weakref.finalize(view, _release, buf)
        return torch.from_numpy(view)
