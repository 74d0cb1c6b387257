"""DeepSupervisionLoss: the coarse_empty policies on a structure that nnU-Net's downsampling erases, MONAI's
DeepSupervisionLoss as the "nnunet" policy, nnU-Net's list targets, weights and errors."""

import pytest
import torch
import torch.nn.functional as F

import phidice
from phidice.missing.deep_supervision import coarse_level, deep_supervision_weights

B, C = 2, 3


def _erased_case():
    """8×8 labels: image 0 holds a 1-voxel class 2 at (0, 0), which nearest-exact to 4×4 drops (it samples the
    fine voxels 1, 3, 5, 7 of each axis), and a 4×4 class 1; image 1 a 4×4 class 1."""
    lab = torch.zeros(B, 8, 8, dtype=torch.long)
    lab[0, 0, 0] = 2
    lab[0, 4:8, 4:8] = 1
    lab[1, 2:6, 2:6] = 1
    g = torch.Generator().manual_seed(0)
    outs = [
        torch.randn(B, C, 8, 8, dtype=torch.float64, generator=g),
        torch.randn(B, C, 4, 4, dtype=torch.float64, generator=g),
    ]
    return lab, outs


def test_the_case_erases_the_structure():
    lab, outs = _erased_case()
    coarse = F.interpolate(lab[:, None].float(), size=(4, 4), mode="nearest-exact")[:, 0].long()  # nnU-Net's
    assert (lab[0] == 2).sum() == 1 and (coarse[0] == 2).sum() == 0
    y, _, erased, _ = coarse_level("missing", lab, None, outs[1], "softmax", None)
    torch.testing.assert_close(y, coarse, rtol=0, atol=0)
    assert erased.tolist() == [[False, False, True], [False, False, False]]


@pytest.mark.parametrize("phi", ["I", "BI"])
def test_missing_gives_the_erased_subset_no_gradient(phi):
    """Sigmoid channels are independent: under "missing" the coarse logits of (image 0, class 2) get exactly no
    gradient; under "nnunet" they are pushed towards empty (positive ∂L/∂x: lower the logits)."""
    lab, outs = _erased_case()
    grads = {}
    for policy in ("missing", "nnunet"):
        xs = [o.clone().requires_grad_() for o in outs]
        loss = phidice.DeepSupervisionLoss(
            phidice.DiceLoss(phi=phi, activation="sigmoid", eps=1.0), weight_mode="same", coarse_empty=policy
        )
        loss(xs, lab).backward()
        grads[policy] = xs[1].grad
    assert torch.count_nonzero(grads["missing"][0, 2]) == 0
    assert bool((grads["nnunet"][0, 2] > 0).all())
    assert torch.count_nonzero(grads["missing"][0, 1]) > 0  # the other entries still learn
    if phi == "I":  # the mean runs over the 5 kept (b, c) subsets instead of 6: image 1's gradient × 6/5
        torch.testing.assert_close(grads["missing"][1], grads["nnunet"][1] * 6 / 5, rtol=1e-12, atol=0)


def test_missing_is_the_leaf_dice_with_the_erased_class_unannotated():
    lab, outs = _erased_case()
    for base in (phidice.DiceCELoss(phi="BI"), phidice.DiceFocalLoss(phi="I", include_background=False)):
        got = phidice.DeepSupervisionLoss(base, weights=[0.0, 1.0], coarse_empty="missing")(outs, lab)
        coarse = F.interpolate(lab[:, None].float(), size=(4, 4), mode="nearest-exact")[:, 0].long()
        annotated = torch.tensor([[True, True, False], [True, True, True]])
        leaf = (
            phidice.LeafDiceCELoss(phi="BI")
            if isinstance(base, phidice.DiceCELoss)
            else phidice.LeafDiceFocalLoss(phi="I", include_background=False)
        )
        torch.testing.assert_close(got, leaf(outs[1], coarse, annotated), rtol=0, atol=1e-12)


def test_maxpool_keeps_the_structure_non_empty():
    lab, outs = _erased_case()
    y, mask, erased, dense = coarse_level("maxpool", lab, None, outs[1], "softmax", None)
    assert dense and erased is None and mask is None
    assert y[0, 2].sum() == 1 and y[0, 2, 0, 0] == 1 and y[0, 0, 0, 0] == 0  # background yields to the class
    torch.testing.assert_close(y.sum(1), torch.ones(B, 4, 4, dtype=y.dtype))
    x = outs[1].clone().requires_grad_()
    phidice.DeepSupervisionLoss(phidice.DiceLoss(activation="sigmoid"), weights=[0.0, 1.0], coarse_empty="maxpool")(
        [outs[0], x], lab
    ).backward()
    assert x.grad[0, 2, 0, 0] < 0  # pulled up where the structure survives
    # sigmoid (overlapping channels): plain max-pooling, no background rule
    y, *_ = coarse_level("maxpool", F.one_hot(lab, C).movedim(-1, 1).bool(), None, outs[1], "sigmoid", None)
    assert y[0, 2, 0, 0] == 1 and y[0, 0, 0, 0] == 1


