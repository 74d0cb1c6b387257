"""Every CUDA path on a real GPU: the Triton kernels against the reference path, the CUDA label check, the NCCL
branch of the gathers. Skipped without a CUDA device; ``benchmarks/gpu_check.sh`` runs them on one.

Tolerances: float32 logits agree with the float32 reference to 1e-5 relative; fp16/bf16 logits are read in their
dtype and computed in float32 on both paths, so they agree to the same 1e-5 on the loss and to the logits' dtype
on the gradient (which is written in that dtype).
"""

from __future__ import annotations

import os
import socket

import pytest
import torch

import phidice
from phidice import kernels

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device (benchmarks/gpu_check.sh runs these on a GPU)"
)

PHIS = ["I", "CI", "BI", "BCI"]
# C from 2 to 118 (the class loop runs in chunks); voxel counts that are not multiples of any block size
SHAPES = [(2, 2, (37, 29)), (3, 3, (7, 9, 5)), (2, 17, (33, 17, 3)), (1, 118, (13, 11, 7)), (4, 5, (1001,))]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _grad_tol(dtype):
    return {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]


def _compare(x, y, **kw):
    x = x.requires_grad_()
    fused = phidice.dice_loss(x, y, fused=True, **kw)
    ref = phidice.dice_loss(x, y, fused=False, **kw)
    (g1,) = torch.autograd.grad(fused.sum(), x)
    (g0,) = torch.autograd.grad(ref.sum(), x)
    assert torch.isfinite(fused).all() and torch.isfinite(g1).all() and g1.dtype == x.dtype
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-6)
    tol = _grad_tol(x.dtype)
    torch.testing.assert_close(g1.float(), g0.float(), rtol=tol, atol=tol * float(g0.float().abs().max()))


def test_cuda_tensors_take_triton():
    x = torch.randn(2, 3, 8, 8, device="cuda")
    assert kernels.select_backend(x.device, x.dtype)[0] == "triton"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,C,spatial", SHAPES)
@pytest.mark.parametrize("phi", PHIS)
def test_softmax_every_phi(phi, B, C, spatial, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    x = (torch.randn(B, C, *spatial, device="cuda", generator=g) * 3).to(dtype)
    y = torch.randint(0, C, (B, *spatial), device="cuda", generator=g)
    _compare(x, y, phi=phi)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("phi", PHIS)
def test_sigmoid_binary_and_multichannel(phi, dtype):
    x = torch.randn(3, 1, 31, 17, device="cuda").to(dtype)
    _compare(x, torch.randint(0, 2, (3, 31, 17), device="cuda"), phi=phi, activation="sigmoid")
    x = torch.randn(2, 4, 9, 7, 5, device="cuda").to(dtype)
    _compare(x, torch.randint(0, 4, (2, 9, 7, 5), device="cuda"), phi=phi, activation="sigmoid")


@pytest.mark.parametrize("phi", PHIS)
def test_ignore_index_mask_and_options(phi):
    x = torch.randn(3, 5, 21, 19, device="cuda")
    y = torch.randint(0, 5, (3, 21, 19), device="cuda")
    y[:, :3] = 255
    mask = (torch.rand(3, 1, 21, 19, device="cuda") > 0.3).float()
    _compare(x, y, phi=phi, ignore_index=255)
    _compare(x, y.clamp_max(4), phi=phi, mask=mask)
    _compare(
        x, y, phi=phi, ignore_index=255, mask=mask, include_background=False, eps=[1.0, 2.0, 3.0, 4.0], empty="skip"
    )
    if phi in ("CI", "BCI"):
        _compare(x, y.clamp_max(4), phi=phi, weighting="generalized", eps=1.0)


@pytest.mark.parametrize("phi", PHIS)
def test_tversky_jaccard_and_missing_labels(phi):
    x = torch.randn(3, 4, 11, 13, 3, device="cuda", requires_grad=True)
    y = torch.randint(0, 4, (3, 11, 13, 3), device="cuda")
    for fn in (
        lambda f: phidice.tversky_loss(x, y, alpha=0.3, beta=0.7, gamma=4 / 3, phi=phi, fused=f),
        lambda f: phidice.jaccard_loss(x, y, phi=phi, fused=f),
    ):
        torch.testing.assert_close(fn(True), fn(False), rtol=1e-5, atol=1e-6)
        (g1,) = torch.autograd.grad(fn(True), x)
        (g0,) = torch.autograd.grad(fn(False), x)
        torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-7)
    annotated = torch.ones(3, 4, dtype=torch.bool, device="cuda")
    annotated[1, 2] = False
    y2 = torch.where((y == 2) & (torch.arange(3, device="cuda").view(3, 1, 1, 1) == 1), 0, y)
    leaf = [phidice.LeafDiceLoss(phi, fused=f)(x, y2, annotated) for f in (True, False)]
    torch.testing.assert_close(leaf[0], leaf[1], rtol=1e-5, atol=1e-6)


def test_label_check_on_cuda_and_validate_args():
    x = torch.randn(2, 3, 8, 8, device="cuda")
    y = torch.randint(0, 3, (2, 8, 8), device="cuda")
    y[1, 2, 3] = 3
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\]"):
        phidice.dice_loss(x, y, fused=True)
    phidice.dice_loss(x, y, fused=True, validate_args=False)  # no check, no synchronisation: label 3 counts for nothing


def test_no_host_sync_without_validation():
    """validate_args=False: the forward and backward run without a device→host synchronisation."""
    x = torch.randn(2, 4, 32, 32, device="cuda", requires_grad=True)
    y = torch.randint(0, 4, (2, 32, 32), device="cuda")
    loss = phidice.DiceLoss("BI", validate_args=False)
    loss(x, y).backward()  # warm-up: Triton compiles
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss(x, y).backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_extra_memory_is_about_the_gradient():
    x = torch.randn(2, 8, 64, 64, 64, device="cuda", requires_grad=True)
    y = torch.randint(0, 8, (2, 64, 64, 64), device="cuda")
    phidice.dice_loss(x, y, fused=True).backward()
    x.grad = None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    phidice.dice_loss(x, y, fused=True).backward()
    torch.cuda.synchronize()
    extra = (torch.cuda.max_memory_allocated() - before) / (x.numel() * x.element_size())
    assert extra <= 1.1, f"extra peak {extra:.2f}× the logits"


def test_nccl_gathers_one_rank():
    """The NCCL branch of gather_rows (CPU counts moved to the GPU) and sync_batch under an NCCL group."""
    import torch.distributed as dist

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        acc = phidice.DiceAccumulator(num_classes=3)
        pred, ref = torch.randint(0, 3, (4, 8, 8)), torch.randint(0, 3, (4, 8, 8))
        acc.update(pred, ref)
        before = acc.compute("I")
        torch.testing.assert_close(acc.sync().compute("I"), before, equal_nan=True)
        x = torch.randn(2, 3, 8, 8, device="cuda", requires_grad=True)
        y = torch.randint(0, 3, (2, 8, 8), device="cuda")
        torch.testing.assert_close(
            phidice.dice_loss(x, y, phi="BI", sync_batch=True), phidice.dice_loss(x, y, phi="BI")
        )
    finally:
        dist.destroy_process_group()
