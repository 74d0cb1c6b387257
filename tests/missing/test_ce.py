"""Marginal cross-entropy and the Dice + CE combinations."""

import math

import pytest
import torch
import torch.nn.functional as F

import phidice
from phidice.missing.functional import leaf_dice_loss, marginal_cross_entropy, marginal_dice_loss


def test_hand_computed_softmax():
    # probabilities (.5, .3, .2) and (.2, .1, .7); class 1 unannotated; labels (0, 2)
    p = torch.tensor([[[0.5, 0.2], [0.3, 0.1], [0.2, 0.7]]], dtype=torch.float64)
    got = marginal_cross_entropy(p.log(), torch.tensor([[0, 2]]), torch.tensor([[True, False, True]]))
    assert got.item() == pytest.approx(-(math.log(0.8) + math.log(0.7)) / 2, abs=1e-14)


def test_hand_computed_weighted_and_masked():
    p = torch.tensor([[[0.5, 0.2, 0.6], [0.3, 0.1, 0.1], [0.2, 0.7, 0.3]]], dtype=torch.float64)
    y = torch.tensor([[0, 2, 0]])
    ann = torch.tensor([[1, 0, 1]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    got = marginal_cross_entropy(p.log(), y, ann, ce_weight=[2.0, 5.0, 3.0], mask=mask)
    expected = (-2 * math.log(0.8) - 3 * math.log(0.7)) / (2 + 3)
    assert got.item() == pytest.approx(expected, abs=1e-14)


def test_all_annotated_equals_torch():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 5, 6, dtype=torch.float64)
    y = torch.randint(0, 4, (2, 5, 6))
    y[0, 0] = -100
    w = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=torch.float64)
    ref = F.cross_entropy(x, y, weight=w, ignore_index=-100)
    assert torch.allclose(marginal_cross_entropy(x, y, None, ce_weight=w, ignore_index=-100), ref, rtol=0, atol=1e-14)
    soft = torch.softmax(torch.randn(2, 4, 5, 6, dtype=torch.float64), 1)
    assert torch.allclose(marginal_cross_entropy(x, soft), F.cross_entropy(x, soft), rtol=0, atol=1e-14)


def test_dense_target_equals_labels():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 9, dtype=torch.float64)
    ann = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    y = torch.randint(0, 2, (2, 9))
    dense = F.one_hot(y, 3).movedim(-1, 1).double()
    assert torch.allclose(marginal_cross_entropy(x, dense, ann), marginal_cross_entropy(x, y, ann), atol=1e-14)


def test_sigmoid_drops_unannotated_channels():
    torch.manual_seed(2)
    x = torch.randn(1, 3, 8, dtype=torch.float64)
    y = (torch.rand(1, 3, 8) > 0.5).double()
    y[0, 1] = 0
    got = marginal_cross_entropy(x, y, torch.tensor([[True, False, True]]), activation="sigmoid")
    ref = F.binary_cross_entropy_with_logits(x[:, [0, 2]], y[:, [0, 2]])
    assert torch.allclose(got, ref, rtol=0, atol=1e-14)


def test_stable_for_huge_logits():
    # merged channels both at −1e4, an annotated class at +1e4: naive log(p_0 + p_u) is log 0 = −inf
    x = torch.tensor([[[-1e4], [-1e4], [1e4]]])
    got = marginal_cross_entropy(x, torch.tensor([[0]]), torch.tensor([[True, False, True]]))
    assert got.item() == pytest.approx(2e4 - math.log(2), rel=1e-6)
    torch.manual_seed(3)
    x = (torch.randint(0, 2, (2, 4, 6, 6)).float() * 2 - 1) * 1e4
    y = torch.randint(0, 2, (2, 6, 6))
    ann = torch.tensor([[1, 1, 0, 1], [1, 1, 1, 0]], dtype=torch.bool)
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        xi = x.to(dtype).detach().requires_grad_(True)
        loss = (
            phidice.MarginalDiceCELoss(phi="BI")(xi, y, ann)
            + phidice.LeafDiceCELoss(phi="I")(xi, y, ann)
            + phidice.MarginalDiceLoss(phi="CI")(xi, y, ann)
        )
        loss.backward()
        assert torch.isfinite(loss) and bool(torch.isfinite(xi.grad).all())


def test_half_precision_matches_float32():
    torch.manual_seed(4)
    x = torch.randn(2, 4, 8, 8)
    y = torch.randint(0, 3, (2, 8, 8))
    ann = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    ref = phidice.MarginalDiceCELoss()(x, y, ann)
    for dtype, tol in ((torch.float16, 2e-3), (torch.bfloat16, 2e-2)):
        got = phidice.MarginalDiceCELoss()(x.to(dtype), y, ann)
        assert got.dtype == torch.float32 and abs(got.item() - ref.item()) < tol