def test_maxpool_splits_a_cell_of_two_classes_and_keeps_ignored_voxels_out():
    lab = torch.zeros(1, 4, 4, dtype=torch.long)
    lab[0, 0, 0], lab[0, 0, 1] = 1, 2
    lab[0, 2:4, 2:4] = 255
    out = torch.zeros(1, C, 2, 2, dtype=torch.float64)
    y, mask, _, _ = coarse_level("maxpool", lab, None, out, "softmax", 255)
    assert y[0, :, 0, 0].tolist() == [0.0, 0.5, 0.5]
    assert mask[0, 0].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    loss = phidice.DeepSupervisionLoss(phidice.DiceCELoss(ignore_index=255), coarse_empty="maxpool", weights=[0, 1])
    expected = phidice.DiceCELoss()(out, y, mask=mask)
    torch.testing.assert_close(loss([torch.zeros(1, C, 4, 4, dtype=torch.float64), out], lab), expected)


@pytest.mark.parametrize("base", ["dice", "dice_focal"])
@pytest.mark.parametrize("weight_mode", ["exp", "two", "same"])
def test_nnunet_policy_equals_monai_deep_supervision_loss(base, weight_mode):
    """MONAI accumulates the levels in float32 (``torch.tensor(0, dtype=torch.float)``), hence 1e-6."""
    monai_losses = pytest.importorskip("monai.losses")
    lab, outs = _erased_case()
    outs.append(torch.randn(B, C, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    onehot = F.one_hot(lab, C).movedim(-1, 1).double()
    if base == "dice":
        monai, ours = monai_losses.DiceLoss(softmax=True), phidice.DiceLoss()
    else:
        monai, ours = monai_losses.DiceFocalLoss(softmax=True), phidice.DiceFocalLoss(focal_activation="sigmoid")
    x1, x2 = [o.clone().requires_grad_() for o in outs], [o.clone().requires_grad_() for o in outs]
    a = monai_losses.DeepSupervisionLoss(monai, weight_mode=weight_mode)(x1, onehot)
    b = phidice.DeepSupervisionLoss(ours, weight_mode=weight_mode, coarse_empty="nnunet")(x2, onehot)
    a.backward()
    b.backward()
    torch.testing.assert_close(b, a.double(), rtol=0, atol=1e-6)
    for g1, g2 in zip(x1, x2):
        torch.testing.assert_close(g2.grad, g1.grad, rtol=0, atol=1e-6)


def test_nnunet_list_targets_equal_the_full_target():
    """nnU-Net's data loader gives one target per level (nearest-exact): the same loss as downsampling here."""
    lab, outs = _erased_case()
    targets = [lab[:, None], F.interpolate(lab[:, None].float(), size=(4, 4), mode="nearest-exact").long()]
    for policy in ("missing", "nnunet", "maxpool"):
        loss = phidice.DeepSupervisionLoss(phidice.DiceCELoss(phi="BI"), weight_mode="nnunet", coarse_empty=policy)
        torch.testing.assert_close(loss(outs, targets), loss(outs, lab), rtol=0, atol=1e-12)


def test_weights_and_errors():
    assert phidice.DeepSupervisionLoss(phidice.DiceLoss()).coarse_empty == "nnunet"  # BENCHMARKS.md § 8
    assert deep_supervision_weights(3, "nnunet") == [2 / 3, 1 / 3, 0.0]
    assert deep_supervision_weights(6, "exp")[-1] == 0.0625
    lab, outs = _erased_case()
    with pytest.raises(ValueError, match="coarse_empty must be one of 'missing', 'maxpool', 'nnunet'"):
        phidice.DeepSupervisionLoss(phidice.DiceLoss(), coarse_empty="drop")
    with pytest.raises(ValueError, match="weight_mode must be one of"):
        phidice.DeepSupervisionLoss(phidice.DiceLoss(), weight_mode="linear")
    with pytest.raises(ValueError, match="weights must be numbers ≥ 0"):
        phidice.DeepSupervisionLoss(phidice.DiceLoss(), weights=[1.0, -0.5])
    with pytest.raises(ValueError, match="weights has 1 entries for 2 deep-supervision levels"):
        phidice.DeepSupervisionLoss(phidice.DiceLoss(), weights=[1.0])(outs, lab)
    with pytest.raises(ValueError, match="2 outputs and 1 targets"):
        phidice.DeepSupervisionLoss(phidice.DiceLoss())(outs, [lab])
    with pytest.raises(TypeError, match="loss must be a phidice loss module"):
        phidice.DeepSupervisionLoss(torch.nn.MSELoss())
    single = phidice.DeepSupervisionLoss(phidice.DiceLoss())(outs[0], lab)
    torch.testing.assert_close(single, phidice.DiceLoss()(outs[0], lab))


def test_a_sample_whose_every_class_is_erased_leaves_the_level():
    """Sigmoid with one channel: the only structure of image 0 is erased; that image leaves the coarse level."""
    lab = torch.zeros(2, 8, 8, dtype=torch.long)
    lab[0, 0, 0] = 1
    lab[1, 2:6, 2:6] = 1
    g = torch.Generator().manual_seed(3)
    outs = [
        torch.randn(2, 1, 8, 8, dtype=torch.float64, generator=g),
        torch.randn(2, 1, 4, 4, dtype=torch.float64, generator=g).requires_grad_(),
    ]
    loss = phidice.DeepSupervisionLoss(
        phidice.DiceLoss(activation="sigmoid"), weights=[0.0, 1.0], coarse_empty="missing"
    )
    loss(outs, lab).backward()
    assert torch.count_nonzero(outs[1].grad[0]) == 0 and torch.count_nonzero(outs[1].grad[1]) > 0
