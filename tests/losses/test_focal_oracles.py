"""DiceFocalLoss against MONAI, by hand, across Φ/ε/masks/annotated, gradcheck, and its errors.

MONAI's ``FocalLoss`` casts its input to float32 (``input.float()``), so the whole ``DiceFocalLoss`` is held
to MONAI's at 1e-6; the focal formula itself is held in float64 (1e-10) to MONAI's element-wise
``sigmoid_focal_loss`` / ``softmax_focal_loss`` plus MONAI's float64 ``DiceLoss``. Each row is a line of the
MONAI ``DiceFocalLoss`` table in docs/mapping.md.
"""

import pytest
import torch
import torch.nn.functional as F

import phidice
from phidice.core.config import JACCARD

monai_losses = pytest.importorskip("monai.losses")
monai_focal = pytest.importorskip("monai.losses.focal_loss")

B, C, S = 3, 4, (5, 4, 3)


def _data(seed=0, C=C, multilabel=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, C, *S, dtype=torch.float64, generator=g) * 2
    labels = torch.randint(0, C, (B, *S), generator=g)
    labels[0][labels[0] == C - 1] = 0  # an empty map
    if multilabel:
        y = (torch.rand(B, C, *S, generator=g) > 0.7).double()
        y[1, 0] = 0
        return logits, y
    return logits, labels


def _onehot(labels, C=C):
    return F.one_hot(labels, C).movedim(-1, 1).double()


def _both(fn_a, fn_b, logits, target_a, target_b, atol):
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    a, b = fn_a(x1, target_a), fn_b(x2, target_b)
    a.backward()
    b.backward()
    torch.testing.assert_close(b, a, rtol=0, atol=atol)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=atol)


W = (0.5, 1.0, 2.0, 3.0)

# (row id, MONAI DiceFocalLoss kwargs, phidice dice_focal_loss kwargs). MONAI's focal term is always the sigmoid
# one (focal_activation="sigmoid" with softmax=True); weight=w is class_weights=w and focal_weight=w with
# lambda_dice × mean(w) (MONAI's Dice multiplies and divides by B·C, phidice takes the weighted mean);
# jaccard=True is JACCARD with ε halved; reduction="sum" sums per-(b, c) spatial means: lambda_focal × B·C'.
ROWS = [
    ("softmax", dict(softmax=True), dict(focal_activation="sigmoid")),
    ("softmax-batch", dict(softmax=True, batch=True), dict(phi="BI", focal_activation="sigmoid")),
    (
        "softmax-no-background",
        dict(softmax=True, include_background=False),
        dict(include_background=False, focal_activation="sigmoid"),
    ),
    (
        "sigmoid-gamma-alpha",
        dict(sigmoid=True, gamma=1.5, alpha=0.25),
        dict(activation="sigmoid", gamma=1.5, alpha=0.25),
    ),
    ("sigmoid-gamma0", dict(sigmoid=True, gamma=0.0), dict(activation="sigmoid", gamma=0.0)),
    (
        "sigmoid-gamma-half",
        dict(sigmoid=True, gamma=0.5, batch=True, include_background=False),
        dict(activation="sigmoid", gamma=0.5, phi="BI", include_background=False),
    ),
    (
        "smooth-lambdas",
        dict(softmax=True, smooth_nr=0.0, smooth_dr=1e-3, lambda_dice=0.7, lambda_focal=2.0),
        dict(eps_nr=0.0, eps_dr=1e-3, lambda_dice=0.7, lambda_focal=2.0, focal_activation="sigmoid"),
    ),
    ("squared", dict(softmax=True, squared_pred=True), dict(squared=True, focal_activation="sigmoid")),
    (
        "jaccard",
        dict(softmax=True, jaccard=True, smooth_nr=0.2, smooth_dr=0.4),
        dict(overlap=JACCARD, eps_nr=0.1, eps_dr=0.2, focal_activation="sigmoid"),
    ),
    (
        "weight",
        dict(softmax=True, weight=W),
        dict(class_weights=W, focal_weight=W, lambda_dice=sum(W) / len(W), focal_activation="sigmoid"),
    ),
    ("sum", dict(softmax=True, reduction="sum"), dict(reduction="sum", lambda_focal=B * C, focal_activation="sigmoid")),
    ("other-act", dict(other_act=torch.tanh), dict(activation=torch.tanh, focal_activation="sigmoid")),
]