def test_dice_ce_combinations():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 7, dtype=torch.float64)
    y = torch.randint(0, 2, (2, 7))
    ann = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    ce = marginal_cross_entropy(x, y, ann)
    kw = dict(phi="BI", eps=0.5)
    got = phidice.MarginalDiceCELoss(lambda_dice=0.3, lambda_ce=2.0, **kw)(x, y, ann)
    assert torch.allclose(got, 0.3 * marginal_dice_loss(x, y, ann, **kw) + 2.0 * ce, atol=1e-14)
    got = phidice.LeafDiceCELoss(lambda_dice=0.3, lambda_ce=2.0, **kw)(x, y, ann)
    assert torch.allclose(got, 0.3 * leaf_dice_loss(x, y, ann, **kw) + 2.0 * ce, atol=1e-14)
    assert torch.allclose(phidice.MarginalCrossEntropyLoss()(x, y, ann), ce, rtol=0, atol=0)
    # every class annotated: the core DiceCELoss
    ref = phidice.DiceCELoss(**kw)(x, y)
    assert torch.allclose(phidice.MarginalDiceCELoss(**kw)(x, y), ref, rtol=0, atol=1e-14)
    assert torch.allclose(phidice.LeafDiceCELoss(**kw)(x, y), ref, rtol=0, atol=1e-14)


def test_ce_gradient_of_unannotated_logit():
    # ∂CE/∂z_u, mean of two voxels: p_u − p_u/p'_0 at the label-0 voxel (z_u is part of the merged
    # background, so it is pushed up with it), p_u at the other voxel (as any wrong class)
    x = torch.tensor([[[0.3, -0.2], [1.1, 0.4], [-0.5, 0.9]]], dtype=torch.float64, requires_grad=True)
    marginal_cross_entropy(x, torch.tensor([[0, 2]]), torch.tensor([[True, False, True]])).backward()
    p = torch.softmax(x.detach(), 1)[0]
    expected = torch.stack([(p[1, 0] - p[1, 0] / (p[0, 0] + p[1, 0])), p[1, 1]]) / 2
    assert torch.allclose(x.grad[0, 1], expected, rtol=0, atol=1e-14)


@pytest.mark.filterwarnings("ignore:sync_batch=True but torch.distributed")
def test_sync_batch_without_process_group_is_the_local_mean():
    import phidice.distributed as dist

    if not hasattr(dist, "global_mean"):
        pytest.skip("phidice.distributed.global_mean not available")
    torch.manual_seed(6)
    x = torch.randn(2, 3, 7, dtype=torch.float64)
    y = torch.randint(0, 2, (2, 7))
    ann = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert torch.equal(marginal_cross_entropy(x, y, ann, sync_batch=True), marginal_cross_entropy(x, y, ann))
    assert torch.equal(phidice.MarginalDiceCELoss(sync_batch=True)(x, y, ann), phidice.MarginalDiceCELoss()(x, y, ann))


@pytest.mark.parametrize("target_form", ["labels", "onehot"])
@pytest.mark.parametrize("weighted", [False, True])
def test_marginal_ce_with_everything_annotated_is_torchs_label_smoothed_ce(target_form, weighted):
    """One cross-entropy: with every class annotated the marginal form (label smoothing over the K labelable
    classes) is torch's, label smoothing and class weights included; the compounds use it."""
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 4, 5, 6, dtype=torch.float64, generator=g)
    y = torch.randint(0, 4, (3, 5, 6), generator=g)
    target = y if target_form == "labels" else torch.nn.functional.one_hot(y, 4).movedim(-1, 1).double()
    w = torch.tensor([0.5, 1.0, 2.0, 1.5], dtype=torch.float64) if weighted else None
    everything = torch.ones(3, 4, dtype=torch.bool)
    ours = marginal_cross_entropy(x, target, everything, ce_weight=w, label_smoothing=0.2)
    ref = torch.nn.functional.cross_entropy(x, target, weight=w, label_smoothing=0.2)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    plain = phidice.DiceCELoss(ce_weight=w, label_smoothing=0.2, lambda_dice=0.0)(x, target)
    leaf = phidice.LeafDiceCELoss(ce_weight=w, label_smoothing=0.2, lambda_dice=0.0)(x, target, everything)
    torch.testing.assert_close(plain, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(leaf, ref, rtol=1e-12, atol=1e-12)


def test_label_smoothing_spreads_over_the_labelable_classes():
    """With class 2 unannotated in sample 1, its smoothing mass goes to the K = 3 classes it can be labelled with."""
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (2, 3, 3))
    y[1][y[1] == 2] = 0
    annotated = torch.ones(2, 4, dtype=torch.bool)
    annotated[1, 2] = False
    s = 0.3
    got = marginal_cross_entropy(x, y, annotated, label_smoothing=s)
    logp = torch.log_softmax(x, 1)
    logp1 = torch.stack([torch.logsumexp(torch.stack([logp[1, 0], logp[1, 2]]), 0), logp[1, 1], logp[1, 3]])
    nll0 = -logp[0].gather(0, y[0].unsqueeze(0))[0]
    lab1 = torch.tensor([0, 1, -1, 2])[y[1]]  # labels 0, 1, 3 → merged columns 0, 1, 2
    nll1 = -logp1.gather(0, lab1.unsqueeze(0))[0]
    per0 = (1 - s) * nll0 - s * logp[0].mean(0)
    per1 = (1 - s) * nll1 - s * logp1.mean(0)
    torch.testing.assert_close(got, torch.cat([per0.flatten(), per1.flatten()]).mean(), rtol=1e-12, atol=1e-12)
