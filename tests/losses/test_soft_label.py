"""``soft_label=True``: the intersection Σ m·min(ỹ, y) in the per-(b, c) sums, for every Φ, ε and loss.

Held to MONAI's ``DiceLoss`` / ``GeneralizedDiceLoss`` / ``TverskyLoss(soft_label=True)`` (value and gradient,
float64), to a by-hand sum, to the default on hard targets, and to Eq. 4 (``dice_gradient``).
"""

import pytest
import torch

import phidice
from phidice.core.types import drop_background

monai_losses = pytest.importorskip("monai.losses")

B, C, S = 3, 4, (5, 4, 3)


def _soft(seed=0, C=C):
    """Logits and soft targets: three raters' one-hot maps averaged, then label-smoothed in one image."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, C, *S, dtype=torch.float64, generator=g) * 2
    raters = torch.randint(0, C, (3, B, *S), generator=g)
    y = torch.nn.functional.one_hot(raters, C).movedim(-1, 2).double().mean(0)
    y[1] = y[1] * 0.9 + 0.1 / C
    y[2, C - 1] = 0  # an empty map (soft mass moved to the background)
    y[2, 0] = 1 - y[2, 1:].sum(0)
    return logits, y


def _pair(fn_monai, fn_ours, logits, target, atol=1e-10):
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    expected, got = fn_monai(x1, target), fn_ours(x2, target)
    if expected.shape != got.shape:
        expected = expected.reshape(got.shape)
    expected.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=atol)


# (MONAI DiceLoss kwargs, phidice dice_loss kwargs); MONAI's smooth_nr/dr are ε_nr/ε_dr
DICE_ROWS = [
    (dict(softmax=True), dict(activation="softmax")),
    (dict(softmax=True, batch=True), dict(activation="softmax", phi="BI")),
    (dict(sigmoid=True), dict(activation="sigmoid")),
    (
        dict(sigmoid=True, batch=True, include_background=False),
        dict(activation="sigmoid", phi="BI", include_background=False),
    ),
    (
        dict(softmax=True, include_background=False, smooth_nr=0.0, smooth_dr=1e-3),
        dict(activation="softmax", include_background=False, eps_nr=0.0, eps_dr=1e-3),
    ),
    (dict(softmax=True, squared_pred=True), dict(activation="softmax", squared=True)),
    (dict(softmax=True, batch=True, squared_pred=True), dict(activation="softmax", phi="BI", squared=True)),
    (dict(softmax=True, reduction="sum"), dict(activation="softmax", reduction="sum")),
    (dict(softmax=True, reduction="none"), dict(activation="softmax", reduction="none")),
    (dict(softmax=True, batch=True, reduction="none"), dict(activation="softmax", phi="BI", reduction="none")),
    (dict(other_act=lambda t: torch.softmax(t, 1)), dict(activation=lambda t: torch.softmax(t, 1))),
    (dict(softmax=True, smooth_nr=2.0, smooth_dr=2.0), dict(activation="softmax", eps=2.0)),
]


@pytest.mark.parametrize("monai_kw,ours", DICE_ROWS, ids=[str(i) for i in range(len(DICE_ROWS))])
def test_monai_diceloss_soft_label(monai_kw, ours):
    logits, y = _soft()
    _pair(
        monai_losses.DiceLoss(soft_label=True, **monai_kw),
        lambda x, t: phidice.dice_loss(x, t, soft_label=True, **ours),
        logits,
        y,
    )


@pytest.mark.parametrize("batch,phi", [(False, "I"), (True, "BI")])
def test_monai_diceloss_soft_label_weights(batch, phi):
    """MONAI's weight=w multiplies then divides by B·C; phidice takes the weighted mean: × mean(w)."""
    logits, y = _soft(1)
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    expected = monai_losses.DiceLoss(softmax=True, batch=batch, weight=w, soft_label=True)(logits, y)
    got = phidice.dice_loss(logits, y, phi=phi, class_weights=w, soft_label=True)
    torch.testing.assert_close(got * w.mean(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("batch,phi", [(False, "I"), (True, "BI")])
def test_monai_jaccard_soft_label(batch, phi):
    """MONAI's DiceLoss(jaccard=True): (2·tp + nr)/(2·(P + Y − tp) + dr) = JaccardLoss with ε halved."""
    logits, y = _soft(2)
    _pair(
        monai_losses.DiceLoss(softmax=True, jaccard=True, batch=batch, soft_label=True, smooth_nr=0.2, smooth_dr=0.4),
        lambda x, t: phidice.jaccard_loss(x, t, phi=phi, eps_nr=0.1, eps_dr=0.2, soft_label=True),
        logits,
        y,
    )


@pytest.mark.parametrize(
    "w_type,weighting", [("square", "generalized"), ("simple", "generalized_simple"), ("uniform", None)]
)
@pytest.mark.parametrize("batch,phi", [(False, "CI"), (True, "BCI")])
def test_monai_generalized_dice_soft_label(w_type, weighting, batch, phi):
    """MONAI computes the weights from float32 volumes (``ground_o.float()``), hence 1e-6."""
    logits, y = _soft(3)
    _pair(
        monai_losses.GeneralizedDiceLoss(softmax=True, w_type=w_type, batch=batch, soft_label=True),
        lambda x, t: phidice.dice_loss(x, t, phi=phi, weighting=weighting, soft_label=True),
        logits,
        y,
        atol=1e-6,
    )


@pytest.mark.parametrize("alpha,beta,batch,phi", [(0.3, 0.7, False, "I"), (0.8, 0.2, True, "BI")])
def test_monai_tversky_soft_label(alpha, beta, batch, phi):
    logits, y = _soft(4)
    _pair(
        monai_losses.TverskyLoss(softmax=True, alpha=alpha, beta=beta, batch=batch, soft_label=True),
        lambda x, t: phidice.tversky_loss(x, t, alpha=alpha, beta=beta, phi=phi, soft_label=True),
        logits,
        y,
    )


def test_soft_intersection_by_hand_with_mask_and_per_class_eps():
    """I = Σ m·min(ỹ, y), P = Σ m·ỹ, Y = Σ m·y; Eq. 3 per (b, c) with a per-class ε."""
    logits, y = _soft(5)
    m = (torch.rand(B, 1, *S, generator=torch.Generator().manual_seed(9)) > 0.3).double()
    eps = (0.5, 1.0, 2.0, 4.0)
    p = torch.softmax(logits, 1)
    I = (torch.minimum(p, y) * m).flatten(2).sum(-1)
    P, Y = (p * m).flatten(2).sum(-1), (y * m).flatten(2).sum(-1)
    e = torch.tensor(eps, dtype=torch.float64)
    expected = (1 - (2 * I + e) / (P + Y + e)).mean()
    got = phidice.dice_loss(logits, y, mask=m, eps=eps, soft_label=True)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    # the ΣxY form differs on soft targets: the test would be vacuous if it did not
    assert abs(float(phidice.dice_loss(logits, y, mask=m, eps=eps)) - float(got)) > 1e-3


def test_soft_label_prefers_the_soft_target_itself():
    """With y = 0.6 everywhere, min(ỹ, y) makes ỹ = y the best prediction; Σ y·ỹ would push ỹ to 1."""
    y = torch.full((1, 1, 50), 0.6, dtype=torch.float64)
    grid = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    losses = [
        float(phidice.dice_loss(torch.full_like(y, float(v)), y, activation=None, soft_label=True, eps=0.0))
        for v in grid
    ]
    best = float(grid[torch.tensor(losses).argmin()])
    assert best == pytest.approx(0.6, abs=1e-9)
    plain = [float(phidice.dice_loss(torch.full_like(y, float(v)), y, activation=None, eps=0.0)) for v in grid]
    assert float(grid[torch.tensor(plain).argmin()]) > 0.9


@pytest.mark.parametrize("phi,fused", [("I", "auto"), ("CI", False), ("BI", False), ("BCI", "auto")])
@pytest.mark.parametrize("loss", ["dice", "jaccard", "tversky", "dice_ce", "dice_focal"])
def test_soft_label_on_hard_targets_equals_default(phi, fused, loss):
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(B, C, *S, dtype=torch.float64, generator=g)
    labels = torch.randint(0, C, (B, *S), generator=g)
    onehot = torch.nn.functional.one_hot(labels, C).movedim(-1, 1).double()
    fn = {
        "dice": phidice.dice_loss,
        "jaccard": phidice.jaccard_loss,
        "tversky": lambda *a, **k: phidice.tversky_loss(*a, alpha=0.3, beta=0.7, **k),
        "dice_ce": phidice.dice_ce_loss,
        "dice_focal": phidice.dice_focal_loss,
    }[loss]
    for target in (labels, onehot):
        grads = []
        values = []
        for soft in (False, True):
            x = logits.clone().requires_grad_()
            v = fn(x, target, phi=phi, eps=(0.5, 1.0, 2.0, 3.0), fused=fused, soft_label=soft)
            v.backward()
            values.append(v.detach())
            grads.append(x.grad)
        torch.testing.assert_close(values[1], values[0], rtol=0, atol=1e-13)
        torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-13)


@pytest.mark.parametrize("phi", ["I", "CI", "BI", "BCI"])
def test_soft_label_autograd_equals_eq4(phi):
    logits, y = _soft(7)
    probs = torch.softmax(logits, 1)
    x = probs.clone().requires_grad_()
    phidice.dice_loss(x, y, phi=phi, activation=None, soft_label=True, eps=(0.5, 1.0, 2.0, 3.0)).backward()
    analytic = phidice.dice_gradient(probs, y, phi, eps=(0.5, 1.0, 2.0, 3.0), soft_label=True)
    torch.testing.assert_close(x.grad, analytic.grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("phi", ["I", "BCI"])
def test_soft_label_gradcheck(phi):
    logits, y = _soft(8, C=3)
    logits = logits[:2, :, :2, :2, :1].clone().requires_grad_()
    y = y[:2, :3, :2, :2, :1]
    y = y / y.sum(1, keepdim=True)
    assert torch.autograd.gradcheck(lambda x: phidice.dice_loss(x, y, phi=phi, soft_label=True, eps=0.5), (logits,))


@pytest.mark.parametrize("bad", [1.2, -0.1])
@pytest.mark.parametrize("loss", ["dice", "dice_ce", "dice_focal", "tversky", "jaccard"])
def test_soft_targets_outside_unit_interval_are_refused(bad, loss):
    logits, y = _soft(9)
    y = y.clone()
    y[0, 1, 0, 0, 0] = bad
    fn = {
        "dice": phidice.DiceLoss(soft_label=True),
        "dice_ce": phidice.DiceCELoss(soft_label=True),
        "dice_focal": phidice.DiceFocalLoss(soft_label=True),
        "tversky": phidice.TverskyLoss(soft_label=True),
        "jaccard": phidice.JaccardLoss(soft_label=True),
    }[loss]
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 1\]"):
        fn(logits, y)


def test_soft_label_flag_is_validated():
    with pytest.raises(TypeError, match="soft_label must be True or False"):
        phidice.DiceLoss(soft_label="yes")


def test_soft_label_fused_true_with_labels_and_soft_maps():
    """Labels stay fused (min(ỹ, y) = y·ỹ there); a soft map is a dense target, which fused=True refuses."""
    logits, y = _soft(10)
    labels = y.argmax(1)
    fused = phidice.dice_loss(logits, labels, soft_label=True, fused=True)
    ref = phidice.dice_loss(logits, labels, soft_label=True, fused=False)
    torch.testing.assert_close(fused, ref, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="fused=True but the fused path does not apply: the target is a dense"):
        phidice.dice_loss(logits, y, soft_label=True, fused=True)


def test_compute_stats_soft_label():
    logits, y = _soft(11)
    stats = phidice.compute_stats(logits, y, soft_label=True, include_background=False)
    p = torch.softmax(logits, 1)
    expected = drop_background(
        phidice.DiceStats(torch.minimum(p, y).flatten(2).sum(-1), p.flatten(2).sum(-1), y.flatten(2).sum(-1)), False
    )
    for a, b in zip(stats, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
