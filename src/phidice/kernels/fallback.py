"""Pure-PyTorch fused path: the same sums and gradient as the kernels, in a few large PyTorch ops.

Used without numba (float32 on the CPU of the base install), for float64 and fp16/bf16 on the CPU, on CUDA
when Triton is missing, and whenever ``PHIDICE_FUSED_BACKEND=torch``. No one-hot and no softmax of the full
volume are ever held: the voxels are walked in a few chunks (whole images where they fit) of at most a quarter
of the logits, so the extra memory is the gradient plus about 0.25× the logits.

Why few chunks: every PyTorch op is one parallel region of torch's thread pool, and each region ends in a
barrier. On a loaded machine a barrier waits for a descheduled thread, so the time grows with the number of
ops, not with their size: the earlier version (chunks of 2^18 logits, ~15 ops each) ran ~800 regions per
forward+backward at (2, 4, 96³) and took 60 ms on one thread but 1.1 s on two at a load of 8 on 2 cores,
where MONAI's ~20 regions took 155 ms. Each chunk here is 4–6 ops forward and 6–8 backward.

Sums: per chunk in the compute dtype (torch's cascade summation), added in float64 across chunks; the
intersection goes through a float64 ``scatter_add`` of the probability at the label.

Shapes: logits x (B, C, N), labels (B, N) int64, mask (B, N) or None; gI, gP (B, C).
"""

from __future__ import annotations

import torch

MIN_CHUNK_ELEMENTS = 1 << 20  # below this, one chunk: the memory saved is not worth another ~10 ops
CHUNK_FRACTION = 4  # otherwise chunks of at most 1/4 of the logits


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _chunks(x: torch.Tensor):
    """(b0, b1, s, e): image ranges when whole images fit a chunk (contiguous slices), else voxel ranges."""
    B, C, N = x.shape
    budget = max(MIN_CHUNK_ELEMENTS, -(-x.numel() // CHUNK_FRACTION))
    if C * N <= budget:
        per = max(1, budget // (C * N))
        for b in range(0, B, per):
            yield b, min(b + per, B), 0, N
        return
    step = max(1, budget // C)
    for b in range(B):
        for s in range(0, N, step):
            yield b, b + 1, s, min(s + step, N)


def _activate(xc: torch.Tensor, activation: str, dt) -> torch.Tensor:
    if activation == "softmax":
        return torch.softmax(xc, 1, dtype=dt)
    return torch.sigmoid(xc.to(dt))


def forward(x: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None, activation: str):
    """(intersection, pred_sum, target_sum), each (B, C) in float32 (float64 for float64 logits), and labels."""
    B, C, _ = x.shape
    dt = compute_dtype(x.dtype)
    acc = torch.zeros(3, B, C, dtype=torch.float64, device=x.device)
    binary = activation == "sigmoid" and C == 1  # one channel: its target is [y = 1]
    for b0, b1, s, e in _chunks(x):
        lc = labels[b0:b1, s:e]
        mc = None if mask is None else mask[b0:b1, s:e].to(dt)
        p = _activate(x[b0:b1, :, s:e], activation, dt)
        if mc is not None:
            p.mul_(mc.unsqueeze(1))
        acc[1, b0:b1] += p.sum(-1)
        if binary:
            hit = (lc == 1).to(dt)
            acc[0, b0:b1, 0] += (p[:, 0] * hit).sum(-1)
            acc[2, b0:b1, 0] += (hit if mc is None else hit * mc).sum(-1)
            continue
        at_label = p.gather(1, lc.unsqueeze(1)).squeeze(1).double()
        acc[0, b0:b1].scatter_add_(1, lc, at_label)
        weight = torch.ones((), dtype=torch.float64, device=x.device).expand_as(lc) if mc is None else mc.double()
        acc[2, b0:b1].scatter_add_(1, lc, weight)
    inter, pred, tgt = acc.to(dt)
    return inter, pred, tgt, labels


def backward(x, labels, mask, gi, gp, activation: str) -> torch.Tensor:
    """∂L/∂x in x's dtype, from ∂L/∂intersection = gI and ∂L/∂pred_sum = gP (both (B, C))."""
    B, C, _ = x.shape
    dt = compute_dtype(x.dtype)
    gi, gp = gi.to(dt), gp.to(dt)
    grad = torch.empty_like(x)
    # float32/float64: each chunk's gradient is written straight into ``grad`` (out= ops); not under grad mode
    # (create_graph=True), where autograd must record the ops and refuses out= on inputs that require grad
    direct = x.dtype == dt and not torch.is_grad_enabled()
    offset = int(activation == "sigmoid" and C == 1)  # one sigmoid channel scores [y = 1]
    for b0, b1, s, e in _chunks(x):
        lc = labels[b0:b1, s:e]
        mc = None if mask is None else mask[b0:b1, s:e].to(dt)
        out = grad[b0:b1, :, s:e] if direct else None
        d = _chunk_grad(x[b0:b1, :, s:e], lc, mc, gi[b0:b1], gp[b0:b1], activation, offset, dt, out)
        if not direct:
            grad[b0:b1, :, s:e] = d
    return grad


def _chunk_grad(xc, lc, mc, gi, gp, activation, offset, dt, out):
    """One chunk of ∂L/∂x (written into ``out`` when given): g_c = gP_c + gI_c·[y = c + offset];
    softmax m·p_c·(g_c − Σ_k p_k g_k), sigmoid m·g_c·p_c·(1 − p_c)."""
    p = _activate(xc, activation, dt)
    if offset:  # one sigmoid channel: g = gP + gI·[y = 1]
        g = gp.unsqueeze(-1) + gi.unsqueeze(-1) * (lc == 1).to(dt).unsqueeze(1)
        d = torch.ops.aten.sigmoid_backward(g, p) if out is None else torch.mul(g, p, out=out).mul_(1 - p)
    else:
        idx = lc.unsqueeze(1)
        at_label = p.gather(1, idx)  # p_y, (b, 1, n)
        at_label.mul_(gi.gather(1, lc).unsqueeze(1))  # p_y·gI[b, y]
        if activation == "softmax":
            dot = torch.bmm(gp.unsqueeze(1), p).add_(at_label)  # Σ_k p_k g_k, (b, 1, n)
            d = torch.sub(gp.unsqueeze(-1), dot, out=out) if out is not None else gp.unsqueeze(-1) - dot
            d.mul_(p).scatter_add_(1, idx, at_label)  # + p_y·gI[b, y] at c = y
        else:
            d = torch.ops.aten.sigmoid_backward(gp.unsqueeze(-1).expand_as(p), p)
            d = d if out is None else out.copy_(d)
            d.scatter_add_(1, idx, at_label.mul_(1 - p.gather(1, idx)))  # + gI_y·p_y(1 − p_y) at c = y
    if mc is not None:
        d.mul_(mc.unsqueeze(1))
    return d