@pytest.mark.parametrize("row,monai_kw,ours", ROWS, ids=[r[0] for r in ROWS])
def test_monai_dice_focal(row, monai_kw, ours):
    sigmoid = monai_kw.get("sigmoid", False)
    logits, target = _data(1, multilabel=sigmoid)
    monai_target = target if sigmoid else _onehot(target)
    monai = monai_losses.DiceFocalLoss(**monai_kw)
    _both(monai, lambda x, t: phidice.dice_focal_loss(x, t, **ours), logits, monai_target, target, atol=1e-6)


@pytest.mark.parametrize("gamma,alpha", [(2.0, None), (0.0, 0.25), (0.5, 0.75), (3.0, (0.1, 0.4, 0.6, 0.9))])
@pytest.mark.parametrize("include_background", [True, False])
def test_sigmoid_focal_float64_equals_monai_elementwise(gamma, alpha, include_background):
    """MONAI's Dice (float64) + its element-wise sigmoid focal loss (float64), averaged as FocalLoss does."""
    logits, y = _data(2, multilabel=True)
    keep = slice(None) if include_background else slice(1, None)
    a_monai = (
        None if alpha is None else torch.tensor(alpha if isinstance(alpha, float) else alpha[keep], dtype=torch.float64)
    )

    def monai(x, t):
        dice = monai_losses.DiceLoss(sigmoid=True, include_background=include_background)(x, t)
        return dice + 0.5 * monai_focal.sigmoid_focal_loss(x[:, keep], t[:, keep], gamma, a_monai).mean()

    ours = dict(activation="sigmoid", gamma=gamma, alpha=alpha, lambda_focal=0.5, include_background=include_background)
    _both(monai, lambda x, t: phidice.dice_focal_loss(x, t, **ours), logits, y, y, atol=1e-10)


@pytest.mark.parametrize(
    "gamma,alpha,weight", [(2.0, None, None), (0.0, 0.25, None), (1.5, (0.1, 0.4, 0.6, 0.9), W), (0.5, 0.625, 2.0)]
)
def test_softmax_focal_equals_monai_focal_loss_times_c(gamma, alpha, weight):
    """MONAI's FocalLoss(use_softmax=True) averages over (voxel, class), phidice over voxels: MONAI × C. Full
    FocalLoss at 1e-6 (float32 inside), the element-wise softmax_focal_loss in float64 at 1e-10. A scalar α
    is one a float32 holds exactly: MONAI builds its (1 − α, α, …) factor as a float32 tensor."""
    logits, labels = _data(3)
    ours = dict(gamma=gamma, alpha=alpha, focal_weight=weight, lambda_dice=0.0)

    def mine(x, t):
        return phidice.dice_focal_loss(x, t, **ours)

    full = monai_losses.FocalLoss(use_softmax=True, gamma=gamma, alpha=alpha, weight=weight)
    _both(lambda x, t: full(x, t).double() * C, mine, logits, _onehot(labels), labels, atol=1e-6)
    a = None if alpha is None else torch.tensor(alpha, dtype=torch.float64)
    w = (
        1.0
        if weight is None
        else torch.as_tensor(weight, dtype=torch.float64).reshape(-1, *(1,) * len(S))
        if isinstance(weight, tuple)
        else weight
    )

    def elementwise(x, t):
        return (monai_focal.softmax_focal_loss(x, t, gamma, a) * w).sum(1).mean()

    _both(elementwise, mine, logits, _onehot(labels), labels, atol=1e-10)


