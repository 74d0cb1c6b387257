"""The numba kernel keeps the probabilities of its forward and turns them into the gradient in place.

Eager calls that will need a gradient store p (B, C, N) in the forward; the backward then writes ∂L/∂logits
over that buffer instead of recomputing the activation. These tests hold that route equal to the recomputing
one and to the reference path, and check the cases where it must not be taken or taken only once.
"""

from __future__ import annotations

import pytest
import torch

import phidice
from phidice import kernels
from phidice.kernels import cpu
from phidice.kernels import function as fn

pytestmark = pytest.mark.skipif(not cpu.available(), reason=f"numba kernels unavailable: {cpu._import_error}")

CASES = [  # (activation, C): C = 2 and C = 1 have their own forward kernels
    ("softmax", 4),
    ("softmax", 2),
    ("sigmoid", 3),
    ("sigmoid", 1),
]


@pytest.fixture(autouse=True)
def numba_backend():
    previous = kernels.set_backend("numba")
    yield
    kernels.set_backend(previous)


def _data(C, activation, masked, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, N = 2, 700
    x = torch.randn(B, C, N, generator=g) * 3
    upper = 2 if activation == "sigmoid" and C == 1 else C
    lab = torch.randint(0, upper, (B, N), generator=g)
    mask = (torch.rand(B, N, generator=g) > 0.3).float() if masked else None
    return x, lab, mask


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("activation,C", CASES)
def test_stored_probabilities_are_the_activation(activation, C, masked):
    x, lab, mask = _data(C, activation, masked)
    probs = torch.empty_like(x)
    stored = cpu.forward(x, lab, mask, activation, probs=probs)
    expected = torch.softmax(x, 1) if activation == "softmax" else torch.sigmoid(x)
    torch.testing.assert_close(probs, expected, rtol=1e-6, atol=1e-7)
    plain = cpu.forward(x, lab, mask, activation)
    for a, b in zip(stored, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("activation,C", CASES)
def test_in_place_gradient_equals_the_recomputed_one(activation, C, masked):
    x, lab, mask = _data(C, activation, masked, seed=1)
    g = torch.Generator().manual_seed(2)
    gi, gp = torch.randn(2, C, generator=g), torch.randn(2, C, generator=g)
    probs = torch.empty_like(x)
    narrow = cpu.forward(x, lab, mask, activation, probs=probs)[3]
    recomputed = cpu.backward(x, narrow, mask, gi, gp, activation)
    cpu.backward_stored(probs, narrow, mask, gi, gp, activation)
    torch.testing.assert_close(probs, recomputed, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("activation,C", CASES)
def test_eager_route_equals_the_custom_op(activation, C, masked):
    """Eager calls skip the dispatcher (``EagerFusedSums``); the op that compiled graphs hold gives the same."""
    x, lab, mask = _data(C, activation, masked, seed=9)
    x = x.requires_grad_()
    eager = fn.EagerFusedSums.apply(x, lab, mask, activation, "numba", False)
    op = torch.ops.phidice.fused_sums(x, lab, mask, activation, "numba", False)[:3]
    for a, b in zip(eager, op):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    w = torch.randn(2, 2, C)
    (g_eager,) = torch.autograd.grad((w[0] * eager[0] + w[1] * eager[1]).sum(), x)
    (g_op,) = torch.autograd.grad((w[0] * op[0] + w[1] * op[1]).sum(), x)
    torch.testing.assert_close(g_eager, g_op, rtol=1e-5, atol=1e-6 * float(g_op.abs().max()))


def test_fake_tensors_take_the_custom_op():
    """Under a FakeTensorMode (shape propagation, non-strict export) the kernels cannot read the tensors: the op's
    fake implementation answers."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        x = mode.from_tensor(torch.randn(2, 4, 700)).requires_grad_()
        lab = mode.from_tensor(torch.randint(0, 4, (2, 700)))
        assert not fn._eager(x, lab, None)
        inter, pred, tgt = fn.FusedDiceStats.apply(x, lab, None, "softmax", "numba")
        assert inter.shape == pred.shape == tgt.shape == (2, 4)
    assert fn._eager(torch.randn(2), None)


def _loss(activation, C):
    return phidice.DiceLoss(phi="BI", eps=1e-5, activation=activation, fused=True)


@pytest.mark.parametrize("activation,C", CASES)
def test_loss_gradient_matches_the_reference_path(activation, C):
    x, lab, _ = _data(C, activation, False, seed=3)
    x = x.reshape(2, C, 7, 100).requires_grad_()
    y = lab.reshape(2, 1, 7, 100)
    ref = phidice.DiceLoss(phi="BI", eps=1e-5, activation=activation, fused=False)
    (g0,) = torch.autograd.grad(ref(x, y), x)
    (g1,) = torch.autograd.grad(_loss(activation, C)(x, y), x)
    torch.testing.assert_close(g1, g0, rtol=1e-5, atol=1e-5 * float(g0.abs().max()))


def test_retain_graph_second_backward_recomputes():
    """The stored buffer is the first backward's gradient; a second backward of the same graph recomputes."""
    x, lab, _ = _data(4, "softmax", False, seed=4)
    x = x.reshape(2, 4, 7, 100).requires_grad_()
    y = lab.reshape(2, 1, 7, 100)
    loss = _loss("softmax", 4)(x, y)
    (g1,) = torch.autograd.grad(loss, x, retain_graph=True)
    (g2,) = torch.autograd.grad(loss, x)
    assert g1.data_ptr() != g2.data_ptr()
    torch.testing.assert_close(g2, g1, rtol=1e-5, atol=1e-6 * float(g1.abs().max()))  # two float32 orders


def test_gradient_is_the_stored_buffer(monkeypatch):
    """No copy: the tensor that becomes ``x.grad`` is the buffer the forward wrote the probabilities into."""
    seen = []
    original = cpu.backward_stored

    def spy(probs, *args):
        seen.append(probs.data_ptr())
        return original(probs, *args)

    monkeypatch.setattr(cpu, "backward_stored", spy)
    x, lab, _ = _data(4, "softmax", False, seed=5)
    x = x.reshape(2, 4, 7, 100).requires_grad_()
    _loss("softmax", 4)(x, lab.reshape(2, 1, 7, 100)).backward()
    assert seen == [x.grad.data_ptr()]


@pytest.mark.parametrize("requires_grad,grad_mode", [(False, True), (True, False)])
def test_nothing_stored_without_a_gradient_to_come(monkeypatch, requires_grad, grad_mode):
    stored = []
    original = cpu.forward

    def spy(*args, probs=None):
        stored.append(probs is not None)
        return original(*args, probs=probs)

    monkeypatch.setattr(cpu, "forward", spy)
    x, lab, _ = _data(4, "softmax", False, seed=6)
    x = x.reshape(2, 4, 7, 100).requires_grad_(requires_grad)
    with torch.set_grad_enabled(grad_mode):
        _loss("softmax", 4)(x, lab.reshape(2, 1, 7, 100))
    assert stored == [False]


def test_double_backward_still_equals_the_reference_path():
    x, lab, _ = _data(4, "softmax", False, seed=7)
    x = x.reshape(2, 4, 7, 100).double().float().requires_grad_()
    y = lab.reshape(2, 1, 7, 100)
    v = torch.randn_like(x)

    def hvp(fused):
        loss = phidice.DiceLoss(phi="BI", eps=1e-5, fused=fused)(x, y)
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        return torch.autograd.grad((g * v).sum(), x)[0]

    h0, h1 = hvp(False), hvp(True)
    assert h0.abs().max() > 0
    torch.testing.assert_close(h1, h0, rtol=1e-4, atol=1e-4 * float(h0.abs().max()))


def test_a_loss_of_one_sum_only():
    """Autograd passes None for the sums the loss does not use (no zero (B, C, N) tensors are materialised)."""
    x, lab, _ = _data(4, "softmax", False, seed=8)
    x = x.requires_grad_()
    for route in ("eager", "op"):

        def sums():
            if route == "eager":
                return fn.EagerFusedSums.apply(x, lab, None, "softmax", "numba", False)
            return torch.ops.phidice.fused_sums(x, lab, None, "softmax", "numba", False)

        (g,) = torch.autograd.grad(sums()[1].sum(), x)  # Σ_c p_c = 1 per voxel: the gradient vanishes
        torch.testing.assert_close(g, torch.zeros_like(g), rtol=0, atol=1e-6)
        (g,) = torch.autograd.grad(sums()[0].sum(), x)
        p = torch.softmax(x.detach(), 1)
        onehot = torch.nn.functional.one_hot(lab, 4).movedim(-1, 1).float()
        expected = p * (onehot - (p * onehot).sum(1, keepdim=True))
        torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-6)
