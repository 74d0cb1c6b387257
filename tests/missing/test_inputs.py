"""Bad input gets a clear error that names the argument."""

import pytest
import torch

import phidice
from phidice.missing.functional import leaf_dice_loss, marginal_cross_entropy, marginal_dice_loss

ALL = [leaf_dice_loss, marginal_dice_loss, marginal_cross_entropy]


@pytest.fixture
def case():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 2, (2, 4, 4))
    return x, y


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("shape", [(2, 2), (3,), (2, 3, 1), (1, 3)])
def test_wrong_shape(fn, case, shape):
    with pytest.raises(ValueError, match=r"annotated must have shape \(B, C\) = \(2, 3\)"):
        fn(*case, torch.ones(shape, dtype=torch.bool))


@pytest.mark.parametrize("fn", ALL)
def test_float_dtype_is_a_type_error(fn, case):
    with pytest.raises(TypeError, match="annotated must be a bool tensor"):
        fn(*case, torch.ones(2, 3))


def test_integers_must_be_zero_or_one(case):
    with pytest.raises(ValueError, match="only 0 and 1"):
        leaf_dice_loss(*case, torch.tensor([[1, 2, 1], [1, 1, 1]]))
    ok = leaf_dice_loss(*case, [[1, 1, 1], [1, 1, 0]])  # nested lists are accepted
    assert torch.isfinite(ok)
    with pytest.raises(TypeError, match="annotated"):
        leaf_dice_loss(*case, object())


@pytest.mark.parametrize("fn", ALL)
def test_sample_with_nothing_annotated(fn, case):
    with pytest.raises(ValueError, match=r"sample\(s\) \[1\] have no class annotated"):
        fn(*case, torch.tensor([[True, True, True], [False, False, False]]))


@pytest.mark.parametrize("fn", ALL)
def test_background_must_be_annotated(fn, case):
    with pytest.raises(ValueError, match=r"annotated\[:, 0\] \(background\) must be True"):
        fn(*case, torch.tensor([[True, True, True], [False, True, True]]))


@pytest.mark.parametrize("fn", ALL)
def test_labels_of_unannotated_class(fn, case):
    x, y = case
    y[1, 0, 0] = 2
    with pytest.raises(ValueError, match=r"classes marked unannotated, at \(sample, class\) \(1, 2\)"):
        fn(x, y, torch.tensor([[True, True, True], [True, True, False]]))
    y[1, 0, 0] = 255  # an ignored voxel is fine
    value = fn(x, y, torch.tensor([[True, True, True], [True, True, False]]), ignore_index=255)
    assert torch.isfinite(value)


def test_sigmoid_single_channel_rules():
    x = torch.randn(2, 1, 5)
    y = torch.randint(0, 2, (2, 5))
    with pytest.raises(ValueError, match="no class annotated"):
        leaf_dice_loss(x, y, torch.tensor([[True], [False]]), activation="sigmoid")
    assert torch.isfinite(leaf_dice_loss(x, y, torch.tensor([[True], [True]]), activation="sigmoid"))


def test_marginal_needs_exclusive_classes(case):
    x, y = case
    with pytest.raises(ValueError, match="needs activation='softmax'"):
        marginal_dice_loss(x, y, activation="sigmoid")
    with pytest.raises(ValueError, match="needs activation='softmax'"):
        phidice.MarginalDiceLoss(activation="sigmoid")
    with pytest.raises(ValueError, match="needs activation='softmax'"):
        phidice.MarginalDiceCELoss(activation="sigmoid")
    with pytest.raises(ValueError, match="C ≥ 2"):
        marginal_dice_loss(torch.rand(2, 1, 4), torch.randint(0, 2, (2, 4)), activation=None)


def test_marginal_fused_true_with_background(case):
    with pytest.raises(ValueError, match="fused=True but the marginal Dice"):
        marginal_dice_loss(*case, fused=True)


def test_ce_needs_logits_and_voxel_mask(case):
    x, y = case
    with pytest.raises(ValueError, match="needs logits"):
        marginal_cross_entropy(x.softmax(1), y, activation=None)
    with pytest.raises(ValueError, match="needs logits"):
        phidice.LeafDiceCELoss(activation=None)
    with pytest.raises(ValueError, match="voxel-wise mask"):
        marginal_cross_entropy(x, y, mask=torch.ones_like(x))
    with pytest.raises(ValueError, match="ce_weight must have one value per class"):
        marginal_cross_entropy(x, y, ce_weight=[1.0, 2.0])
    with pytest.raises(ValueError, match="reduction 'mean' or 'sum'"):
        phidice.MarginalDiceCELoss(reduction="none")
    with pytest.raises(ValueError, match="lambda_ce"):
        phidice.MarginalDiceCELoss(lambda_ce=-1.0)(x, y)


def test_core_options_are_still_checked(case):
    with pytest.raises(ValueError, match="unknown phi"):
        phidice.LeafDiceLoss(phi="XY")
    with pytest.raises(ValueError, match="eps has 2 values"):
        leaf_dice_loss(*case, eps=[1.0, 2.0])


@pytest.mark.parametrize("cls", [phidice.MarginalDiceLoss, phidice.MarginalDiceCELoss, phidice.LeafDiceLoss])
def test_labels_out_of_range_are_named_on_every_path(cls):
    """The marginal Dice with the background scored runs the dense path: its labels are checked there too."""
    x = torch.randn(2, 3, 4, 4)
    y = torch.randint(0, 3, (2, 4, 4))
    y[1, 0, 0] = 3
    with pytest.raises(ValueError, match=r"target labels must lie in \[0, 2\]"):
        cls()(x, y, torch.ones(2, 3, dtype=torch.bool))
