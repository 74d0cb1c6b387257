"""The fused path (``fused=True``) against the dense reference path (``fused=False``) of the core.

Both the numba CPU kernel and the chunked PyTorch fallback are run; float32 must agree to 1e-5
relative (loss and gradient), float64 to 1e-10.
"""

from __future__ import annotations

import pytest
import torch

import phidice
from phidice import kernels
from phidice.kernels import cpu, fallback
from phidice.kernels.function import FusedDiceStats

BACKENDS = ["numba", "torch"]


@pytest.fixture(params=BACKENDS)
def backend(request):
    if request.param == "numba" and not cpu.available():
        pytest.skip(f"numba kernels unavailable: {cpu._import_error}")
    previous = kernels.set_backend(request.param)
    yield request.param
    kernels.set_backend(previous)


def _dtype(backend):
    return [torch.float32] if backend == "numba" else [torch.float32, torch.float64]


def _tol(dtype):
    return 1e-5 if dtype == torch.float32 else 1e-10


def _compare(x, y, dtype, **kw):
    """Loss and ∂L/∂x of both paths; asserts the relative agreement for ``dtype``."""
    x = x.to(dtype).requires_grad_()
    l1 = phidice.dice_loss(x, y, fused=True, **kw)
    l0 = phidice.dice_loss(x, y, fused=False, **kw)
    g1 = torch.autograd.grad(l1.sum(), x)[0]
    g0 = torch.autograd.grad(l0.sum(), x)[0]
    tol = _tol(dtype)
    assert torch.isfinite(l1).all() and torch.isfinite(g1).all()
    torch.testing.assert_close(l1, l0, rtol=tol, atol=tol * float(l0.detach().abs().max().clamp_min(1e-3)))
    torch.testing.assert_close(g1, g0, rtol=tol, atol=tol * float(g0.abs().max().clamp_min(1e-12)))
    assert g1.dtype == x.dtype


SHAPES = [(2, 4, (7, 9, 5)), (1, 3, (33, 17)), (3, 5, (101,)), (2, 2, (19, 23))]  # C = 2 has its own kernel


@pytest.mark.parametrize("phi", ["I", "CI", "BI", "BCI"])
@pytest.mark.parametrize("B,C,spatial", SHAPES)
def test_softmax_all_phi(backend, phi, B, C, spatial):
    x = torch.randn(B, C, *spatial) * 3
    y = torch.randint(0, C, (B, *spatial))
    for dtype in _dtype(backend):
        _compare(x, y, dtype, phi=phi)


@pytest.mark.parametrize("phi", ["I", "BCI"])
@pytest.mark.parametrize("C", [1, 3])
def test_sigmoid(backend, phi, C):
    x = torch.randn(2, C, 11, 13) * 2
    y = torch.randint(0, 2 if C == 1 else C, (2, 11, 13))
    for dtype in _dtype(backend):
        _compare(x, y, dtype, phi=phi, activation="sigmoid")


@pytest.mark.parametrize("phi", ["I", "CI", "BI", "BCI"])
def test_options(backend, phi):
    """Per-class ε, class weights, ignore_index, mask, no background, empty='skip', reduction='none'."""
    B, C, S = 2, 4, (6, 7, 5)
    x = torch.randn(B, C, *S) * 2
    y = torch.randint(0, C, (B, *S))
    y[0, :2] = 255  # ignored voxels
    y[1][y[1] == 2] = 0  # class 2 empty in image 1
    mask = (torch.rand(B, 1, *S) > 0.3).float() * torch.rand(B, 1, *S)
    for dtype in _dtype(backend):
        _compare(
            x,
            y,
            dtype,
            phi=phi,
            eps=[1e-5, 2.0, 0.5, 1.0],
            class_weights=[0.0, 1.0, 2.0, 0.5],
            ignore_index=255,
            mask=mask,
            include_background=False,
        )
        _compare(x, y, dtype, phi=phi, empty="skip", reduction="none", ignore_index=255)
        if phi in ("CI", "BCI"):
            _compare(x, y, dtype, phi=phi, weighting="generalized", eps_nr=0.0, eps_dr=1e-3, ignore_index=255)