def test_gamma_zero_is_the_cross_entropy():
    """γ = 0 without α: the softmax focal term is DiceCELoss's cross-entropy, the sigmoid one its BCE."""
    logits, labels = _data(4)
    for activation in ("softmax", "sigmoid"):
        target = labels if activation == "softmax" else _onehot(labels)
        focal = phidice.dice_focal_loss(logits, target, activation=activation, gamma=0.0)
        ce = phidice.dice_ce_loss(logits, target, activation=activation)
        torch.testing.assert_close(focal, ce, rtol=0, atol=1e-12)


def _focal_by_hand(logits, labels, m, gamma):
    p = torch.softmax(logits, 1)
    y = _onehot(labels)
    per = (-((1 - p) ** gamma) * torch.log(p) * y).sum(1, keepdim=True)
    return (per * m).sum() / m.sum()


@pytest.mark.parametrize("phi", ["I", "CI", "BI", "BCI"])
@pytest.mark.parametrize("fused", ["auto", False])
def test_by_hand_each_phi_eps_per_class_and_mask(phi, fused):
    """Dice part = dice_loss with the same Φ, per-class ε and mask; focal part = the masked voxel mean."""
    logits, labels = _data(5)
    m = (torch.rand(B, 1, *S, generator=torch.Generator().manual_seed(2)) > 0.3).double()
    eps = (0.5, 1.0, 2.0, 4.0)
    got = phidice.dice_focal_loss(logits, labels, phi=phi, eps=eps, mask=m, fused=fused, lambda_focal=0.3)
    dice = phidice.dice_loss(logits, labels, phi=phi, eps=eps, mask=m, fused=False)
    torch.testing.assert_close(got, dice + 0.3 * _focal_by_hand(logits, labels, m, 2.0), rtol=0, atol=1e-12)


def test_ignore_index_leaves_both_terms():
    logits, labels = _data(6)
    ignored = labels.clone()
    ignored[:, 0] = 255
    m = (ignored != 255).unsqueeze(1).double()
    got = phidice.dice_focal_loss(logits, ignored, ignore_index=255)
    expected = phidice.dice_focal_loss(logits, labels, mask=m)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(
        expected - phidice.dice_loss(logits, labels, mask=m), _focal_by_hand(logits, labels, m, 2.0), rtol=0, atol=1e-12
    )


def test_fused_dice_part_equals_reference():
    logits, labels = _data(7)
    for phi in ("I", "BI"):
        values = []
        for fused in (True, False):
            x = logits.clone().requires_grad_()
            v = phidice.DiceFocalLoss(phi=phi, fused=fused, alpha=0.3)(x, labels)
            v.backward()
            values.append((v.detach(), x.grad))
        torch.testing.assert_close(values[0][0], values[1][0], rtol=0, atol=1e-12)
        torch.testing.assert_close(values[0][1], values[1][1], rtol=0, atol=1e-12)


def test_annotated_variants():
    """All annotated: both equal DiceFocalLoss. Class 3 unannotated in image 0: the leaf Dice drops its entries
    and the focal term reads the marginal probabilities p'_0 = p_0 + p_3 (by hand)."""
    logits, labels = _data(8)
    full = phidice.DiceFocalLoss(phi="BI", include_background=False)(logits, labels)
    for cls in (phidice.LeafDiceFocalLoss, phidice.MarginalDiceFocalLoss):
        torch.testing.assert_close(cls(phi="BI", include_background=False)(logits, labels), full, rtol=0, atol=1e-12)
    annotated = torch.ones(B, C, dtype=torch.bool)
    annotated[0, C - 1] = False
    got = phidice.LeafDiceFocalLoss(phi="I", include_background=False)(logits, labels, annotated)
    p = torch.softmax(logits, 1)
    p_marg = p.clone()
    p_marg[0, 0] += p[0, C - 1]
    y = _onehot(labels)
    per = (-((1 - p_marg) ** 2) * torch.log(p_marg) * y)[:, :].clone()
    per[0, C - 1] = 0
    focal = per.sum(1).mean()
    dice = phidice.missing.leaf_dice_loss(logits, labels, annotated, phi="I", include_background=False)
    torch.testing.assert_close(got, dice + focal, rtol=0, atol=1e-12)
    sig, multi = _data(9, multilabel=True)
    multi[0, 2] = 0
    ann = torch.ones(B, C, dtype=torch.bool)
    ann[0, 2] = False
    got = phidice.missing.leaf_dice_focal_loss(sig, multi, ann, activation="sigmoid", lambda_dice=0.0)
    per = monai_focal.sigmoid_focal_loss(sig, multi, 2.0) * ann.double().view(B, C, 1, 1, 1)
    torch.testing.assert_close(got, per.sum() / (ann.sum() * per[0, 0].numel()), rtol=0, atol=1e-12)


