"""CPU backend: the numba kernels of :mod:`phidice.kernels._numba_cpu` on float32 logits.

The forward pass also writes the labels narrowed to uint8 (int32 beyond 256 classes) — at most 1/8 of
the logits' bytes — and the backward reads those instead of the int64 labels. It gets the labels' range
in the same pass and raises the core's out-of-range error itself, so the caller skips its own pass.

Threads: with one torch thread, or under 2^19 logits, the serial kernels run on the calling thread and
no thread pool is touched (numba's OpenMP pool, asked for fewer threads than it owns, stalled 4–8 ms
per call on the loaded machine). Otherwise numba's parallel drivers split the tasks over
``torch.get_num_threads()`` threads; that measured faster than a pool of Python threads around the
nogil kernels (2, 4, 96³ fwd+bwd: 11.2 vs 15.3 ms, 2 threads).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from phidice.core.checks import check_label_range
from phidice.core.rules import label_upper

_kernels = None
_import_error: str | None = None


def kernels():
    """The numba kernels, or None when numba is missing or does not import (reason in ``_import_error``).

    numba that is installed but unusable (built for another NumPy, say) falls back like a missing one; an
    error in phidice's own kernel module is raised, never hidden behind the slower path.
    """
    global _kernels, _import_error
    if _kernels is None and _import_error is None:
        try:
            import numba  # noqa: F401  (optional backend: imported on first use)
        except ImportError as err:
            _import_error = f"{type(err).__name__}: {err} (pip install phidice[numba] for the fused CPU kernel)"
            return None
        from phidice.kernels import _numba_cpu

        _kernels = _numba_cpu
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


PIECES_PER_THREAD = 4
MIN_PARALLEL_LOGITS = 1 << 19  # below ~0.7 ms of work, waking a second thread costs more than it saves
_forked = False


def _mark_forked() -> None:
    global _forked
    _forked = True  # GNU OpenMP (numba's pool) is not fork-safe: a forked child runs the kernels serially


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_mark_forked)


def _run(kernel, tasks: int, head: tuple, tail: tuple) -> None:
    """kernel(*head, t0, t1, *tail) over tasks [0, tasks) on torch's thread count.

    One thread (or a small volume): the serial kernel on the calling thread, no thread pool at all.
    Else numba's parallel driver runs a few task pieces per thread in its OpenMP pool.
    """
    n = max(1, min(torch.get_num_threads(), tasks))
    if n == 1 or _forked or head[0].size < MIN_PARALLEL_LOGITS:
        kernel(*head, 0, tasks, *tail)
        return
    import numba

    n = min(n, numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != n:
        numba.set_num_threads(n)
    pieces = min(tasks, n * PIECES_PER_THREAD)
    bounds = np.array([tasks * i // pieces for i in range(pieces + 1)], np.int64)
    getattr(kernels(), kernel.__name__ + "_par")(*head, bounds, *tail)


def _mask_arg(mask: torch.Tensor | None):
    return None if mask is None else mask.to(torch.float32).contiguous().numpy()


STORES_PROBABILITIES = True  # forward(..., probs=buffer) keeps p for backward_stored


def forward(x, labels, mask, activation, probs=None):
    """(intersection, pred_sum, target_sum) as float32 (B, C) tensors, and the narrowed labels; the probabilities
    into ``probs`` ((B, C, N) float32) when given, for :func:`backward_stored`.

    ValueError (the core's message) when a label lies outside [0, C) ([0, 1] for one sigmoid channel).
    """
    K = kernels()
    B, C, N = x.shape
    blk, chunk = _layout(C, N)
    T = -(-N // chunk)
    out = np.zeros((3, B * T, C), np.float64)
    rng = np.empty((B * T, 2), np.int64)
    narrow = np.empty((B, N), np.uint8 if C <= 256 else np.int32)
    m = _mask_arg(mask)
    xn, ln = x.detach().numpy(), labels.numpy()
    pn = None if probs is None else probs.numpy()
    zero = np.float32(0)
    if activation == "softmax":
        _run(K.softmax_forward, B * T, (xn, ln, m, narrow), (chunk, blk, zero, out, rng, pn))
    else:
        _run(K.sigmoid_forward, B * T, (xn, ln, m, narrow, int(C == 1)), (chunk, blk, zero, out, rng, pn))
    check_label_range(labels, label_upper(C, activation), lo=int(rng[:, 0].min()), hi=int(rng[:, 1].max()))
    sums = out.reshape(3, B, T, C).sum(2).astype(np.float32)  # numpy, not torch ops: this is per-call overhead
    return torch.from_numpy(sums[0]), torch.from_numpy(sums[1]), torch.from_numpy(sums[2]), torch.from_numpy(narrow)


def backward(x, narrow, mask, gi, gp, activation):
    grad = torch.empty(x.shape, dtype=torch.float32)
    _run_backward("backward", x, narrow, mask, gi, gp, activation, (grad.numpy(),))
    return grad


def backward_stored(probs, narrow, mask, gi, gp, activation) -> None:
    """∂L/∂logits written over ``probs``, the probabilities :func:`forward` stored: the activation is not
    recomputed (one exponential per logit in all, where :func:`backward` computes it a second time)."""
    _run_backward("backward_stored", probs, narrow, mask, gi, gp, activation, ())


def _run_backward(kind, first, narrow, mask, gi, gp, activation, tail) -> None:
    """The ``<activation>_<kind>`` kernel over ``first`` ((B, C, N): the logits, or the stored probabilities),
    with the incoming (B, C) gradients gI, gP as float32 and ``tail`` after the layout arguments."""
    K = kernels()
    B, C, N = first.shape
    blk, chunk = _layout(C, N)
    gin = gi.detach().to(torch.float32).contiguous().numpy()
    gpn = gp.detach().to(torch.float32).contiguous().numpy()
    head: tuple = (first.detach().numpy(), narrow.numpy(), _mask_arg(mask), gin, gpn)
    if activation != "softmax":
        head += (int(C == 1),)  # the sigmoid kernels' label offset
    _run(getattr(K, f"{activation}_{kind}"), B * -(-N // chunk), head, (chunk, blk, np.float32(0), *tail))