def test_two_classes_with_mask_and_extremes(backend):
    """The two-class softmax kernel (one exponential per voxel): masks, ignore_index, ±1e4 logits, empty maps."""
    B, C, S = 3, 2, (9, 14)
    x = torch.randn(B, C, *S) * 3
    x[0, :, :3] = torch.randint(-1, 2, (C, 3, 14)).float() * 1e4
    y = torch.randint(0, C, (B, *S))
    y[1] = 0  # foreground empty in image 1
    y[2, :2] = 255
    mask = torch.rand(B, 1, *S)
    for phi in ("I", "CI", "BI", "BCI"):
        _compare(x, y, torch.float32, phi=phi, mask=mask, ignore_index=255, eps=[1e-5, 0.5])
        _compare(x, y.clamp_max(1), torch.float32, phi=phi, include_background=False)


@pytest.mark.parametrize("bad", [-1, 4, 2**40, -(2**40)])
def test_labels_out_of_range(backend, bad):
    """The fused path raises the core's error for labels outside [0, C), also where int32 would wrap."""
    x = torch.randn(2, 4, 5, 6, requires_grad=True)
    y = torch.randint(0, 4, (2, 5, 6))
    y[1, 3, 2] = bad
    lo, hi = min(0, bad), max(3, bad)
    with pytest.raises(ValueError, match=rf"target labels must lie in \[0, 3\]; got values in \[{lo}, {hi}\]"):
        phidice.dice_loss(x, y, fused=True)
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 1\]"):
        phidice.dice_loss(x[:, :1], y, activation="sigmoid", fused=True)
    y[1, 3, 2] = 1
    _compare(x.detach(), y, torch.float32)  # nothing stale after the error


@pytest.mark.parametrize("threads", [1, 2])
def test_multi_task_layout(backend, threads, monkeypatch):
    """Volumes spanning several tasks and inner blocks, sizes not multiples of either, on 1 and 2 threads."""
    monkeypatch.setattr(cpu, "MIN_PARALLEL_LOGITS", 0)  # thread even this small volume
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for C in (2, 3):
            B, N = 2, 3 * 16384 + 37
            x = torch.randn(B, C, N) * 4
            y = torch.randint(0, C, (B, N))
            _compare(x, y, torch.float32, phi="I", mask=torch.rand(B, 1, N))
            _compare(x, y, torch.float32, phi="BCI", activation="sigmoid")
    finally:
        torch.set_num_threads(previous)


def test_many_classes_wide_labels(backend):
    """C > 256: the narrowed labels kept for the backward are int32 instead of uint8."""
    C = 300
    x = torch.randn(1, C, 40) * 2
    y = torch.randint(0, C, (1, 40))
    y[0, 0] = C - 1
    _compare(x, y, torch.float32, phi="I")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs(dtype):
    """Half logits go through the fallback, accumulate in fp32 and give half gradients close to fp32."""
    x = torch.randn(2, 3, 9, 8) * 2
    y = torch.randint(0, 3, (2, 9, 8))
    xh = x.to(dtype).requires_grad_()
    l1 = phidice.dice_loss(xh, y, fused=True)
    l0 = phidice.dice_loss(xh, y, fused=False)
    g1 = torch.autograd.grad(l1, xh)[0]
    g0 = torch.autograd.grad(l0, xh)[0]
    assert l1.dtype == l0.dtype and g1.dtype == dtype
    torch.testing.assert_close(l1, l0, rtol=1e-5, atol=1e-6)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(g1.float(), g0.float(), rtol=2 * eps, atol=2 * eps * float(g0.abs().max()))


def test_extreme_logits_and_empty_maps(backend):
    C = 4
    x = torch.randint(-1, 2, (2, C, 10, 10)).float() * 1e4
    y = torch.zeros(2, 10, 10, dtype=torch.long)  # only background: every foreground map empty
    for phi in ("I", "BCI"):
        _compare(x, y, torch.float32, phi=phi)
        _compare(x, y, torch.float32, phi=phi, include_background=False)
    xs = torch.randint(-1, 2, (2, 1, 10, 10)).float() * 1e4
    _compare(xs, y, torch.float32, activation="sigmoid")  # empty binary target
    _compare(xs, torch.ones_like(y), torch.float32, activation="sigmoid")


