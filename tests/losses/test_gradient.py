"""Autograd of dice_loss against the analytic Eq. 4 (dice_gradient), gradcheck, and Φ properties."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import phidice

PHIS = ["I", "CI", "BI", "BCI"]


def _probs_and_labels(B=3, C=3, S=(7, 6), seed=0, empty=True):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(B, C, *S, dtype=torch.float64, generator=g) * 2, 1)
    labels = torch.randint(0, C, (B, *S), generator=g)
    if empty:
        labels[0][labels[0] == 2] = 0  # class 2 empty in image 0
    return probs, labels


def _autograd(probs, target, **kw):
    p = probs.clone().requires_grad_()
    loss = phidice.dice_loss(p, target, activation=None, **kw)
    (grad,) = torch.autograd.grad(loss, p)
    return loss, grad


CONFIGS = [
    dict(eps=1e-5),
    dict(eps=0.0),
    dict(eps=[0.5, 20.0, 7.0]),  # per class
    dict(eps_nr=0.0, eps_dr=3.0),
    dict(eps=1e-5, eps_empty=[1.0, 30.0, 12.0]),
    dict(eps=[1.0, 2.0, 3.0], include_background=False),
    dict(eps=1.0, class_weights=[0.2, 1.0, 3.0]),
    dict(eps=1.0, empty="skip"),
    dict(eps=2.0, squared=True),
    dict(eps=1.0, reduction="sum"),
    dict(eps=[4.0, 5.0, 6.0], class_weights=[1.0, 2.0, 0.5], include_background=False, reduction="sum"),
]


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_autograd_matches_eq4(phi, cfg):
    probs, labels = _probs_and_labels()
    loss, grad = _autograd(probs, labels, phi=phi, **cfg)
    analytic = phidice.dice_gradient(probs, labels, phi, **cfg)
    torch.testing.assert_close(analytic.grad, grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(analytic.loss, loss, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("phi", ["CI", "BCI"])
@pytest.mark.parametrize("weighting", ["generalized", "generalized_simple"])
def test_autograd_matches_eq4_generalized(phi, weighting):
    probs, labels = _probs_and_labels()
    loss, grad = _autograd(probs, labels, phi=phi, weighting=weighting, eps=[1.0, 2.0, 3.0])
    analytic = phidice.dice_gradient(probs, labels, phi, eps=[1.0, 2.0, 3.0], weighting=weighting)
    torch.testing.assert_close(analytic.grad, grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("phi", PHIS)
def test_autograd_matches_eq4_all_empty(phi):
    probs, _ = _probs_and_labels()
    labels = torch.zeros(probs.shape[0], *probs.shape[2:], dtype=torch.long)  # only background
    for eps in (1e-5, [1.0, 50.0, 50.0]):
        loss, grad = _autograd(probs, labels, phi=phi, eps=eps, include_background=False)
        analytic = phidice.dice_gradient(probs, labels, phi, eps=eps, include_background=False)
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(analytic.grad, grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("phi", PHIS)
def test_autograd_matches_eq4_soft_target_and_mask(phi):
    probs, _ = _probs_and_labels()
    g = torch.Generator().manual_seed(4)
    soft = torch.softmax(torch.randn(probs.shape, dtype=torch.float64, generator=g), 1)
    mask = (torch.rand(probs.shape[0], 1, *probs.shape[2:], generator=g) > 0.25).double()
    loss, grad = _autograd(probs, soft, phi=phi, eps=0.5, mask=mask)
    analytic = phidice.dice_gradient(probs, soft, phi, eps=0.5, mask=mask)
    torch.testing.assert_close(analytic.grad, grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("phi", PHIS)
def test_eq4_two_values_per_subset(phi):
    """Eq. 4: within a subset the gradient takes one value for y = 0 and one for y = 1."""
    probs, labels = _probs_and_labels()
    out = phidice.dice_gradient(probs, labels, phi, eps=1.0)
    onehot = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).bool()
    B, C = out.g0.shape
    g0 = out.g0.view(B, C, 1, 1).expand_as(out.grad)
    g1 = out.g1.view(B, C, 1, 1).expand_as(out.grad)
    torch.testing.assert_close(out.grad, torch.where(onehot, g1, g0), rtol=1e-12, atol=0)
    if phi in ("BI", "BCI"):  # one subset spans the batch: same values for every image
        torch.testing.assert_close(out.g0, out.g0[:1].expand_as(out.g0))
    if phi in ("CI", "BCI"):  # one subset spans the classes: same values for every class
        torch.testing.assert_close(out.g0, out.g0[:, :1].expand_as(out.g0))


def test_eq4_by_hand_empty_map():
    """Empty map, Φ = I: ∂L/∂ỹ = ε/(P+ε)² /|Φ| at every voxel (ANCHORS §7 arithmetic)."""
    probs = torch.full((1, 1, 10), 0.3, dtype=torch.float64)
    target = torch.zeros(1, 1, 10, dtype=torch.float64)
    for eps in (1e-5, 8789.0):
        out = phidice.dice_gradient(probs, target, "I", eps)
        P = 3.0
        torch.testing.assert_close(out.grad, torch.full_like(probs, eps / (P + eps) ** 2))
        assert float(out.loss) == pytest.approx(1 - eps / (P + eps))


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("activation", ["softmax", "sigmoid"])
def test_gradcheck_wrt_logits(phi, activation):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 4, 3, dtype=torch.float64, generator=g, requires_grad=True)
    labels = torch.randint(0, 3, (2, 4, 3), generator=g)
    eps = [0.1, 1.0, 2.0]

    def f(t):
        return phidice.dice_loss(t, labels, phi=phi, eps=eps, activation=activation, fused=False)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-8)


def test_bi_at_batch_one_equals_i():
    probs, labels = _probs_and_labels(B=1)
    for eps in (1e-5, [1.0, 2.0, 3.0]):
        a = phidice.dice_loss(probs, labels, phi="BI", eps=eps, activation=None)
        b = phidice.dice_loss(probs, labels, phi="I", eps=eps, activation=None)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        ga = phidice.dice_gradient(probs, labels, "BI", eps=eps).grad
        gb = phidice.dice_gradient(probs, labels, "I", eps=eps).grad
        torch.testing.assert_close(ga, gb, rtol=0, atol=0)


def test_ci_at_one_class_equals_i():
    x = torch.randn(3, 1, 9, dtype=torch.float64)
    y = (torch.rand(3, 9) > 0.5).long()
    for a, b in (("CI", "I"), ("BCI", "BI")):
        torch.testing.assert_close(
            phidice.dice_loss(x, y, phi=a, activation="sigmoid"), phidice.dice_loss(x, y, phi=b, activation="sigmoid")
        )


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(2, 5),
    C=st.integers(2, 4),
    n=st.integers(1, 12),
    seed=st.integers(0, 10_000),
    phi=st.sampled_from(["BI", "BCI"]),
    per_class_eps=st.booleans(),
)
def test_batch_phi_invariant_to_permutation(B, C, n, seed, phi, per_class_eps):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, C, n, dtype=torch.float64, generator=g, requires_grad=True)
    y = torch.randint(0, C, (B, n), generator=g)
    eps = torch.rand(C, dtype=torch.float64, generator=g).tolist() if per_class_eps else 1e-3
    perm = torch.randperm(B, generator=g)
    loss = phidice.dice_loss(x, y, phi=phi, eps=eps)
    (grad,) = torch.autograd.grad(loss, x)
    xp = x.detach()[perm].requires_grad_()
    loss_p = phidice.dice_loss(xp, y[perm], phi=phi, eps=eps)
    (grad_p,) = torch.autograd.grad(loss_p, xp)
    torch.testing.assert_close(loss_p, loss, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grad_p, grad[perm], rtol=1e-10, atol=1e-14)


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 4),
    C=st.integers(1, 4),
    n=st.integers(1, 10),
    seed=st.integers(0, 10_000),
    phi=st.sampled_from(PHIS),
    eps=st.floats(0.0, 100.0),
)
def test_loss_in_unit_interval_and_matches_eq4(B, C, n, seed, phi, eps):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(B, C, n, dtype=torch.float64, generator=g)
    target = (torch.rand(B, C, n, generator=g) > 0.6).double()
    loss, grad = _autograd(probs, target, phi=phi, eps=eps)
    assert 0.0 <= float(loss.detach()) <= 1.0
    torch.testing.assert_close(phidice.dice_gradient(probs, target, phi, eps).grad, grad, rtol=1e-9, atol=1e-13)


def test_per_class_eps_aligns_with_class_axis():
    """The paper's code broadcast a (C, 1) ε against (B, 1, 1, 1, C) into (B, ..., C, C), mixing every class's
    ε into every class. Here ε_c must act on class c only: changing ε of one class changes that class alone."""
    probs, labels = _probs_and_labels(B=2, C=3)
    base = phidice.dice_loss(probs, labels, activation=None, eps=[1.0, 1.0, 1.0], reduction="none")
    for c in range(3):
        eps = [1.0, 1.0, 1.0]
        eps[c] = 500.0
        changed = phidice.dice_loss(probs, labels, activation=None, eps=eps, reduction="none")
        diff = (changed - base).abs() > 0
        assert diff[:, c].all() and not diff[:, [k for k in range(3) if k != c]].any()


def test_permuting_eps_with_classes_commutes():
    probs, labels = _probs_and_labels(B=2, C=3, empty=False)
    eps = torch.tensor([0.5, 40.0, 3.0], dtype=torch.float64)
    perm = [2, 0, 1]
    inv = torch.argsort(torch.tensor(perm))
    a = phidice.dice_loss(probs, labels, activation=None, eps=eps, reduction="none")
    b = phidice.dice_loss(probs[:, perm], inv[labels], activation=None, eps=eps[perm], reduction="none")
    torch.testing.assert_close(b, a[:, perm])


def test_all_combinations_are_finite_on_empty_batches():
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(2, 5, 5, dtype=torch.long)
    for phi, eps, empty in itertools.product(PHIS, (0.0, 1e-5, 10.0), ("smooth", "skip")):
        loss = phidice.dice_loss(x, y, phi=phi, eps=eps, empty=empty, include_background=False)
        (grad,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), (phi, eps, empty)
