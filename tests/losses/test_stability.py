"""No NaN or Inf for all-empty batches, logits of ±1e4, fp16 and bf16; torch.compile works."""

import itertools

import pytest
import torch

import phidice

PHIS = ["I", "CI", "BI", "BCI"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_extreme_logits_and_half_precision(dtype, activation):
    g = torch.Generator().manual_seed(0)
    C = 3
    x = (torch.randint(0, 2, (2, C, 6, 6), generator=g) * 2 - 1).to(dtype) * 1e4
    x.requires_grad_()
    labels = torch.randint(0, C, (2, 6, 6), generator=g)
    empty = torch.zeros_like(labels)
    for phi, eps, y in itertools.product(PHIS, (0.0, 1e-5, 100.0), (labels, empty)):
        loss = phidice.dice_loss(x, y, phi=phi, eps=eps, activation=activation)
        (grad,) = torch.autograd.grad(loss, x)
        assert loss.dtype == torch.float32
        assert grad.dtype == dtype
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), (phi, eps)


@pytest.mark.parametrize("dtype,tol", [(torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_half_precision_accumulates_in_float32(dtype, tol):
    """A large map whose fp16 sum would overflow (> 65504) still gives the float32 answer."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, 300, 300, generator=g)
    y = torch.randint(0, 2, (1, 300, 300), generator=g)
    ref = phidice.dice_loss(x, y, fused=False)
    got = phidice.dice_loss(x.to(dtype), y, fused=False)
    assert torch.isfinite(got)
    assert abs(float(got) - float(ref)) < tol


@pytest.mark.parametrize("fused", [False, "auto"])
def test_all_empty_batch_zero_eps_zero_prediction_is_finite(fused):
    """ε = 0, empty target and a prediction of exactly 0 is 0/0: read as a perfect score, zero gradient.

    The fused kernel's exponential must underflow to 0 as the reference path's does, or 0/0 turns into 0/tiny."""
    x = torch.full((2, 1, 8), -1e4, requires_grad=True)  # sigmoid → exactly 0 in float32
    y = torch.zeros(2, 8, dtype=torch.long)
    for phi in PHIS:
        loss = phidice.dice_loss(x, y, phi=phi, eps=0.0, activation="sigmoid", fused=fused)
        (grad,) = torch.autograd.grad(loss, x)
        assert float(loss.detach()) == 0.0
        assert torch.isfinite(grad).all() and float(grad.abs().max()) == 0.0


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_torch_compile(backend):
    loss_fn = phidice.DiceLoss("BI", eps=[1e-5, 1.0, 2.0])
    compiled = torch.compile(loss_fn, backend=backend)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = torch.randint(0, 3, (2, 8, 8))
    expected = loss_fn(x, y)
    (g_expected,) = torch.autograd.grad(expected, x)
    got = compiled(x, y)
    (g_got,) = torch.autograd.grad(got, x)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(g_got, g_expected)