def test_minus_inf_logits_and_max_in_any_channel(backend):
    """−inf logits (a class switched off) give probability 0 on both paths, and the softmax's running
    maximum is right wherever it lies: first, middle or last channel, or tied."""
    C, N = 5, 40
    x = torch.randn(2, C, N)
    for c in range(C):  # voxel block c has its maximum in channel c, by a wide margin
        x[:, c, c * 8 : (c + 1) * 8] += 1000.0 * (c + 1)  # far beyond exp's float32 range
    x[0, 3] = float("-inf")
    x[1, :, :4] = 7.0  # ties across all channels
    y = torch.randint(0, C, (2, N))
    y[0][y[0] == 3] = 0
    for phi in ("I", "BCI"):
        _compare(x, y, torch.float32, phi=phi)


def test_all_voxels_ignored(backend):
    x = torch.randn(1, 3, 5, 5)
    y = torch.full((1, 5, 5), 255)
    _compare(x, y, torch.float32, ignore_index=255)


def test_gradcheck_float64():
    """The autograd Function itself (torch fallback backend, float64) with random incoming gradients."""
    for activation, C in (("softmax", 3), ("sigmoid", 1), ("sigmoid", 2)):
        x = torch.randn(2, C, 7, dtype=torch.float64, requires_grad=True)
        y = torch.randint(0, 2 if C == 1 else C, (2, 7))
        m = torch.rand(2, 7, dtype=torch.float64)
        for mask in (None, m):
            assert torch.autograd.gradcheck(
                lambda z: FusedDiceStats.apply(z, y, mask, activation, fallback)[:2], (x,), eps=1e-6, atol=1e-8
            )


@pytest.mark.skipif(not cpu.available(), reason="numba kernels unavailable")
def test_numba_backward_matches_fallback():
    """The numba backward against the fallback for random (non-loss) incoming gradients gI, gP."""
    for activation, C in (("softmax", 5), ("softmax", 2), ("sigmoid", 1), ("sigmoid", 3)):
        x = torch.randn(2, C, 2000) * 3
        y = torch.randint(0, 2 if C == 1 else C, (2, 2000))
        m = torch.rand(2, 2000)
        gi, gp = torch.randn(2, C), torch.randn(2, C)
        for mask in (None, m):
            *sums, narrow = cpu.forward(x, y, mask, activation)
            *ref, _ = fallback.forward(x, y, mask, activation)
            for a, r in zip(sums, ref):
                torch.testing.assert_close(a, r, rtol=1e-6, atol=1e-4)
            ga = cpu.backward(x, narrow, mask, gi, gp, activation)
            gr = fallback.backward(x.double(), y, None if mask is None else mask.double(), gi, gp, activation)
            torch.testing.assert_close(ga.double(), gr, rtol=0, atol=2e-6 * float(gr.abs().max()))


def test_saves_no_one_hot_or_probabilities():
    """Autograd keeps only the logits (not a copy), the narrowed labels and the mask — no (B, C, *S) temporary."""
    B, C, S = 2, 2, (16, 16, 8)
    x = torch.randn(B, C, *S, requires_grad=True)
    y = torch.randint(0, C, (B, *S))
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        phidice.dice_loss(x, y, fused=True)
    big = [t for t in saved if t.numel() >= x.numel()]
    assert all(t.data_ptr() == x.data_ptr() for t in big), [tuple(t.shape) for t in big]
    extra = sum(t.numel() * t.element_size() for t in saved if t.data_ptr() != x.data_ptr())
    assert extra <= B * x[0, 0].numel() + 1024  # at most one uint8 label map


def test_torch_compile_does_not_crash():
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    y = torch.randint(0, 3, (1, 4, 4))
    fn = torch.compile(lambda a, b: phidice.dice_loss(a, b, phi="BCI"), backend="aot_eager")
    loss = fn(x, y)
    loss.backward()
    ref = phidice.dice_loss(x.detach(), y, phi="BCI", fused=False)
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-6)
    assert torch.isfinite(x.grad).all()


def test_double_backward_equals_the_reference_path(backend):
    """create_graph=True gives a gradient that autograd differentiates again — the same second derivative as the
    reference path, never zeros (once_differentiable's error node was detached: a Hessian read 0)."""
    x = torch.randn(2, 3, 6, 5, requires_grad=True)
    y = torch.randint(0, 3, (2, 6, 5))
    grads = []
    for fused in (True, False):
        (g,) = torch.autograd.grad(phidice.dice_loss(x, y, phi="BI", fused=fused), x, create_graph=True)
        grads.append((g.detach(), torch.autograd.grad((g * g).sum(), x)[0]))
    (g1, gg1), (g0, gg0) = grads
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-7)
    assert gg0.abs().max() > 0
    torch.testing.assert_close(gg1, gg0, rtol=1e-4, atol=1e-4 * float(gg0.abs().max()))


