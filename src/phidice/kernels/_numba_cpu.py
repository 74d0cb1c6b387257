"""CPU kernels (numba, ``cache=True``) for the fused, one-hot-free Dice sums and their gradient.

Work is split into tasks of (image b, chunk of voxels); every kernel runs the tasks ``t0 … t1 − 1`` on
the calling thread (no GIL held), and :mod:`phidice.kernels.cpu` spreads task ranges over its threads. Inside
a task the voxels are walked in blocks of ``blk`` so that every inner loop runs over contiguous voxels with no
branch that depends on the data (the label test is a select), and LLVM vectorises it. The exponential is a float32
polynomial 2^k·p(f) — ``np.exp`` does not vectorise here and dominated the time — and float64 keeps the
exact ``math.exp``. Partial sums are kept per block in the input's precision and added into float64
per task, so fp32 results match a float32 reference to ~1e-7.

With a ``probs`` buffer the forwards also write the probabilities (unmasked), and the ``*_backward_stored``
kernels turn that buffer into the gradient in place, with no second exponential; the plain ``*_backward``
kernels recompute the activation from the logits (a second backward, or a caller that kept no buffer).

Shapes: logits x (B, C, N); labels (B, N) int64 in the forward (any value: it is never used as an index,
and its per-task range goes to ``rng`` for the caller to check), the narrowed uint8/int32 copy in the
backward; mask (B, N) of x's dtype, or None (numba then compiles the mask out).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_FM = {"reassoc", "contract", "nsz", "arcp"}  # no nnan/ninf: ±inf logits must stay well defined
_LOG2E = 1.4426950408889634


@intrinsic
def _i32_as_f32(typingctx, x):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return sig, codegen


@intrinsic
def _fmax(typingctx, a, b):
    """llvm.maxnum: max(a, b) as one vector max; NaN loses to a number (a NaN logit still makes its exp NaN).

    Python's ``max`` is a compare-and-select, which LLVM turns into a masked store (vmaskmovps: microcoded
    and slow on AMD) when the result overwrites one of its operands, as the running maximum does.
    """
    if a != b or not isinstance(a, types.Float):
        return None
    sig = a(a, b)

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.return_type)
        fn = builder.module.declare_intrinsic("llvm.maxnum", [ty], ir.FunctionType(ty, [ty, ty]))
        return builder.call(fn, args)

    return sig, codegen


def _exp(x):  # pragma: no cover - replaced by the overload below inside numba
    return math.exp(x)


# 2^f ≈ Σ_k c_k f^k on |f| ≤ 1/2: relative-error minimax fit, 2.3e-7 at most when evaluated in float32
_EXP2_COEFFS = (1.00000007, 0.69314697, 0.2402212, 0.05550713, 0.00967554, 0.00132765)


@overload(_exp, fastmath=_FM)
def _exp_overload(x):
    """exp(x) for x ≤ 0 (every call site: x − max, −|x|); float32 vectorises, float64 is math.exp."""
    if x == types.float32:
        c0, c1, c2, c3, c4, c5 = (np.float32(c) for c in _EXP2_COEFFS)
        lo = np.float32(-125.0)  # 2^-125 ≈ 2e-38: still a normal float, negligible next to the max term
        log2e = np.float32(_LOG2E)
        half = np.float32(0.5)

        zero = np.float32(0.0)

        def impl(x):
            # e^x = 2^t = 2^k·2^f with k = round(t), |f| ≤ 1/2; 2^k built from its exponent bits
            t0 = x * log2e
            t = max(t0, lo)
            k = np.floor(t + half)
            f = t - k
            p = ((((c5 * f + c4) * f + c3) * f + c2) * f + c1) * f + c0
            r = p * _i32_as_f32((np.int32(k) + np.int32(127)) << np.int32(23))
            # below the normal range flush to 0, as expf underflows: a sigmoid of −1e4 is exactly 0 on
            # both paths, so ε = 0 with nothing predicted stays the 0/0 case of the reference path.
            # A NaN x fails the test and keeps its NaN r (max(NaN, lo) is NaN): NaN in, NaN out
            return zero if t0 <= lo else r

        return impl
    return lambda x: math.exp(x)


_JIT = dict(nogil=True, cache=True, fastmath=_FM, error_model="numpy")  # numpy: no ZeroDivision branch
_BIG = np.int64(2**62)


@numba.njit(**_JIT)
def _task(task, T, N, chunk):
    start = (task % T) * chunk
    return task // T, start, min(start + chunk, N)


@numba.njit(**_JIT)
def _load_labels(lab, mask, b, j0, n, lf, mf, lab_out, lo, hi):
    """Labels of the block as float (the class test is then as wide as the data), narrowed into ``lab_out``;
    the mask into ``mf``; returns the running (min, max) of the int64 labels."""
    lr = lab[b, j0 : j0 + n]
    lw = lab_out[b, j0 : j0 + n]
    for j in range(n):
        v = lr[j]
        lo = min(lo, v)
        hi = max(hi, v)
        w = np.int32(v)  # int64 → float/uint8 have no AVX2 instruction; via int32 they vectorise
        lf[j] = w
        lw[j] = w
    if mask is not None:
        mr = mask[b, j0 : j0 + n]
        for j in range(n):
            mf[j] = mr[j]
    return lo, hi


@numba.njit(**_JIT)
def _read_labels(lab, mask, b, j0, n, lf, mf):
    lr = lab[b, j0 : j0 + n]
    for j in range(n):
        lf[j] = lr[j]
    if mask is not None:
        mr = mask[b, j0 : j0 + n]
        for j in range(n):
            mf[j] = mr[j]


@numba.njit(**_JIT)
def _softmax_block(x, b, j0, n, e, s, zero):
    """e[c, j] = exp(x_c − max_k x_k) and s[j] = 1/Σ_c e[c, j] for the voxels j0 … j0 + n − 1."""
    C = x.shape[1]
    x0 = x[b, 0, j0 : j0 + n]
    for j in range(n):
        s[j] = x0[j]  # running max, then the normaliser
    for c in range(1, C):
        xr = x[b, c, j0 : j0 + n]
        for j in range(n):
            s[j] = _fmax(s[j], xr[j])
    for c in range(C):
        xr = x[b, c, j0 : j0 + n]
        er = e[c]
        for j in range(n):
            er[j] = _exp(xr[j] - s[j])
    er = e[0]
    for j in range(n):
        s[j] = er[j]
    for c in range(1, C):
        er = e[c]
        for j in range(n):
            s[j] += er[j]
    for j in range(n):
        s[j] = 1 / s[j]


@numba.njit(**_JIT)
def _pair_block(x, b, j0, n, p0, p1, zero):
    """Two-class softmax with one exponential: p = (1, t)/(1 + t), t = e^(−|x1 − x0|), larger logit first.

    As the softmax of the reference path, a +Inf larger logit gives NaN (∞ − ∞), −Inf a probability of 0."""
    one = zero + np.float32(1)
    inf = zero + np.float32(np.inf)
    nan = zero + np.float32(np.nan)
    x0 = x[b, 0, j0 : j0 + n]
    x1 = x[b, 1, j0 : j0 + n]
    for j in range(n):
        d = x1[j] - x0[j]
        d = d if _fmax(x0[j], x1[j]) < inf else nan  # a select, not mx − mx (which LLVM may fold to 0)
        t = _exp(-abs(d))
        r = one / (one + t)
        q = t * r
        p0[j] = q if d >= zero else r
        p1[j] = r if d >= zero else q


@numba.njit(**_JIT)
def _store(probs, er, s, b, c, j0, n):
    """probs[b, c, j0 : j0 + n] = er·s (er alone when s is None)."""
    pr = probs[b, c, j0 : j0 + n]
    if s is None:
        for j in range(n):
            pr[j] = er[j]
    else:
        for j in range(n):
            pr[j] = er[j] * s[j]


@numba.njit(**_JIT)
def softmax_forward(x, lab, mask, lab_out, t0, t1, chunk, blk, zero, out, rng, probs):
    """out[:, task] (float64) = Σ m·p·[y=c], Σ m·p, Σ m·[y=c] per task (image b, chunk t) for t0 ≤ task < t1;
    the labels narrowed into ``lab_out``; rng[task] = their (min, max); p itself (unmasked) into ``probs``
    (B, C, N) unless it is None (numba then compiles the store out)."""
    B, C, N = x.shape
    T = (N + chunk - 1) // chunk
    one = zero + np.float32(1)
    e = np.empty((C, blk), x.dtype)
    s = np.empty(blk, x.dtype)
    lf = np.empty(blk, x.dtype)
    mf = np.empty(blk, x.dtype)
    for task in range(t0, t1):
        b, start, stop = _task(task, T, N, chunk)
        lo, hi = _BIG, -_BIG
        for j0 in range(start, stop, blk):
            n = min(blk, stop - j0)
            lo, hi = _load_labels(lab, mask, b, j0, n, lf, mf, lab_out, lo, hi)
            if C == 2:  # probabilities in e, s = m (or 1)
                _pair_block(x, b, j0, n, e[0], e[1], zero)
                if probs is not None:
                    for c in range(2):
                        _store(probs, e[c], None, b, c, j0, n)
                for j in range(n):
                    s[j] = mf[j] if mask is not None else one
            else:  # exponentials in e, s = m/Σ e
                _softmax_block(x, b, j0, n, e, s, zero)
                if probs is not None:
                    for c in range(C):
                        _store(probs, e[c], s, b, c, j0, n)
                if mask is not None:
                    for j in range(n):
                        s[j] *= mf[j]
            for c in range(C):
                si = zero
                sp = zero
                st = zero
                er = e[c]
                cf = zero + np.float32(c)  # float32 + int64 would be float64
                for j in range(n):
                    p = er[j] * s[j]
                    hit = lf[j] == cf
                    sp += p
                    si += p if hit else zero
                    if mask is not None:
                        st += mf[j] if hit else zero
                    else:
                        st += one if hit else zero
                out[0, task, c] += si
                out[1, task, c] += sp
                out[2, task, c] += st
        rng[task, 0] = lo
        rng[task, 1] = hi


@numba.njit(**_JIT)
def softmax_backward(x, lab, mask, gi, gp, t0, t1, chunk, blk, zero, grad):
    """grad[b, c] = m·p_c·(g_c − Σ_k p_k g_k), g_c = gP[b, c] + gI[b, c]·[y = c]; for two classes this is
    ±m·p_0·p_1·(g_0 − g_1)."""
    B, C, N = x.shape
    T = (N + chunk - 1) // chunk
    e = np.empty((C, blk), x.dtype)
    s = np.empty(blk, x.dtype)
    lf = np.empty(blk, x.dtype)
    mf = np.empty(blk, x.dtype)
    dot = np.empty(blk, x.dtype)
    for task in range(t0, t1):
        b, start, stop = _task(task, T, N, chunk)
        for j0 in range(start, stop, blk):
            n = min(blk, stop - j0)
            _read_labels(lab, mask, b, j0, n, lf, mf)
            if C == 2:
                _pair_block(x, b, j0, n, e[0], e[1], zero)
                p0 = e[0]
                p1 = e[1]
                g0 = grad[b, 0, j0 : j0 + n]
                g1 = grad[b, 1, j0 : j0 + n]
                a0 = gp[b, 0]
                a1 = gp[b, 1]
                i0 = gi[b, 0]
                i1 = gi[b, 1]
                one = zero + np.float32(1)
                d0 = (a0 - a1) + i0  # g_0 − g_1 where y = 0
                d1 = (a0 - a1) - i1  # … and where y = 1
                for j in range(n):
                    q = p0[j] * p1[j] * (d1 if lf[j] == one else d0)
                    if mask is not None:
                        q *= mf[j]
                    g0[j] = q
                    g1[j] = -q
                continue
            _softmax_block(x, b, j0, n, e, s, zero)
            for j in range(n):
                dot[j] = zero
            for c in range(C):  # Σ_k e_k g_k, normalised below
                gpc = gp[b, c]
                gic = gi[b, c]
                cf = zero + np.float32(c)  # float32 + int64 would be float64
                er = e[c]
                for j in range(n):
                    dot[j] += er[j] * (gpc + (gic if lf[j] == cf else zero))
            for j in range(n):
                dot[j] *= s[j]
                if mask is not None:
                    s[j] *= mf[j]
            for c in range(C):
                gpc = gp[b, c]
                gic = gi[b, c]
                cf = zero + np.float32(c)  # float32 + int64 would be float64
                er = e[c]
                gr = grad[b, c, j0 : j0 + n]
                for j in range(n):
                    g = gpc + (gic if lf[j] == cf else zero)
                    gr[j] = s[j] * er[j] * (g - dot[j])


@numba.njit(**_JIT)
def sigmoid_forward(x, lab, mask, lab_out, offset, t0, t1, chunk, blk, zero, out, rng, probs):
    """Per-channel sigmoid; channel c's target is [y = c + offset] (offset 1 for one binary channel); p (unmasked)
    into ``probs`` unless it is None."""
    B, C, N = x.shape
    T = (N + chunk - 1) // chunk
    one = zero + np.float32(1)
    lf = np.empty(blk, x.dtype)
    mf = np.empty(blk, x.dtype)
    for task in range(t0, t1):
        b, start, stop = _task(task, T, N, chunk)
        lo, hi = _BIG, -_BIG
        for j0 in range(start, stop, blk):
            n = min(blk, stop - j0)
            lo, hi = _load_labels(lab, mask, b, j0, n, lf, mf, lab_out, lo, hi)
            for c in range(C):
                si = zero
                sp = zero
                st = zero
                cf = zero + np.float32(c + offset)
                xr = x[b, c, j0 : j0 + n]
                pr = probs[b, c, j0 : j0 + n] if probs is not None else xr
                for j in range(n):
                    v = xr[j]
                    t = _exp(-abs(v))
                    r = one / (one + t)
                    p = r if v >= zero else t * r
                    if probs is not None:
                        pr[j] = p
                    w = one
                    if mask is not None:
                        w = mf[j]
                        p *= w
                    hit = lf[j] == cf
                    sp += p
                    si += p if hit else zero
                    st += w if hit else zero
                out[0, task, c] += si
                out[1, task, c] += sp
                out[2, task, c] += st
        rng[task, 0] = lo
        rng[task, 1] = hi


@numba.njit(**_JIT)
def sigmoid_backward(x, lab, mask, gi, gp, offset, t0, t1, chunk, blk, zero, grad):
    """grad = m·(gP + gI·[y = c + offset])·p·(1 − p), with p(1 − p) = t/(1 + t)², t = e^(−|x|)."""
    B, C, N = x.shape
    T = (N + chunk - 1) // chunk
    one = zero + np.float32(1)
    lf = np.empty(blk, x.dtype)
    mf = np.empty(blk, x.dtype)
    for task in range(t0, t1):
        b, start, stop = _task(task, T, N, chunk)
        for j0 in range(start, stop, blk):
            n = min(blk, stop - j0)
            _read_labels(lab, mask, b, j0, n, lf, mf)
            for c in range(C):
                gpc = gp[b, c]
                gic = gi[b, c]
                cf = zero + np.float32(c + offset)
                xr = x[b, c, j0 : j0 + n]
                gr = grad[b, c, j0 : j0 + n]
                for j in range(n):
                    t = _exp(-abs(xr[j]))
                    r = one / (one + t)
                    g = gpc + (gic if lf[j] == cf else zero)
                    if mask is not None:
                        g *= mf[j]
                    gr[j] = g * t * r * r


@numba.njit(**_JIT)
def softmax_backward_stored(pg, lab, mask, gi, gp, t0, t1, chunk, blk, zero):
    """The softmax gradient of :func:`softmax_backward` from the probabilities the forward stored in ``pg``,
    written over them: no exponential is recomputed, and the buffer becomes the gradient."""
    B, C, N = pg.shape
    T = (N + chunk - 1) // chunk
    lf = np.empty(blk, pg.dtype)
    mf = np.empty(blk, pg.dtype)
    dot = np.empty(blk, pg.dtype)
    for task in range(t0, t1):
        b, start, stop = _task(task, T, N, chunk)
        for j0 in range(start, stop, blk):
            n = min(blk, stop - j0)
            _read_labels(lab, mask, b, j0, n, lf, mf)
            for j in range(n):
                dot[j] = zero
            for c in range(C):  # Σ_k p_k g_k
                gpc = gp[b, c]
                gic = gi[b, c]
                cf = zero + np.float32(c)
                pr = pg[b, c, j0 : j0 + n]
                for j in range(n):
                    dot[j] += pr[j] * (gpc + (gic if lf[j] == cf else zero))
            for c in range(C):
                gpc = gp[b, c]
                gic = gi[b, c]
                cf = zero + np.float32(c)
                pr = pg[b, c, j0 : j0 + n]
                for j in range(n):
                    g = gpc + (gic if lf[j] == cf else zero)
                    q = pr[j] * (g - dot[j])
                    if mask is not None:
                        q *= mf[j]
                    pr[j] = q


@numba.njit(**_JIT)
def sigmoid_backward_stored(pg, lab, mask, gi, gp, offset, t0, t1, chunk, blk, zero):
    """grad = m·(gP + gI·[y = c + offset])·p·(1 − p) from the stored p in ``pg``, written over it."""
    B, C, N = pg.shape
    T = (N + chunk - 1) // chunk
    one = zero + np.float32(1)
    lf = np.empty(blk, pg.dtype)
    mf = np.empty(blk, pg.dtype)
    for task in range(t0, t1):
        b, start, stop = _task(task, T, N, chunk)
        for j0 in range(start, stop, blk):
            n = min(blk, stop - j0)
            _read_labels(lab, mask, b, j0, n, lf, mf)
            for c in range(C):
                gpc = gp[b, c]
                gic = gi[b, c]
                cf = zero + np.float32(c + offset)
                pr = pg[b, c, j0 : j0 + n]
                for j in range(n):
                    p = pr[j]
                    g = gpc + (gic if lf[j] == cf else zero)
                    if mask is not None:
                        g *= mf[j]
                    pr[j] = g * p * (one - p)


# Parallel drivers: numba's thread pool runs the task pieces [bounds[i], bounds[i + 1]) of a serial kernel.


@numba.njit(parallel=True, **_JIT)
def softmax_forward_par(x, lab, mask, lab_out, bounds, chunk, blk, zero, out, rng, probs):
    for i in numba.prange(len(bounds) - 1):
        softmax_forward(x, lab, mask, lab_out, bounds[i], bounds[i + 1], chunk, blk, zero, out, rng, probs)


@numba.njit(parallel=True, **_JIT)
def softmax_backward_par(x, lab, mask, gi, gp, bounds, chunk, blk, zero, grad):
    for i in numba.prange(len(bounds) - 1):
        softmax_backward(x, lab, mask, gi, gp, bounds[i], bounds[i + 1], chunk, blk, zero, grad)


@numba.njit(parallel=True, **_JIT)
def sigmoid_forward_par(x, lab, mask, lab_out, offset, bounds, chunk, blk, zero, out, rng, probs):
    for i in numba.prange(len(bounds) - 1):
        sigmoid_forward(x, lab, mask, lab_out, offset, bounds[i], bounds[i + 1], chunk, blk, zero, out, rng, probs)


@numba.njit(parallel=True, **_JIT)
def sigmoid_backward_par(x, lab, mask, gi, gp, offset, bounds, chunk, blk, zero, grad):
    for i in numba.prange(len(bounds) - 1):
        sigmoid_backward(x, lab, mask, gi, gp, offset, bounds[i], bounds[i + 1], chunk, blk, zero, grad)


@numba.njit(parallel=True, **_JIT)
def softmax_backward_stored_par(pg, lab, mask, gi, gp, bounds, chunk, blk, zero):
    for i in numba.prange(len(bounds) - 1):
        softmax_backward_stored(pg, lab, mask, gi, gp, bounds[i], bounds[i + 1], chunk, blk, zero)


@numba.njit(parallel=True, **_JIT)
def sigmoid_backward_stored_par(pg, lab, mask, gi, gp, offset, bounds, chunk, blk, zero):
    for i in numba.prange(len(bounds) - 1):
        sigmoid_backward_stored(pg, lab, mask, gi, gp, offset, bounds[i], bounds[i + 1], chunk, blk, zero)
