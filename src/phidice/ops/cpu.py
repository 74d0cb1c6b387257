"""CPU backend: the numba kernels of :mod:`phidice.ops._numba_cpu` on float32 logits.

The forward pass also writes the labels narrowed to uint8 (int32 beyond 256 classes) — at most 1/8 of
the logits' bytes — and the backward reads those instead of the int64 labels. It gets the labels' range
in the same pass and raises the core's out-of-range error itself, so the caller skips its own pass.

Threads: the kernels release the GIL and run a range of tasks each; ``torch.get_num_threads()``
threads (the caller plus a small pool of ours) take task ranges. This avoids numba's OpenMP pool, a
second OpenMP runtime next to torch's whose idle threads spin against it and which stalls for
milliseconds when it runs fewer threads than it owns.
"""

from __future__ import annotations

import itertools
import os
import threading

import numpy as np
import torch

from phidice.core.stats import check_label_range

_kernels = None
_import_error: str | None = None
_pool: list | None = None  # [ThreadPoolExecutor, size]
_pool_lock = threading.Lock()


def kernels():
    """The numba module, or None when numba is missing or fails to import (reason in ``_import_error``)."""
    global _kernels, _import_error
    if _kernels is None and _import_error is None:
        try:
            from phidice.ops import _numba_cpu

            _kernels = _numba_cpu
        except Exception as err:  # pragma: no cover - depends on the environment
            _import_error = f"{type(err).__name__}: {err}"
    return _kernels


def available() -> bool:
    return kernels() is not None


def supports(dtype: torch.dtype) -> bool:
    return dtype == torch.float32


def _layout(C: int, N: int) -> tuple[int, int]:
    """Voxels per inner block (the C×blk exponentials stay in L1) and per task."""
    blk = max(16, min(1024, (4096 // C) // 16 * 16))
    chunk = blk * max(1, 16384 // blk)
    return blk, chunk


def _reset_pool() -> None:
    global _pool
    _pool = None  # a forked child has none of the parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pool)


def _executor(workers: int):
    global _pool
    with _pool_lock:
        if _pool is None or _pool[1] < workers:
            from concurrent.futures import ThreadPoolExecutor

            if _pool is not None:
                _pool[0].shutdown(wait=False)
            _pool = [ThreadPoolExecutor(workers, thread_name_prefix="phidice-ops"), workers]
        return _pool[0]


PIECES_PER_THREAD = 4
MIN_PARALLEL_LOGITS = 1 << 19  # below ~0.7 ms of work, waking a second thread costs more than it saves


def _take(kernel, head, tail, bounds, counter) -> None:
    while (i := next(counter)) < len(bounds) - 1:  # next() on a count is atomic under the GIL
        kernel(*head, bounds[i], bounds[i + 1], *tail)


def _run(kernel, tasks: int, head: tuple, tail: tuple) -> None:
    """kernel(*head, t0, t1, *tail) over tasks [0, tasks) on torch's thread count.

    The tasks are cut into a few pieces per thread that the threads take in turn, so that a thread the
    OS preempts (a shared machine, torch's own threads) delays the call by one piece, not by half of it.
    """
    x = head[0]
    n = max(1, min(torch.get_num_threads(), tasks))
    if n == 1 or x.size < MIN_PARALLEL_LOGITS:
        kernel(*head, 0, tasks, *tail)
        return
    pieces = min(tasks, n * PIECES_PER_THREAD)
    bounds = [tasks * i // pieces for i in range(pieces + 1)]
    counter = itertools.count()
    pool = _executor(n - 1)
    futures = [pool.submit(_take, kernel, head, tail, bounds, counter) for _ in range(n - 1)]
    _take(kernel, head, tail, bounds, counter)
    for f in futures:
        f.result()


def _mask_arg(mask: torch.Tensor | None):
    return None if mask is None else mask.to(torch.float32).contiguous().numpy()


def forward(x, labels, mask, activation):
    """(intersection, pred_sum, target_sum) as float32 (B, C) tensors, and the narrowed labels.

    ValueError (the core's message) when a label lies outside [0, C) ([0, 1] for one sigmoid channel).
    """
    K = kernels()
    B, C, N = x.shape
    blk, chunk = _layout(C, N)
    T = -(-N // chunk)
    out = np.zeros((3, B * T, C), np.float64)
    rng = np.empty((B * T, 2), np.int64)
    narrow = torch.empty((B, N), dtype=torch.uint8 if C <= 256 else torch.int32)
    m = _mask_arg(mask)
    xn, ln, lo = x.detach().numpy(), labels.numpy(), narrow.numpy()
    zero = np.float32(0)
    if activation == "softmax":
        _run(K.softmax_forward, B * T, (xn, ln, m, lo), (chunk, blk, zero, out, rng))
        upper = C
    else:
        _run(K.sigmoid_forward, B * T, (xn, ln, m, lo, int(C == 1)), (chunk, blk, zero, out, rng))
        upper = 2 if C == 1 else C
    check_label_range(labels, upper, lo=int(rng[:, 0].min()), hi=int(rng[:, 1].max()))
    sums = torch.from_numpy(out.reshape(3, B, T, C).sum(2)).to(torch.float32)
    return sums[0], sums[1], sums[2], narrow


def backward(x, narrow, mask, gi, gp, activation):
    K = kernels()
    B, C, N = x.shape
    blk, chunk = _layout(C, N)
    T = -(-N // chunk)
    grad = torch.empty((B, C, N), dtype=torch.float32)
    m = _mask_arg(mask)
    gin = gi.detach().to(torch.float32).contiguous().numpy()
    gpn = gp.detach().to(torch.float32).contiguous().numpy()
    xn, ln, gn = x.detach().numpy(), narrow.numpy(), grad.numpy()
    zero = np.float32(0)
    if activation == "softmax":
        _run(K.softmax_backward, B * T, (xn, ln, m, gin, gpn), (chunk, blk, zero, gn))
    else:
        _run(K.sigmoid_backward, B * T, (xn, ln, m, gin, gpn, int(C == 1)), (chunk, blk, zero, gn))
    return grad
