"""Leaf and marginal Dice: hand-computed values, an independent loop oracle, gradients, equivalences."""

import itertools
import math

import numpy as np
import pytest
import torch

import phidice
from phidice.missing.functional import leaf_dice_loss, marginal_dice_loss

PHIS = ["I", "CI", "BI", "BCI"]


# ---------------------------------------------------------------- hand-computed (activation=None, float64)
# one sample, C = 3, two voxels; class 1 unannotated; labels (0, 2)
P = torch.tensor([[[0.5, 0.2], [0.3, 0.1], [0.2, 0.7]]], dtype=torch.float64)
Y = torch.tensor([[0, 2]])
A = torch.tensor([[True, False, True]])


def test_leaf_hand_computed():
    # background left out (the sample misses class 1), class 1 left out; class 2: I = .7, P = .9, Y = 1
    got = leaf_dice_loss(P, Y, A, phi="I", eps=0.0, activation=None)
    assert got.item() == pytest.approx(1 - 1.4 / 1.9, abs=1e-15)
    got = leaf_dice_loss(P, Y, A, phi="CI", eps=1.0, activation=None)
    assert got.item() == pytest.approx(1 - 2.4 / 2.9, abs=1e-15)


def test_marginal_hand_computed():
    # p'_0 = p_0 + p_1 = (.8, .3): I = .8, P = 1.1, Y = 1; class 2: I = .7, P = .9, Y = 1
    got = marginal_dice_loss(P, Y, A, phi="I", eps=0.0, activation=None)
    assert got.item() == pytest.approx(((1 - 1.6 / 2.1) + (1 - 1.4 / 1.9)) / 2, abs=1e-15)
    # Φ = CI, ε = 1: (2·(.8 + .7) + 1) / ((1.1 + 1) + (.9 + 1) + 1) = 4 / 5
    got = marginal_dice_loss(P, Y, A, phi="CI", eps=1.0, activation=None)
    assert got.item() == pytest.approx(0.2, abs=1e-15)
    # without the background the marginal Dice is the leaf Dice
    got = marginal_dice_loss(P, Y, A, phi="I", eps=0.0, activation=None, include_background=False)
    assert got.item() == pytest.approx(1 - 1.4 / 1.9, abs=1e-15)


# ---------------------------------------------------------------- loop oracle (numpy, independent of keep)
def oracle(p, y, keep, phi, eps):
    """Eq. 3 with subsets φ built from the kept (b, c) entries by explicit loops; scalar ε."""
    B, C = keep.shape
    inter, psum, ysum = (p * y).sum(-1), p.sum(-1), y.sum(-1)
    if phi == "I":
        groups = [[(b, c)] for b in range(B) for c in range(C)]
    elif phi == "CI":
        groups = [[(b, c) for c in range(C)] for b in range(B)]
    elif phi == "BI":
        groups = [[(b, c) for b in range(B)] for c in range(C)]
    else:
        groups = [[(b, c) for b in range(B) for c in range(C)]]
    losses = []
    for g in groups:
        g = [e for e in g if keep[e]]
        if not g:
            continue
        num = 2 * sum(inter[e] for e in g) + eps
        den = sum(psum[e] + ysum[e] for e in g) + eps
        losses.append(1 - num / den)
    return float(np.mean(losses))


def random_case(B=3, C=4, S=(5, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.softmax(torch.randn(B, C, *S, generator=g, dtype=torch.float64), 1)
    annotated = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)[:B, :C]
    labels = torch.randint(0, C, (B, *S), generator=g)
    labels = torch.where(annotated.gather(1, labels.reshape(B, -1)).view_as(labels), labels, 0)
    return probs, labels, annotated


def onehot_np(labels, C):
    return torch.nn.functional.one_hot(labels, C).movedim(-1, 1).reshape(labels.shape[0], C, -1).double().numpy()


@pytest.mark.parametrize("phi,eps,include_background", list(itertools.product(PHIS, [0.0, 1e-5, 3.0], [True, False])))
def test_leaf_matches_loop_oracle(phi, eps, include_background):
    probs, labels, ann = random_case()
    keep = ann.numpy().copy()
    keep[:, 0] = ann[:, 1:].all(1).numpy()  # documented rule: background only in fully annotated samples
    p, y = probs.reshape(3, 4, -1).numpy(), onehot_np(labels, 4)
    if not include_background:
        p, y, keep = p[:, 1:], y[:, 1:], keep[:, 1:]
    got = leaf_dice_loss(probs, labels, ann, phi=phi, eps=eps, activation=None, include_background=include_background)
    assert got.item() == pytest.approx(oracle(p, y, keep, phi, eps), abs=1e-12)


@pytest.mark.parametrize("phi,eps", list(itertools.product(PHIS, [0.0, 1e-5, 3.0])))
def test_marginal_matches_loop_oracle(phi, eps):
    probs, labels, ann = random_case()
    p, y = probs.reshape(3, 4, -1).numpy().copy(), onehot_np(labels, 4)
    for b in range(3):
        for c in range(1, 4):
            if not ann[b, c]:
                p[b, 0] += p[b, c]
                p[b, c] = 0.0
    got = marginal_dice_loss(probs, labels, ann, phi=phi, eps=eps, activation=None)
    assert got.item() == pytest.approx(oracle(p, y, ann.numpy(), phi, eps), abs=1e-12)


# ---------------------------------------------------------------- all annotated == DiceLoss
@pytest.mark.parametrize(
    "phi,eps,include_background", list(itertools.product(PHIS, [1e-5, 1.0, [1.0, 50.0, 2.0, 7.0]], [True, False]))
)
@pytest.mark.parametrize("fn", [leaf_dice_loss, marginal_dice_loss])
def test_all_annotated_equals_dice_loss(fn, phi, eps, include_background):
    torch.manual_seed(1)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (3, 5, 6))
    y[2] = 0  # an image with only background: empty foreground subsets
    kw = dict(phi=phi, eps=eps, include_background=include_background)
    ref = phidice.dice_loss(x, y, **kw)
    for ann in (None, torch.ones(3, 4, dtype=torch.bool), torch.ones(3, 4, dtype=torch.int64)):
        assert torch.allclose(fn(x, y, ann, **kw), ref, rtol=0, atol=1e-14)
    ref_none = phidice.dice_loss(x, y, reduction="none", **kw)
    assert torch.allclose(fn(x, y, None, reduction="none", **kw), ref_none, rtol=0, atol=1e-14)


