"""CPU backend: the numba kernels of :mod:`phidice.ops._numba_cpu` on float32 logits.

From C = 4 classes on, the forward pass also writes the labels narrowed to uint8 (int32 beyond 256
classes) and the backward reads those instead of the int64 labels (an eighth of the bytes). Below 4
classes that copy would cost more than 1/16 of the logits' memory, so the int64 labels are re-read.
"""

from __future__ import annotations

import numpy as np
import torch

_kernels = None
_import_error: str | None = None


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
    """Voxels per inner block (the C×blk exponentials stay in L1) and per parallel task."""
    blk = max(16, min(1024, (4096 // C) // 16 * 16))
    chunk = blk * max(1, 16384 // blk)
    return blk, chunk


def _threads():
    import numba

    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _mask_arg(mask: torch.Tensor | None):
    if mask is None:
        return np.ones((1, 1), np.float32), False
    return mask.to(torch.float32).contiguous().numpy(), True


def forward(x, labels, mask, activation):
    """(intersection, pred_sum, target_sum) as float32 (B, C) tensors, and the labels for the backward."""
    K = kernels()
    _threads()
    B, C, N = x.shape
    blk, chunk = _layout(C, N)
    T = -(-N // chunk)
    out = np.zeros((3, B * T, C), np.float64)
    store = C >= 4
    narrow = torch.empty((B, N), dtype=torch.uint8 if C <= 256 else torch.int32) if store else labels
    m, has_mask = _mask_arg(mask)
    xn, ln, lo = x.detach().numpy(), labels.numpy(), narrow.numpy()
    zero = np.float32(0)
    if activation == "softmax":
        K.softmax_forward(xn, ln, m, has_mask, lo, store, chunk, blk, zero, out)
    else:
        K.sigmoid_forward(xn, ln, m, has_mask, lo, store, int(C == 1), chunk, blk, zero, out)
    sums = torch.from_numpy(out.reshape(3, B, T, C).sum(2)).to(torch.float32)
    return sums[0], sums[1], sums[2], narrow


def backward(x, narrow, mask, gi, gp, activation):
    K = kernels()
    _threads()
    B, C, N = x.shape
    blk, chunk = _layout(C, N)
    grad = torch.empty((B, C, N), dtype=torch.float32)
    m, has_mask = _mask_arg(mask)
    gin = gi.detach().to(torch.float32).contiguous().numpy()
    gpn = gp.detach().to(torch.float32).contiguous().numpy()
    xn, ln, gn = x.detach().numpy(), narrow.numpy(), grad.numpy()
    zero = np.float32(0)
    if activation == "softmax":
        K.softmax_backward(xn, ln, m, has_mask, gin, gpn, chunk, blk, zero, gn)
    else:
        K.sigmoid_backward(xn, ln, m, has_mask, gin, gpn, int(C == 1), chunk, blk, zero, gn)
    return grad
