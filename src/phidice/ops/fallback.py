"""Pure-PyTorch fused path: the same sums and gradient as the kernels, chunked over the voxels.

Used for float64 and fp16/bf16 on the CPU, on CUDA when Triton is missing, and whenever
``PHIDICE_FUSED_BACKEND=torch``. No one-hot and no softmax of the full volume are ever held: every
temporary is the size of one chunk (about 2^18 logits), and sums accumulate in float64.

Shapes: logits x (B, C, N), labels (B, N) int64, mask (B, N) or None; gI, gP (B, C).
"""

from __future__ import annotations

import torch

_CHUNK_ELEMENTS = 1 << 18


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _steps(x: torch.Tensor):
    B, C, N = x.shape
    step = max(256, _CHUNK_ELEMENTS // (B * C))
    for s in range(0, N, step):
        yield s, min(s + step, N)


def _chunk(x, labels, mask, s, e, dt):
    xc = x[:, :, s:e].to(dt)
    lc = labels[:, s:e]
    mc = None if mask is None else mask[:, s:e].to(dt)
    return xc, lc, mc


def _hit(lc: torch.Tensor, dt) -> torch.Tensor:
    """[y = 1] for one binary sigmoid channel (C = 1), as (B, 1, n)."""
    return (lc == 1).to(dt).unsqueeze(1)


def forward(x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, activation: str):
    """(intersection, pred_sum, target_sum), each (B, C) in float32 (float64 for float64 logits), and labels."""
    B, C, _ = x.shape
    dt = compute_dtype(x.dtype)
    acc = torch.zeros(3, B, C, dtype=torch.float64, device=x.device)
    for s, e in _steps(x):
        xc, lc, mc = _chunk(x, labels, mask, s, e, dt)
        p = torch.softmax(xc, 1) if activation == "softmax" else torch.sigmoid(xc)
        pm = p if mc is None else p * mc.unsqueeze(1)
        acc[1] += pm.sum(-1, dtype=torch.float64)
        if activation == "sigmoid" and C == 1:
            hit = _hit(lc, dt)
            acc[0] += (pm * hit).sum(-1, dtype=torch.float64)
            acc[2] += (hit if mc is None else hit * mc.unsqueeze(1)).sum(-1, dtype=torch.float64)
        else:
            at_label = pm.gather(1, lc.unsqueeze(1)).squeeze(1).double()
            acc[0].scatter_add_(1, lc, at_label)
            weight = torch.ones_like(at_label) if mc is None else mc.double()
            acc[2].scatter_add_(1, lc, weight)
    inter, pred, tgt = acc.to(dt)
    return inter, pred, tgt, labels


def backward(x, labels, mask, gi, gp, activation: str) -> torch.Tensor:
    """∂L/∂x in x's dtype, from ∂L/∂intersection = gI and ∂L/∂pred_sum = gP (both (B, C))."""
    B, C, _ = x.shape
    dt = compute_dtype(x.dtype)
    gi, gp = gi.to(dt), gp.to(dt)
    grad = torch.empty_like(x)
    for s, e in _steps(x):
        xc, lc, mc = _chunk(x, labels, mask, s, e, dt)
        if activation == "softmax":
            p = torch.softmax(xc, 1)
            gl = gi.gather(1, lc)  # gI[b, y]
            pl_gl = p.gather(1, lc.unsqueeze(1)).squeeze(1) * gl  # p_y·gI[b, y]
            dot = (p * gp.unsqueeze(-1)).sum(1) + pl_gl  # Σ_k p_k g_k
            d = p * (gp.unsqueeze(-1) - dot.unsqueeze(1))
            d.scatter_add_(1, lc.unsqueeze(1), pl_gl.unsqueeze(1))  # + p_y·gI[b, y] at c = y
        else:
            p = torch.sigmoid(xc)
            if C == 1:
                hit = _hit(lc, dt)
            else:
                hit = torch.zeros_like(p).scatter_(1, lc.unsqueeze(1), 1.0)
            d = (gp.unsqueeze(-1) + gi.unsqueeze(-1) * hit) * p * (1 - p)
        if mc is not None:
            d = d * mc.unsqueeze(1)
        grad[:, :, s:e] = d.to(x.dtype)
    return grad
