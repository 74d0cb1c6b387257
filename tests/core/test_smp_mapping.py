"""docs/mapping.md's segmentation_models.pytorch row, held against smp's DiceLoss computed by hand.

smp (``segmentation_models_pytorch.losses.DiceLoss(mode="multiclass", from_logits=True, smooth, eps)``, read in
its losses/dice.py and _functional.py) sums over the batch and the pixels (Φ = BI), takes
``(2 Σ p·y + smooth) / (Σ p + Σ y + smooth).clamp_min(eps)``, multiplies the loss of every class absent from
the batch's target by 0 and then means over *all* classes. phidice: ``phi="BI", eps=smooth, empty="skip",
reduction="none"`` (a skipped subset is 0 there), then ``.mean()``.
"""

import pytest
import torch
import torch.nn.functional as F

import phidice


def smp_multiclass_dice_loss(logits, labels, smooth=0.0, eps=1e-7):
    B, C = logits.shape[:2]
    p = logits.log_softmax(dim=1).exp().view(B, C, -1)
    y = F.one_hot(labels.view(B, -1), C).permute(0, 2, 1).type_as(p)
    dims = (0, 2)
    score = (2 * (p * y).sum(dims) + smooth) / ((p + y).sum(dims) + smooth).clamp_min(eps)
    loss = (1.0 - score) * (y.sum(dims) > 0).to(p.dtype)  # classes absent from the target: 0
    return loss.mean()  # over every class, absent ones included


def phidice_translation(logits, labels, smooth=0.0):
    return phidice.dice_loss(logits, labels, phi="BI", eps=smooth, empty="skip", reduction="none").mean()


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_smp_dice_loss_equals_the_documented_translation(smooth):
    torch.manual_seed(3)
    logits = torch.randn(3, 5, 6, 7, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 3, (3, 6, 7))  # classes 3 and 4 absent from the whole batch
    want = smp_multiclass_dice_loss(logits, labels, smooth)
    got = phidice_translation(logits, labels, smooth)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    (g_want,) = torch.autograd.grad(want, logits)
    (g_got,) = torch.autograd.grad(phidice_translation(logits, labels, smooth), logits)
    torch.testing.assert_close(g_got, g_want, rtol=1e-10, atol=1e-12)


def test_smp_is_not_the_mean_over_present_classes():
    """The old row said "skip": phidice's empty="skip" with the default mean divides by the 3 present classes,
    smp by all 5."""
    torch.manual_seed(4)
    logits = torch.randn(2, 5, 8, 8, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 8, 8))
    skip_mean = phidice.dice_loss(logits, labels, phi="BI", eps=0.0, empty="skip")
    torch.testing.assert_close(smp_multiclass_dice_loss(logits, labels), skip_mean * 3 / 5, rtol=1e-12, atol=0)
