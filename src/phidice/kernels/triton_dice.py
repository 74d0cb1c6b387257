"""GPU backend: a Triton kernel pair for the fused Dice sums (forward) and ∂L/∂logits (backward).

One program handles one image b and a block of BLOCK_N voxels, walking the classes in chunks of
BLOCK_C (an online max/normaliser for the softmax), so any C fits. The forward writes per-block
partial sums (B, blocks, 3, C) that torch adds up in float64 — deterministic, no atomics. The
backward recomputes the softmax and writes m·p_c·(g_c − Σ_k p_k g_k) once. Logits are read in their
own dtype (fp16/bf16/fp32/fp64) and the arithmetic runs in fp32 (fp64 for fp64 logits).

Only long-standing ``tl`` APIs are used so that the kernels run on triton 3.x; on a CPU, with
``TRITON_INTERPRET=1`` set before this module is imported, they run in Triton's interpreter (tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rows(offs_c, N):
    """Element offsets of the class rows (BLOCK_C, 1), in int64: C·N may pass 2^31 in large 3D volumes."""
    return offs_c.to(tl.int64)[:, None] * N


@triton.jit
def _voxel_block(lab_ptr, mask_ptr, N, HAS_MASK: tl.constexpr, ACC: tl.constexpr, BLOCK_N: tl.constexpr):
    """This program's image b, block nb, voxel offsets and validity, labels and mask (1 where no mask)."""
    b = tl.program_id(0).to(tl.int64)
    nb = tl.program_id(1)
    offs_n = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    nmask = offs_n < N
    lab = tl.load(lab_ptr + b * N + offs_n, mask=nmask, other=-1).to(tl.int32)
    if HAS_MASK:
        m = tl.load(mask_ptr + b * N + offs_n, mask=nmask, other=0.0).to(ACC)
    else:
        m = nmask.to(ACC)
    return b, nb, offs_n, nmask, lab, m


@triton.jit
def _load_tile(x_base, offs_c, cmask, offs_n, nmask, N, ACC: tl.constexpr):
    """Logits of one class chunk × voxel block, in ACC, 0 outside the valid classes and voxels."""
    return tl.load(x_base + _rows(offs_c, N) + offs_n[None, :], mask=cmask[:, None] & nmask[None, :], other=0.0).to(ACC)


@triton.jit
def _class_grad(gp_ptr, gi_ptr, b, C, offs_c, cmask, lab, OFFSET: tl.constexpr, ACC: tl.constexpr):
    """g_c = ∂L/∂P[b, c] + ∂L/∂I[b, c]·[y = c + OFFSET] for one class chunk × voxel block."""
    gp = tl.load(gp_ptr + b * C + offs_c, mask=cmask, other=0.0).to(ACC)
    gi = tl.load(gi_ptr + b * C + offs_c, mask=cmask, other=0.0).to(ACC)
    return gp[:, None] + tl.where(lab[None, :] == (offs_c[:, None] + OFFSET), gi[:, None], 0.0)


@triton.jit
def _softmax_stats(
    x_base,
    offs_n,
    nmask,
    C,
    N,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    NUM_CHUNKS: tl.constexpr,
):
    """Per voxel: the max over classes and Σ_c exp(x_c − max), by an online pass over class chunks."""
    mx = tl.full([BLOCK_N], float("-inf"), ACC)
    s = tl.zeros_like(mx)
    for ci in range(NUM_CHUNKS):
        offs_c = ci * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = offs_c < C
        xt = _load_tile(x_base, offs_c, cmask, offs_n, nmask, N, ACC)
        xt = tl.where(cmask[:, None], xt, float("-inf"))
        new_mx = tl.maximum(mx, tl.max(xt, 0))
        s = s * tl.exp(mx - new_mx) + tl.sum(tl.exp(xt - new_mx[None, :]), 0)
        mx = new_mx
    return mx, s


@triton.jit
def _fwd_kernel(
    x_ptr,
    lab_ptr,
    mask_ptr,
    part_ptr,
    C,
    N,
    NB,
    HAS_MASK: tl.constexpr,
    SOFTMAX: tl.constexpr,
    OFFSET: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    NUM_CHUNKS: tl.constexpr,
):
    b, nb, offs_n, nmask, lab, m = _voxel_block(lab_ptr, mask_ptr, N, HAS_MASK, ACC, BLOCK_N)
    x_base = x_ptr + b * C * N
    if SOFTMAX:
        mx, s = _softmax_stats(x_base, offs_n, nmask, C, N, ACC, BLOCK_C, BLOCK_N, NUM_CHUNKS)
        scale = m / s
    out = part_ptr + (b * NB + nb) * 3 * C
    for ci in range(NUM_CHUNKS):
        offs_c = ci * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = offs_c < C
        xt = _load_tile(x_base, offs_c, cmask, offs_n, nmask, N, ACC)
        if SOFTMAX:
            p = tl.exp(xt - mx[None, :]) * scale[None, :]
        else:
            p = tl.sigmoid(xt) * m[None, :]
        p = tl.where(cmask[:, None] & nmask[None, :], p, 0.0)
        hit = lab[None, :] == (offs_c[:, None] + OFFSET)
        tl.store(out + offs_c, tl.sum(tl.where(hit, p, 0.0), 1), mask=cmask)
        tl.store(out + C + offs_c, tl.sum(p, 1), mask=cmask)
        tl.store(out + 2 * C + offs_c, tl.sum(tl.where(hit, m[None, :], 0.0), 1), mask=cmask)