def test_all_annotated_equals_dice_loss_with_options():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 7, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 7))
    y[0, :2] = 255
    kw = dict(phi="CI", eps=0.5, weighting="generalized", empty="skip", squared=True, ignore_index=255)
    assert torch.allclose(leaf_dice_loss(x, y, **kw), phidice.dice_loss(x, y, **kw), rtol=0, atol=1e-14)
    assert torch.allclose(marginal_dice_loss(x, y, **kw), phidice.dice_loss(x, y, **kw), rtol=0, atol=1e-14)


@pytest.mark.parametrize("phi", PHIS)
def test_marginal_equals_leaf_without_background(phi):
    probs, labels, ann = random_case()
    kw = dict(phi=phi, eps=[2.0, 3.0, 4.0], activation=None, include_background=False)
    assert torch.allclose(
        marginal_dice_loss(probs, labels, ann, **kw), leaf_dice_loss(probs, labels, ann, **kw), rtol=0, atol=1e-14
    )


# ---------------------------------------------------------------- gradients
@pytest.mark.parametrize("phi", PHIS)
def test_leaf_gradient_of_unannotated_probabilities_is_exactly_zero(phi):
    probs, labels, ann = random_case()
    probs.requires_grad_(True)
    leaf_dice_loss(probs, labels, ann, phi=phi, eps=1.0, activation=None).backward()
    g = probs.grad
    dropped = ~ann.clone()
    dropped[:, 0] = ~ann[:, 1:].all(1)  # background of samples missing a class
    assert bool((g[dropped] == 0).all())
    assert bool((g[~dropped].abs().sum(-1).sum(-1) > 0).all())  # every kept entry does learn


def test_leaf_gradient_through_softmax_reaches_unannotated_logits():
    # ∂L/∂z_u = Σ_k g_k ∂p_k/∂z_u = p_u (g_u − Σ_k g_k p_k) = −p_u Σ_k g_k p_k, since g_u = 0
    torch.manual_seed(3)
    probs, labels, ann = random_case()
    z = torch.randn(3, 4, 5, 6, dtype=torch.float64, requires_grad=True)
    leaf_dice_loss(z, labels, ann, phi="I", eps=1.0).backward()
    p = torch.softmax(z.detach(), 1).requires_grad_(True)
    leaf_dice_loss(p, labels, ann, phi="I", eps=1.0, activation=None).backward()
    expected = -p.detach() * (p.grad * p.detach()).sum(1, keepdim=True)
    u = ~ann
    assert torch.allclose(z.grad[u], expected[u], rtol=1e-10, atol=1e-15)
    assert bool((z.grad[u].abs() > 0).any())  # not zero: the softmax normalisation couples them


@pytest.mark.parametrize("phi", PHIS)
def test_marginal_gradient_of_unannotated_equals_background(phi):
    probs, labels, ann = random_case()
    probs.requires_grad_(True)
    marginal_dice_loss(probs, labels, ann, phi=phi, eps=1.0, activation=None).backward()
    g = probs.grad
    for b, u in (~ann).nonzero().tolist():
        assert torch.equal(g[b, u], g[b, 0])
    assert bool((g[~ann] != 0).any())


