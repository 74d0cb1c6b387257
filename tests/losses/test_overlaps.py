"""Tversky, focal Tversky and Jaccard on the Dice loss's sums: oracles, identities, Eq. 4 and the ε heuristic."""

from __future__ import annotations

import math

import pytest
import torch

import phidice
from _oracle_rows import MONAI_TVERSKY
from phidice.core.config import DICE, JACCARD, tversky
from phidice.equations import eq4, heuristic_eps_scale

monai_losses = pytest.importorskip("monai.losses")

B, C, S = 3, 4, (5, 4, 3)
PHIS = ["I", "CI", "BI", "BCI"]


def _data(sigmoid=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(B, C, *S, dtype=dtype, generator=g) * 2
    labels = torch.randint(0, C, (B, *S), generator=g)
    labels[0][labels[0] == C - 1] = 0  # an empty map
    if sigmoid:
        multilabel = (torch.rand(B, C, *S, generator=g) > 0.7).to(dtype)
        multilabel[1, 0] = 0
        return x, multilabel
    return x, labels


MONAI_ROWS = MONAI_TVERSKY.params()  # (id, MONAI TverskyLoss kwargs, phidice tversky_loss kwargs)


@pytest.mark.parametrize("row,monai_kw,ours", MONAI_ROWS, ids=[r[0] for r in MONAI_ROWS])
@pytest.mark.parametrize("act", ["softmax", "sigmoid"])
def test_monai_tversky(row, monai_kw, ours, act):
    sigmoid = act == "sigmoid"
    x, y = _data(sigmoid=sigmoid)
    kw = dict(ours)
    monai_kw = dict(monai_kw)
    monai_kw.setdefault("smooth_nr", kw.get("eps_nr", kw.get("eps", 1e-5)))
    monai_kw.setdefault("smooth_dr", kw.get("eps_dr", kw.get("eps", 1e-5)))
    ref_fn = monai_losses.TverskyLoss(softmax=not sigmoid, sigmoid=sigmoid, to_onehot_y=not sigmoid, **monai_kw)
    xm = x.clone().requires_grad_()
    ref = ref_fn(xm, y if sigmoid else y.unsqueeze(1))
    xo = x.clone().requires_grad_()
    got = phidice.tversky_loss(xo, y, activation=act, **kw)
    torch.testing.assert_close(got.reshape(ref.shape), ref, rtol=1e-6, atol=1e-6)
    w = torch.arange(1, ref.numel() + 1, dtype=ref.dtype).reshape(ref.shape)
    (gm,) = torch.autograd.grad((w * ref).sum(), xm)
    (go,) = torch.autograd.grad((w * got.reshape(ref.shape)).sum(), xo)
    torch.testing.assert_close(go, gm, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("eps", [0.0, 1e-3, 2.5])
def test_tversky_half_half_is_dice_with_double_eps(phi, eps):
    x, y = _data()
    xt, xd = x.clone().requires_grad_(), x.clone().requires_grad_()
    t = phidice.tversky_loss(xt, y, alpha=0.5, beta=0.5, phi=phi, eps=eps)
    d = phidice.dice_loss(xd, y, phi=phi, eps=2 * eps)
    torch.testing.assert_close(t, d, rtol=1e-6, atol=1e-12)
    t.backward()
    d.backward()
    torch.testing.assert_close(xt.grad, xd.grad, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("phi", PHIS)
def test_jaccard_is_dice_over_two_minus_dice(phi):
    x, y = _data()
    dsc = 1 - phidice.dice_loss(x, y, phi=phi, eps=0.0, reduction="none")
    jac = phidice.jaccard_loss(x, y, phi=phi, eps=0.0, reduction="none")
    torch.testing.assert_close(jac, 1 - dsc / (2 - dsc), rtol=1e-12, atol=1e-12)


def test_jaccard_is_tversky_one_one():
    x, y = _data()
    torch.testing.assert_close(
        phidice.jaccard_loss(x, y, eps=0.3), phidice.tversky_loss(x, y, alpha=1.0, beta=1.0, eps=0.3)
    )


def test_focal_tversky_per_subset():
    x, y = _data()
    plain = phidice.tversky_loss(x, y, alpha=0.3, beta=0.7, reduction="none")
    for gamma in (0.75, 4 / 3, 2.0):
        focal = phidice.tversky_loss(x, y, alpha=0.3, beta=0.7, gamma=gamma, reduction="none")
        torch.testing.assert_close(focal, plain.clamp_min(0) ** gamma)


def _index_kwargs(kind):
    return {
        "tversky": dict(alpha=0.3, beta=0.7),
        "focal": dict(alpha=0.3, beta=0.7, gamma=4 / 3),
        "focal-below-1": dict(alpha=0.7, beta=0.3, gamma=0.75),
        "jaccard": {},
    }[kind]


def _loss(kind, x, y, **kw):
    fn = phidice.jaccard_loss if kind == "jaccard" else phidice.tversky_loss
    return fn(x, y, **_index_kwargs(kind), **kw)


def _grad(kind, p, y, **kw):
    if kind == "jaccard":
        return phidice.jaccard_gradient(p, y, **kw)
    return phidice.tversky_gradient(p, y, **_index_kwargs(kind), **kw)


@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("kind", ["tversky", "focal", "focal-below-1", "jaccard"])
@pytest.mark.parametrize(
    "options",
    [
        dict(eps=1e-3),
        dict(eps=[0.5, 1.0, 2.0, 3.0], class_weights=[1.0, 2.0, 0.5, 1.0]),
        dict(eps_nr=0.1, eps_dr=0.4, eps_empty=5.0),
        dict(squared=True, eps=0.2),
        dict(empty="skip", include_background=False, reduction="sum"),
    ],
    ids=["eps", "per-class", "nr-dr-empty", "squared", "skip-sum"],
)
def test_autograd_equals_eq4(phi, kind, options):
    _, y = _data()
    g = torch.Generator().manual_seed(5)
    p = torch.softmax(torch.randn(B, C, *S, dtype=torch.float64, generator=g), 1).requires_grad_()
    loss = _loss(kind, p, y, phi=phi, activation=None, fused=False, **options)
    (auto,) = torch.autograd.grad(loss, p)
    analytic = _grad(kind, p.detach(), y, phi=phi, **options)
    torch.testing.assert_close(analytic.loss, loss.detach(), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(analytic.grad, auto, rtol=1e-9, atol=1e-12)
    if not options.get("squared"):  # two values per φ: g0 at y = 0 voxels, g1 at y = 1 voxels
        onehot = torch.nn.functional.one_hot(y, C).movedim(-1, 1).bool()
        keep = slice(1, None) if options.get("include_background") is False else slice(None)
        for b in range(B):
            for k, c in enumerate(range(C)[keep]):
                on, off = analytic.grad[b, c][onehot[b, c]], analytic.grad[b, c][~onehot[b, c]]
                assert torch.allclose(on, analytic.g1[b, k].expand_as(on)) and torch.allclose(
                    off, analytic.g0[b, k].expand_as(off)
                )


@pytest.mark.parametrize("kind", ["tversky", "focal", "jaccard"])
@pytest.mark.parametrize("phi", ["I", "BCI"])
def test_gradcheck(kind, phi):
    x, y = _data()
    x = x[:2, :, :2, :2, :2].clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda t: _loss(kind, t, y[:2, :2, :2, :2], phi=phi, eps=0.1, fused=False), (x,))


@pytest.mark.parametrize("kind", ["tversky", "focal", "jaccard"])
@pytest.mark.parametrize("phi", PHIS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_reference(kind, phi, dtype):
    x, y = _data(dtype=dtype)
    losses, grads = [], []
    for fused in (True, False):
        xx = x.clone().requires_grad_()
        loss = _loss(kind, xx, y, phi=phi, eps=1e-3, ignore_index=None, fused=fused)
        loss.backward()
        losses.append(loss.detach())
        grads.append(xx.grad)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(losses[0], losses[1], **tol)
    torch.testing.assert_close(grads[0], grads[1], **tol)


def test_modules_equal_functional_and_compounds():
    x, y = _data()
    torch.testing.assert_close(
        phidice.TverskyLoss("BI", 1e-3, alpha=0.3, beta=0.7, gamma=2.0)(x, y),
        phidice.tversky_loss(x, y, alpha=0.3, beta=0.7, gamma=2.0, phi="BI", eps=1e-3),
    )
    torch.testing.assert_close(phidice.JaccardLoss("CI")(x, y), phidice.jaccard_loss(x, y, phi="CI"))
    ce = torch.nn.functional.cross_entropy(x, y)
    torch.testing.assert_close(
        phidice.TverskyCELoss(alpha=0.3, beta=0.7, lambda_ce=0.5)(x, y),
        phidice.tversky_loss(x, y, alpha=0.3, beta=0.7) + 0.5 * ce,
    )
    torch.testing.assert_close(phidice.JaccardCELoss("BI")(x, y), phidice.jaccard_loss(x, y, phi="BI") + ce)
    torch.testing.assert_close(
        phidice.tversky_ce_loss(x, y, alpha=0.3, beta=0.7, lambda_ce=0.5),
        phidice.TverskyCELoss(alpha=0.3, beta=0.7, lambda_ce=0.5)(x, y),
    )
    torch.testing.assert_close(phidice.jaccard_ce_loss(x, y), phidice.JaccardCELoss()(x, y))


@pytest.mark.parametrize(
    "make",
    [
        lambda: (
            phidice.TverskyLoss(0.3, 0.7, 2.0, "BI", 1e-3),
            phidice.TverskyLoss("BI", 1e-3, alpha=0.3, beta=0.7, gamma=2.0),
        ),
        lambda: (
            phidice.TverskyCELoss(0.3, 0.7, lambda_ce=0.5),
            phidice.TverskyCELoss(alpha=0.3, beta=0.7, lambda_ce=0.5),
        ),
    ],
    ids=["TverskyLoss", "TverskyCELoss"],
)
def test_the_old_alpha_first_order_still_works_with_a_warning(make):
    x, y = _data()
    with pytest.warns(DeprecationWarning, match="phi and eps come first"):
        old, new = make()
    assert old.config == new.config
    torch.testing.assert_close(old(x, y), new(x, y))


def test_positional_arguments_are_checked():
    with pytest.raises(TypeError, match="at most 2 positional arguments"):
        phidice.TverskyLoss("BI", 1e-3, 0.3)
    with pytest.raises(TypeError, match="multiple values for argument 'phi'"):
        phidice.TverskyLoss("BI", phi="I")
    with pytest.warns(DeprecationWarning):
        g_old = phidice.tversky_gradient(torch.softmax(x := _data()[0], 1), _data()[1], 0.3, 0.7, 1.0, "CI")
    g_new = phidice.tversky_gradient(torch.softmax(x, 1), _data()[1], "CI", alpha=0.3, beta=0.7)
    torch.testing.assert_close(g_old.grad, g_new.grad)


@pytest.mark.parametrize("phi", PHIS)
def test_leaf_and_marginal_forms(phi):
    x, y = _data()
    index = tversky(0.3, 0.7)
    everything = torch.ones(B, C, dtype=torch.bool)
    for cls in (phidice.LeafDiceLoss, phidice.MarginalDiceLoss):
        torch.testing.assert_close(
            cls(phi, overlap=index)(x, y, everything), phidice.tversky_loss(x, y, alpha=0.3, beta=0.7, phi=phi)
        )
    annotated = everything.clone()
    annotated[1, 2] = False
    y_partial = y.clone()
    y_partial[1][y_partial[1] == 2] = 0
    p = torch.softmax(x, 1).requires_grad_()  # probabilities: a class's gradient is its own
    leaf = phidice.LeafDiceLoss(phi, overlap=phidice.JACCARD, include_background=False, activation=None)
    leaf(p, y_partial, annotated).backward()
    assert float(p.grad[1, 2].abs().max()) == 0.0  # the unannotated (sample, class) gets exactly no gradient
    assert float(p.grad[0, 2].abs().max()) > 0 and float(p.grad[1, 1].abs().max()) > 0


def test_options_of_the_index_are_checked():
    with pytest.raises(ValueError, match="alpha must be a number ≥ 0"):
        phidice.TverskyLoss(alpha=-0.1)
    with pytest.raises(ValueError, match="alpha \\+ beta must be > 0"):
        phidice.TverskyLoss(alpha=0.0, beta=0.0)
    with pytest.raises(ValueError, match="gamma must be > 0"):
        phidice.TverskyLoss(gamma=0.0)
    with pytest.raises(TypeError, match="overlap is set by the loss"):
        phidice.TverskyLoss(overlap=phidice.JACCARD)
    with pytest.raises(TypeError, match="overlap must be an Overlap"):
        phidice.DiceLoss(overlap="tversky")
    with pytest.raises(ValueError, match="alpha must be finite"):
        phidice.TverskyLoss(alpha=float("inf"))


@pytest.mark.parametrize(
    "fields,match",
    [
        (dict(gamma=0.0), "gamma > 0"),
        (dict(gamma=-1.0), "gamma > 0"),
        (dict(a=0.0), "a > 0"),
        (dict(b_p=float("nan")), "Overlap.b_p must be a finite number"),
        (dict(b_y=True), "Overlap.b_y must be a finite number"),
        (dict(b_p=-0.5), "b_p ≥ 0, b_y ≥ 0"),
        (dict(b_i=-2.0), "b_i \\+ b_p \\+ b_y > 0"),
    ],
)
def test_an_overlap_built_by_hand_is_checked(fields, match):
    """Overlap is public (and DiceConfig.from_dict builds one): its own checks, not only tversky()'s."""
    with pytest.raises(ValueError, match=match):
        phidice.Overlap(**fields)
    with pytest.raises(ValueError, match=match):
        phidice.DiceConfig.from_dict({**phidice.DiceConfig().to_dict(), "overlap": {**vars(DICE), **fields}})


def test_squared_tversky_whose_denominator_can_turn_negative_is_refused():
    """Squared sums bound I only by √(P·Y): Tversky needs (√α − √β)² ≤ 1 there; Jaccard and Dice pass."""
    with pytest.raises(ValueError, match="squared=True with this tversky index"):
        phidice.TverskyLoss(alpha=10.0, beta=0.01, squared=True)
    p, y = torch.rand(2, 3, 6, 6, dtype=torch.float64), torch.randint(0, 3, (2, 6, 6))
    for loss in (
        phidice.TverskyLoss(alpha=1.0, beta=1.0, squared=True, activation=None),
        phidice.JaccardLoss(squared=True, activation=None),
        phidice.TverskyLoss(alpha=10.0, beta=0.01, activation=None),
    ):
        value = loss(p, y)
        assert torch.isfinite(value) and 0 <= float(value) <= 1


def test_no_heuristic_eps_without_weight_on_false_positives():
    """Tversky α = 0: predictions on an empty map cost nothing, whatever ε — a clear error, not 0/0."""
    assert torch.isfinite(
        phidice.tversky_loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4)), alpha=0.0, beta=1.0)
    )
    with pytest.raises(ValueError, match="no heuristic ε; use alpha > 0"):
        heuristic_eps_scale(tversky(0.0, 1.0))
    with pytest.raises(ValueError, match="no heuristic ε; use alpha > 0"):
        phidice.explain(volumes=[100], loss="tversky", alpha=0.0, beta=1.0)


# ------------------------------------------------------------------------------------------- ε heuristic


def test_heuristic_scale_closed_forms():
    assert heuristic_eps_scale(DICE) == pytest.approx(1.0)  # the paper's ε = E[Σy]
    assert heuristic_eps_scale(tversky(0.5, 0.5)) == pytest.approx(0.5)  # Tversky(ε) = Dice(2ε)
    assert heuristic_eps_scale(JACCARD) == pytest.approx(2.0)
    # Tversky (a = ½): c·k² = a(α + c)², k = (1 + α + β)/2 → the larger root
    for alpha, beta in ((0.3, 0.7), (0.2, 0.8), (0.5, 1.0)):
        k = (1 + alpha + beta) / 2
        a = 0.5
        root = (k * k - 2 * a * alpha + k * math.sqrt(k * k - 4 * a * alpha)) / (2 * a)
        assert heuristic_eps_scale(tversky(alpha, beta)) == pytest.approx(root, rel=1e-9)
    assert heuristic_eps_scale(tversky(0.7, 0.3)) == pytest.approx(0.7, rel=0.05)  # no root: the maximum, c ≈ α


@pytest.mark.parametrize(
    "index",
    [DICE, JACCARD, tversky(0.3, 0.7), tversky(0.3, 0.7, 4 / 3), tversky(0.2, 0.8, 0.75)],
    ids=["dice", "jaccard", "tversky", "focal", "focal-below-1"],
)
def test_heuristic_matches_eq5(index):
    """At ε = c·v̂ an empty map's y = 0 gradient (Φ = I) equals a non-empty map's under an infinite batch."""
    v = 1000.0
    c = heuristic_eps_scale(index)
    K = index.b_i * 0.5 + index.b_p + index.b_y
    empty = eq4(c * v, index.b_p * v + c * v, 1.0, index)[1]
    nonempty = eq4(index.a * 0.5 * v, K * v, 1.0, index)[1]
    assert empty == pytest.approx(nonempty, rel=1e-6)
    assert eq4(1.01 * c * v, index.b_p * v + 1.01 * c * v, 1.0, index)[1] < empty  # on the falling side


def test_explain_tversky():
    r = phidice.explain(volumes=[1000], eps="auto", batch_size=1, loss="tversky", alpha=0.3, beta=0.7, intent="empty")
    assert r.eps_scale == pytest.approx(heuristic_eps_scale(tversky(0.3, 0.7)))
    assert r.eps[0] == pytest.approx(1000 * r.eps_scale)
    assert "tversky" in r.to_markdown() and "1.33·E[Σy]" in r.to_markdown()
    small = phidice.explain(volumes=[1000], eps=1e-5, batch_size=1, loss="jaccard")
    assert small.flagged == [True] and not r.flagged[0]
    with pytest.raises(ValueError, match="loss must be one of"):
        phidice.explain(volumes=[10], loss="focal")