@triton.jit
def _bwd_kernel(
    x_ptr,
    lab_ptr,
    mask_ptr,
    gi_ptr,
    gp_ptr,
    grad_ptr,
    C,
    N,
    HAS_MASK: tl.constexpr,
    SOFTMAX: tl.constexpr,
    OFFSET: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_N: tl.constexpr,
    NUM_CHUNKS: tl.constexpr,
):
    b, nb, offs_n, nmask, lab, m = _voxel_block(lab_ptr, mask_ptr, N, HAS_MASK, ACC, BLOCK_N)
    x_base = x_ptr + b * C * N
    g_base = grad_ptr + b * C * N
    if SOFTMAX:
        mx, s = _softmax_stats(x_base, offs_n, nmask, C, N, ACC, BLOCK_C, BLOCK_N, NUM_CHUNKS)
        inv = 1.0 / s
        dot = tl.zeros_like(inv)
        for ci in range(NUM_CHUNKS):  # Σ_k p_k g_k
            offs_c = ci * BLOCK_C + tl.arange(0, BLOCK_C)
            cmask = offs_c < C
            xt = _load_tile(x_base, offs_c, cmask, offs_n, nmask, N, ACC)
            p = tl.where(cmask[:, None], tl.exp(xt - mx[None, :]) * inv[None, :], 0.0)
            g = _class_grad(gp_ptr, gi_ptr, b, C, offs_c, cmask, lab, OFFSET, ACC)  # OFFSET is 0 with softmax
            dot += tl.sum(p * g, 0)
    for ci in range(NUM_CHUNKS):
        offs_c = ci * BLOCK_C + tl.arange(0, BLOCK_C)
        cmask = offs_c < C
        xt = _load_tile(x_base, offs_c, cmask, offs_n, nmask, N, ACC)
        g = _class_grad(gp_ptr, gi_ptr, b, C, offs_c, cmask, lab, OFFSET, ACC)
        if SOFTMAX:
            p = tl.exp(xt - mx[None, :]) * inv[None, :]
            d = m[None, :] * p * (g - dot[None, :])
        else:
            p = tl.sigmoid(xt)
            d = m[None, :] * g * p * (1.0 - p)
        tl.store(
            g_base + _rows(offs_c, N) + offs_n[None, :],
            d.to(grad_ptr.dtype.element_ty),
            mask=cmask[:, None] & nmask[None, :],
        )


def _config(C: int, dtype: torch.dtype) -> dict:
    block_c = min(triton.next_power_of_2(C), 16)
    block_n = max(64, min(1024, (2048 if dtype == torch.float64 else 4096) // block_c))  # fp64: half, or ~240 registers
    return dict(
        ACC=tl.float64 if dtype == torch.float64 else tl.float32,
        BLOCK_C=block_c,
        BLOCK_N=block_n,
        NUM_CHUNKS=triton.cdiv(C, block_c),
        num_warps=4,
    )


def _mask_arg(mask, x):
    return (mask.contiguous(), True) if mask is not None else (x, False)  # x: an unused valid pointer


def _check_size(N: int) -> None:
    if N >= 2**31:  # voxel offsets within an image are int32 in the kernels
        raise ValueError(f"the Triton kernels take at most 2^31 − 1 voxels per image; got {N}: use fused=False")


def forward(x, labels, mask, activation):
    """(intersection, pred_sum, target_sum) (B, C) for logits x (B, C, N), labels (B, N), mask (B, N)."""
    B, C, N = x.shape
    _check_size(N)
    cfg = _config(C, x.dtype)
    NB = triton.cdiv(N, cfg["BLOCK_N"])
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    part = torch.empty((B, NB, 3, C), dtype=acc_dtype, device=x.device)
    m, has_mask = _mask_arg(mask, x)
    _fwd_kernel[(B, NB)](
        x,
        labels,
        m,
        part,
        C,
        N,
        NB,
        HAS_MASK=has_mask,
        SOFTMAX=activation == "softmax",
        OFFSET=int(activation == "sigmoid" and C == 1),
        **cfg,
    )
    sums = part.sum(1, dtype=torch.float64).to(acc_dtype)
    return sums[:, 0], sums[:, 1], sums[:, 2], labels


def backward(x, labels, mask, gi, gp, activation):
    B, C, N = x.shape
    cfg = _config(C, x.dtype)
    acc_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    grad = torch.empty_like(x)
    m, has_mask = _mask_arg(mask, x)
    gi = gi.to(acc_dtype).contiguous()
    gp = gp.to(acc_dtype).contiguous()
    _bwd_kernel[(B, triton.cdiv(N, cfg["BLOCK_N"]))](
        x,
        labels,
        m,
        gi,
        gp,
        grad,
        C,
        N,
        HAS_MASK=has_mask,
        SOFTMAX=activation == "softmax",
        OFFSET=int(activation == "sigmoid" and C == 1),
        **cfg,
    )
    return grad