def test_channels_last_logits(backend):
    """Logits in channels_last_3d order are copied to (B, C, voxels) first and give the same numbers."""
    x = torch.randn(2, 3, 5, 6, 7).to(memory_format=torch.channels_last_3d)
    y = torch.randint(0, 3, (2, 5, 6, 7))
    assert not x.is_contiguous()
    _compare(x, y, torch.float32, phi="BI")


@pytest.mark.parametrize("phi", ["I", "CI", "BI", "BCI"])
def test_fused_backward_receives_eq4(backend, phi, monkeypatch):
    """What the fused kernels' backward gets, ∂L/∂I and ∂L/∂P per (b, c), are Eq. 4's two values (g1 − g0, g0)
    from the same Eq. 3 steps (phidice.equations), as dice_gradient computes them in closed form."""
    from phidice.losses.gradient import dice_gradient

    x = torch.randn(3, 4, 6, 5) * 2
    y = torch.randint(0, 4, (3, 6, 5))
    seen = {}
    apply = FusedDiceStats.apply

    def spy(*args):
        inter, pred, tgt = apply(*args)
        inter.register_hook(lambda g: seen.__setitem__("dI", g))
        pred.register_hook(lambda g: seen.__setitem__("dP", g))
        return inter, pred, tgt

    monkeypatch.setattr(FusedDiceStats, "apply", spy)
    options = dict(phi=phi, eps=[0.5, 1.0, 2.0, 3.0], class_weights=[1.0, 2.0, 1.0, 0.5])
    phidice.dice_loss(x.requires_grad_(), y, fused=True, **options).backward()
    ref = dice_gradient(torch.softmax(x.detach(), 1), y, **options)
    torch.testing.assert_close(seen["dP"], ref.g0.float(), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(seen["dI"], (ref.g1 - ref.g0).float(), rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("min_chunk,fraction", [(1, 16), (1, 2), (10_000, 4)])  # voxel ranges, 2 images, 1 chunk
@pytest.mark.parametrize("activation,C", [("softmax", 4), ("softmax", 2), ("sigmoid", 1), ("sigmoid", 3)])
def test_torch_path_chunks(monkeypatch, min_chunk, fraction, activation, C):
    """The PyTorch path walks its chunks (image ranges, or voxel ranges within an image) to the same sums and
    gradient as one chunk, in float64, float32 and bf16 (whose gradient is written through a float32 chunk)."""
    monkeypatch.setattr(fallback, "MIN_CHUNK_ELEMENTS", min_chunk)
    monkeypatch.setattr(fallback, "CHUNK_FRACTION", fraction)
    previous = kernels.set_backend("torch")
    try:
        x = torch.randn(4, C, 7, 9) * 2
        y = torch.randint(0, 2 if C == 1 else C, (4, 7, 9))
        chunks = list(fallback._chunks(x.reshape(4, C, -1)))
        if fraction == 16:  # parts of one image each, covering every voxel once
            assert all(b1 == b0 + 1 and e - s < 63 for b0, b1, s, e in chunks) and len(chunks) > 4
            assert sum(e - s for *_, s, e in chunks) == 4 * 63
        else:
            assert [(b0, b1) for b0, b1, *_ in chunks] == ([(0, 2), (2, 4)] if fraction == 2 else [(0, 4)])
        mask = torch.rand(4, 1, 7, 9)
        for dtype in (torch.float64, torch.float32):
            _compare(x, y, dtype, phi="BI", activation=activation, mask=mask)
            _compare(x, y, dtype, phi="I", activation=activation)
        xb = x.detach().to(torch.bfloat16).requires_grad_()
        phidice.dice_loss(xb, y, activation=activation, fused=True).backward()
        ref = torch.autograd.grad(phidice.dice_loss(xb.float(), y, activation=activation, fused=False), xb)[0]
        assert xb.grad.dtype == torch.bfloat16
        torch.testing.assert_close(xb.grad.float(), ref.float(), rtol=2e-2, atol=1e-2 * float(ref.abs().max()))
    finally:
        kernels.set_backend(previous)