@pytest.mark.parametrize("activation,gamma", [("softmax", 2.0), ("sigmoid", 1.5), ("softmax", 0.5)])
def test_gradcheck(activation, gamma):
    logits, labels = _data(10, C=3)
    x = logits[:2, :, :2, :2, :1].clone().requires_grad_()
    lab = labels[:2, :2, :2, :1].clamp_max(2)
    assert torch.autograd.gradcheck(
        lambda t: phidice.dice_focal_loss(t, lab, activation=activation, gamma=gamma, alpha=0.3, phi="BI", fused=False),
        (x,),
    )


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(gamma=-0.5), ValueError, r"gamma must be a number ≥ 0; got -0.5"),
        (dict(gamma=float("inf")), ValueError, "gamma must be a finite number"),
        (dict(lambda_focal=-1.0), ValueError, r"lambda_focal must be a number ≥ 0; got -1.0"),
        (dict(lambda_dice=-0.1), ValueError, r"lambda_dice must be a number ≥ 0"),
        (dict(alpha=1.5), ValueError, r"alpha must lie in \[0, 1\]"),
        (dict(alpha=-0.2), ValueError, "alpha must be finite and ≥ 0"),
        (dict(alpha=(0.2, 1.2)), ValueError, r"alpha must lie in \[0, 1\]"),
        (dict(focal_weight=(-1.0, 1.0)), ValueError, "focal_weight must be ≥ 0"),
        (dict(focal_activation="relu"), ValueError, "focal_activation must be one of"),
        (dict(activation=None), ValueError, "needs logits"),
        (dict(reduction="none"), ValueError, "supports reduction 'mean' or 'sum'"),
        (dict(activation=torch.tanh), ValueError, "the focal term needs logits"),
    ],
)
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        phidice.DiceFocalLoss(**kwargs)
    logits, labels = _data(11)
    with pytest.raises(error, match=match):
        phidice.dice_focal_loss(logits, labels, **kwargs)


def test_wrong_length_per_class_alpha():
    logits, labels = _data(12)
    with pytest.raises(ValueError, match="alpha has 2 values but the input has 4 classes"):
        phidice.dice_focal_loss(logits, labels, alpha=(0.2, 0.4))
    with pytest.raises(TypeError, match="unknown option"):
        phidice.dice_focal_loss(logits, labels, lambda_ce=1.0)


def test_module_state_and_repr():
    loss = phidice.DiceFocalLoss(phi="BI", eps=(1.0, 2.0, 3.0, 4.0), alpha=0.25, gamma=1.0)
    copy = phidice.DiceFocalLoss(phi="BI", eps=(0.0,) * 4, alpha=0.25, gamma=1.0)
    copy.load_state_dict(loss.state_dict())
    logits, labels = _data(13)
    torch.testing.assert_close(copy(logits, labels), loss(logits, labels), rtol=0, atol=0)
    assert "gamma=1.0" in repr(loss) and "alpha=0.25" in repr(loss)
    built = phidice.DiceFocalLoss.from_config(loss.config, loss.focal)
    torch.testing.assert_close(built(logits, labels), loss(logits, labels), rtol=0, atol=0)