# ---------------------------------------------------------------- rules documented in docs/missing_labels.md
def test_background_only_sample_leaves_leaf_and_is_perfect_in_marginal():
    probs, labels, _ = random_case()
    ann = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    labels[1] = 0
    keep_rows = [0, 2]
    got = leaf_dice_loss(probs, labels, ann, phi="I", activation=None)
    ref = phidice.dice_loss(probs[keep_rows], labels[keep_rows], phi="I", activation=None)
    assert torch.allclose(got, ref, rtol=0, atol=1e-14)
    per = marginal_dice_loss(probs, labels, ann, phi="I", activation=None, reduction="none")
    assert per[1, 0].item() == pytest.approx(0.0, abs=1e-12)  # merged background is everything: DSC = 1
    assert bool((per[1, 1:] == 0).all())  # skipped entries


def test_nothing_kept_gives_zero_loss_without_nan():
    probs, labels, _ = random_case(B=1)
    labels[:] = 0
    ann = torch.tensor([[1, 0, 0, 0]], dtype=torch.bool)
    probs.requires_grad_(True)
    loss = leaf_dice_loss(probs, labels, ann, activation=None, include_background=False)
    loss.backward()
    assert loss.item() == 0.0 and bool((probs.grad == 0).all())


def test_masked_labels_of_unannotated_class_are_allowed():
    probs, labels, ann = random_case()
    labels[1, 0, 0] = 1  # class 1 is unannotated in sample 1 ...
    mask = torch.ones_like(labels, dtype=torch.float64)
    mask[1, 0, 0] = 0  # ... but that voxel is masked out
    got = leaf_dice_loss(probs, labels, ann, activation=None, mask=mask)
    keep = ann.numpy().copy()
    keep[:, 0] = ann[:, 1:].all(1).numpy()
    m = mask.reshape(3, 1, -1).numpy()
    p, y = probs.reshape(3, 4, -1).numpy() * m, onehot_np(labels, 4) * m
    assert got.item() == pytest.approx(oracle(p, y, keep, "I", 1e-5), abs=1e-12)


def test_dense_target_equals_labels():
    probs, labels, ann = random_case()
    dense = torch.nn.functional.one_hot(labels, 4).movedim(-1, 1).double()
    for fn in (leaf_dice_loss, marginal_dice_loss):
        assert torch.allclose(
            fn(probs, dense, ann, activation=None, phi="BI"),
            fn(probs, labels, ann, activation=None, phi="BI"),
            rtol=0,
            atol=1e-14,
        )


def test_sigmoid_leaf_drops_channels():
    torch.manual_seed(4)
    x = torch.randn(1, 3, 8, dtype=torch.float64)
    y = (torch.rand(1, 3, 8) > 0.5).double()
    y[0, 1] = 0
    ann = torch.tensor([[True, False, True]])  # under sigmoid channel 0 is a class like the others
    got = leaf_dice_loss(x, y, ann, activation="sigmoid", phi="I")
    ref = phidice.dice_loss(x[:, [0, 2]], y[:, [0, 2]], activation="sigmoid", phi="I")
    assert torch.allclose(got, ref, rtol=0, atol=1e-14)
    ann0 = torch.tensor([[False, True, True]])
    y[0, 0] = 0
    y[0, 1, 0] = 1
    ref0 = phidice.dice_loss(x[:, 1:], y[:, 1:], activation="sigmoid", phi="I")
    assert torch.allclose(leaf_dice_loss(x, y, ann0, activation="sigmoid"), ref0, rtol=0, atol=1e-14)


def test_modules_match_functional():
    torch.manual_seed(5)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    _, labels, ann = random_case()
    mask = (torch.rand(3, 5, 6) > 0.2).double()
    for cls, fn in ((phidice.LeafDiceLoss, leaf_dice_loss), (phidice.MarginalDiceLoss, marginal_dice_loss)):
        module = cls(phi="BI", eps=2.0, include_background=False)
        assert "phi='BI'" in repr(module)
        assert torch.equal(
            module(x, labels, ann, mask), fn(x, labels, ann, phi="BI", eps=2.0, include_background=False, mask=mask)
        )
        assert math.isfinite(module(x, labels).item())


def test_fused_path_is_used_where_it_applies(monkeypatch):
    """Leaf (and marginal without background) take compute_stats' fused path; marginal with background cannot."""
    from phidice import kernels
    from phidice.sums import compute_stats

    calls = []

    def fake_fused_stats(logits, labels, *, activation, mask, **kw):
        calls.append(1)
        return compute_stats(logits, labels, activation=activation, mask=mask, fused=False)

    monkeypatch.setattr(kernels, "fused_unsupported_reason", lambda *a, **k: None)
    monkeypatch.setattr(kernels, "fused_stats", fake_fused_stats)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64)
    _, labels, ann = random_case()
    leaf_dice_loss(x, labels, ann, fused=True)
    marginal_dice_loss(x, labels, ann, include_background=False, fused=True)
    assert len(calls) == 2
    marginal_dice_loss(x, labels, ann, fused="auto")
    assert len(calls) == 2
