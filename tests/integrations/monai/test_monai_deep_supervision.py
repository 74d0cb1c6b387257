"""phidice's losses under monai.losses.DeepSupervisionLoss with MONAI's float labels (B, 1, *S).

DeepSupervisionLoss resizes the target to each output with nearest-exact interpolation (float only) and sums
the weighted losses; the value and the gradient of every output must be that weighted sum, computed here by hand.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import phidice

monai_losses = pytest.importorskip("monai.losses")
from monai.data import MetaTensor

from phidice.integrations.monai import AnnotatedLoss

B, C = 3, 4
SIZES = [(16, 12), (8, 6), (4, 3)]


def _outputs(C=C, meta=True):
    g = torch.Generator().manual_seed(0)
    preds = [torch.randn(B, C, *s, generator=g) * 2 for s in SIZES]
    label = torch.randint(0, C, (B, 1, *SIZES[0]), generator=g).float()
    if C > 1:
        label[1][label[1] == 2] = 0  # class 2 unannotated (and empty) in sample 1
    if meta:
        preds = [MetaTensor(p, meta={"filename_or_obj": "x"}) for p in preds]
        label = MetaTensor(label, meta={"filename_or_obj": "y"})
    return preds, label


def _by_hand(loss, preds, label, weights, *extra):
    """Σ_l w_l · loss(pred_l, label resized to pred_l), on plain tensors, and the gradient of every pred."""
    xs = [torch.as_tensor(p).as_subclass(torch.Tensor).detach().clone().requires_grad_() for p in preds]
    y = torch.as_tensor(label).as_subclass(torch.Tensor)
    total = 0
    for w, x in zip(weights, xs):
        y_l = y if x.shape[2:] == y.shape[2:] else F.interpolate(y, size=x.shape[2:], mode="nearest-exact")
        assert torch.equal(y_l, y_l.round())  # still labels
        total = total + w * loss(x, y_l, *extra)
    total.backward()
    return total, [x.grad for x in xs]


def _monai(ds, preds, label):
    xs = [p.detach().clone().requires_grad_() for p in preds]
    value = ds(xs, label)
    value.backward()
    return value, [x.grad.as_subclass(torch.Tensor) for x in xs]


LOSSES = {
    "DiceLoss-BI": lambda: phidice.DiceLoss(phi="BI", include_background=False),
    "DiceLoss-I-reference": lambda: phidice.DiceLoss(phi="I", fused=False),
    "DiceCELoss-BI": lambda: phidice.DiceCELoss(phi="BI", include_background=False),
}


@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("weight_mode,weights", [("exp", [1.0, 0.5, 0.25]), ("same", [1.0, 1.0, 1.0])])
@pytest.mark.parametrize("meta", [True, False], ids=["MetaTensor", "Tensor"])
def test_deep_supervision_is_the_weighted_sum(name, weight_mode, weights, meta):
    loss = LOSSES[name]()
    preds, label = _outputs(meta=meta)
    ds = monai_losses.DeepSupervisionLoss(loss, weight_mode=weight_mode)
    assert ds.get_weights(len(preds)) == weights
    value, grads = _monai(ds, preds, label)
    expected, expected_grads = _by_hand(loss, preds, label, weights)
    torch.testing.assert_close(value.as_subclass(torch.Tensor), expected.detach(), rtol=1e-6, atol=1e-6)
    for g, eg in zip(grads, expected_grads):
        torch.testing.assert_close(g, eg, rtol=1e-5, atol=1e-7)
        assert g.abs().sum() > 0
    # a single output is the loss itself
    single = ds(preds[0], label)
    torch.testing.assert_close(single.as_subclass(torch.Tensor), loss(preds[0], label).as_subclass(torch.Tensor))


def test_deep_supervision_binary_sigmoid():
    preds, label = _outputs(C=1)
    label = (label > 0).float()  # a binary map (B, 1, *S), as MONAI gives it
    loss = phidice.DiceLoss(phi="BI", activation="sigmoid")
    value, grads = _monai(monai_losses.DeepSupervisionLoss(loss, weights=[1.0, 0.3, 0.1]), preds, label)
    expected, expected_grads = _by_hand(loss, preds, label, [1.0, 0.3, 0.1])
    torch.testing.assert_close(value.as_subclass(torch.Tensor), expected.detach(), rtol=1e-6, atol=1e-6)
    for g, eg in zip(grads, expected_grads):
        torch.testing.assert_close(g, eg, rtol=1e-5, atol=1e-7)


def test_deep_supervision_with_partial_labels():
    """The annotated rows ride in the label's metadata and survive the resizing of every level."""
    preds, label = _outputs()
    annotated = torch.ones(B, C, dtype=torch.bool)
    annotated[1, 2] = False
    label.meta["annotated"] = annotated
    leaf = phidice.LeafDiceLoss(phi="BI", include_background=False)
    value, grads = _monai(monai_losses.DeepSupervisionLoss(AnnotatedLoss(leaf)), preds, label)
    expected, expected_grads = _by_hand(leaf, preds, label, [1.0, 0.5, 0.25], annotated)
    torch.testing.assert_close(value.as_subclass(torch.Tensor), expected.detach(), rtol=1e-6, atol=1e-6)
    for g, eg in zip(grads, expected_grads):
        torch.testing.assert_close(g, eg, rtol=1e-5, atol=1e-7)
    plain, _ = _by_hand(phidice.DiceLoss(phi="BI", include_background=False), preds, label, [1.0, 0.5, 0.25])
    assert abs(plain.item() - value.item()) > 1e-4  # the rows were used
