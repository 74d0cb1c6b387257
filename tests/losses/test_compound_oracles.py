"""DiceCELoss against MONAI's DiceCELoss for every configuration MONAI expresses (rows of docs/mapping.md),
value and gradient in float64."""

import pytest
import torch
import torch.nn.functional as F

import phidice
from phidice.core.config import JACCARD

monai_losses = pytest.importorskip("monai.losses")

B, C, S = 3, 4, (5, 4, 3)
W = (0.5, 1.0, 2.0, 3.0)
N_VOXELS = B * 5 * 4 * 3

# (row id, MONAI DiceCELoss kwargs, phidice DiceCELoss kwargs). weight=w is the Dice's class_weights=w (× mean(w),
# MONAI's multiply-then-divide-by-B·C) and the CE's ce_weight=w; reduction="sum" sums the CE over voxels.
ROWS = [
    ("default", dict(), dict()),
    ("batch", dict(batch=True), dict(phi="BI")),
    ("no-background", dict(include_background=False), dict(include_background=False)),
    ("lambdas", dict(lambda_dice=0.3, lambda_ce=1.7), dict(lambda_dice=0.3, lambda_ce=1.7)),
    ("smooth", dict(smooth_nr=0.0, smooth_dr=1e-3), dict(eps_nr=0.0, eps_dr=1e-3)),
    ("label-smoothing", dict(label_smoothing=0.1), dict(label_smoothing=0.1)),
    (
        "weight",
        dict(weight=torch.tensor(W, dtype=torch.float64)),
        dict(class_weights=W, ce_weight=W, lambda_dice=sum(W) / len(W)),
    ),
    ("squared", dict(squared_pred=True), dict(squared=True)),
    ("jaccard", dict(jaccard=True, smooth_nr=0.2, smooth_dr=0.4), dict(overlap=JACCARD, eps_nr=0.1, eps_dr=0.2)),
    ("sum", dict(reduction="sum"), dict(reduction="sum", lambda_ce=N_VOXELS)),
]


@pytest.mark.parametrize("row,monai_kw,ours", ROWS, ids=[r[0] for r in ROWS])
def test_monai_dice_ce(row, monai_kw, ours):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, C, *S, dtype=torch.float64, generator=g) * 2
    labels = torch.randint(0, C, (B, *S), generator=g)
    labels[0][labels[0] == C - 1] = 0
    x1, x2 = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    if row == "squared":  # MONAI's to_onehot_y makes a float32 map, and its L2 norms then run in float32
        a = monai_losses.DiceCELoss(softmax=True, **monai_kw)(x1, F.one_hot(labels, C).movedim(-1, 1).double())
    else:
        a = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, **monai_kw)(x1, labels.unsqueeze(1))
    b = phidice.DiceCELoss(**ours)(x2, labels)
    a.backward()
    b.backward()
    torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
    torch.testing.assert_close(x2.grad, x1.grad, rtol=0, atol=1e-10)


def test_monai_dice_ce_single_sigmoid_channel_is_dice_bce():
    """MONAI takes BCE only for one channel (several sigmoid channels get a softmax CE: not expressed)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, 1, *S, dtype=torch.float64, generator=g)
    y = (torch.rand(B, 1, *S, generator=g) > 0.6).double()
    a = monai_losses.DiceCELoss(sigmoid=True, batch=True)(x, y)
    b = phidice.DiceCELoss(phi="BI", activation="sigmoid")(x, y[:, 0].long())
    torch.testing.assert_close(b, a, rtol=0, atol=1e-10)
