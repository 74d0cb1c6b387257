"""Hand-computed cases for what no oracle can express: CI/BCI, per-class ε, ε for empty maps, skip, masks."""

import pytest
import torch

import phidice


def _case():
    # B = 2 images, C = 2 classes, 4 voxels; probabilities given directly (activation=None)
    p = torch.tensor(
        [[[0.9, 0.8, 0.1, 0.2], [0.1, 0.2, 0.9, 0.8]], [[0.6, 0.7, 0.6, 0.5], [0.4, 0.3, 0.4, 0.5]]],
        dtype=torch.float64,
    )
    y = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]])  # class 1 empty in image 1
    return p, y


def _dsc(i, s, e_nr, e_dr):
    return (2 * i + e_nr) / (s + e_dr)


def test_four_phis_by_hand():
    p, y = _case()
    # per (b, c): I = Σ y p, S = Σ (y + p)
    I = [[1.7, 1.7], [2.4, 0.0]]
    S = [[2.0 + 2.0, 2.0 + 2.0], [2.4 + 4.0, 1.6 + 0.0]]
    e = 0.5
    want = {
        "I": 1 - sum(_dsc(I[b][c], S[b][c], e, e) for b in range(2) for c in range(2)) / 4,
        "CI": 1 - sum(_dsc(I[b][0] + I[b][1], S[b][0] + S[b][1], e, e) for b in range(2)) / 2,
        "BI": 1 - sum(_dsc(I[0][c] + I[1][c], S[0][c] + S[1][c], e, e) for c in range(2)) / 2,
        "BCI": 1 - _dsc(sum(map(sum, I)), sum(map(sum, S)), e, e),
    }
    for phi, value in want.items():
        assert float(phidice.dice_loss(p, y, phi=phi, eps=e, activation=None)) == pytest.approx(value, abs=1e-12)


def test_per_class_eps_in_class_sums_is_summed():
    """CI with per-class ε: the subset of image b gets ε_0 + ε_1 (a virtual volume per class)."""
    p, y = _case()
    I = [[1.7, 1.7], [2.4, 0.0]]
    S = [[4.0, 4.0], [6.4, 1.6]]
    e = [1.0, 3.0]
    want = 1 - sum(_dsc(I[b][0] + I[b][1], S[b][0] + S[b][1], 4.0, 4.0) for b in range(2)) / 2
    assert float(phidice.dice_loss(p, y, phi="CI", eps=e, activation=None)) == pytest.approx(want, abs=1e-12)


def test_eps_empty_applies_to_empty_subsets_only():
    p, y = _case()
    got = phidice.dice_loss(p, y, phi="I", eps=1e-5, eps_empty=10.0, activation=None, reduction="none")
    assert float(got[1, 1]) == pytest.approx(1 - 10.0 / (1.6 + 10.0), abs=1e-12)
    assert float(got[0, 1]) == pytest.approx(1 - (3.4 + 1e-5) / (4.0 + 1e-5), abs=1e-12)
    # BI: no subset is empty when another image has the class
    bi = phidice.dice_loss(p, y, phi="BI", eps=1e-5, eps_empty=10.0, activation=None, reduction="none")
    assert float(bi[0, 1]) == pytest.approx(1 - (3.4 + 1e-5) / (5.6 + 1e-5), abs=1e-12)


def test_empty_skip_drops_subsets_from_mean():
    p, y = _case()
    per = phidice.dice_loss(p, y, phi="I", eps=1.0, activation=None, reduction="none")
    skip = phidice.dice_loss(p, y, phi="I", eps=1.0, activation=None, empty="skip")
    assert float(skip) == pytest.approx(float(per[0, 0] + per[0, 1] + per[1, 0]) / 3, abs=1e-12)
    none_skip = phidice.dice_loss(p, y, phi="I", eps=1.0, activation=None, empty="skip", reduction="none")
    assert float(none_skip[1, 1]) == 0.0
    # everything empty and skipped: loss 0 with a zero (not missing) gradient
    x = torch.randn(2, 2, 4, dtype=torch.float64, requires_grad=True)
    loss = phidice.dice_loss(x, torch.zeros(2, 4, dtype=torch.long), include_background=False, empty="skip")
    (g,) = torch.autograd.grad(loss, x)
    assert float(loss.detach()) == 0.0 and float(g.abs().max()) == 0.0


@pytest.mark.parametrize("phi,shape", [("I", (2, 2)), ("CI", (2, 1)), ("BI", (1, 2)), ("BCI", (1, 1))])
def test_reduction_none_shapes(phi, shape):
    p, y = _case()
    assert phidice.dice_loss(p, y, phi=phi, activation=None, reduction="none").shape == shape


def test_reduction_sum_and_class_weights_mean():
    p, y = _case()
    per = phidice.dice_loss(p, y, phi="I", eps=1.0, activation=None, reduction="none")
    w = torch.tensor([1.0, 3.0], dtype=torch.float64)
    got = phidice.dice_loss(p, y, phi="I", eps=1.0, activation=None, class_weights=w)
    assert float(got) == pytest.approx(float((per * w).sum() / (2 * w.sum())), abs=1e-12)
    got_sum = phidice.dice_loss(p, y, phi="I", eps=1.0, activation=None, class_weights=w, reduction="sum")
    assert float(got_sum) == pytest.approx(float((per * w).sum()), abs=1e-12)


def test_class_weights_inside_class_sum():
    p, y = _case()
    w = [2.0, 0.5]
    I = [[1.7, 1.7], [2.4, 0.0]]
    S = [[4.0, 4.0], [6.4, 1.6]]
    want = (
        1 - sum(_dsc(w[0] * I[b][0] + w[1] * I[b][1], w[0] * S[b][0] + w[1] * S[b][1], 1.0, 1.0) for b in range(2)) / 2
    )
    got = phidice.dice_loss(p, y, phi="CI", eps=1.0, activation=None, class_weights=w)
    assert float(got) == pytest.approx(want, abs=1e-12)


def test_ignore_index_equals_mask_and_is_applied_after_activation():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, 5, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (2, 5, 5), generator=g)
    ignored = torch.rand(2, 5, 5, generator=g) > 0.7
    y_ign = y.masked_fill(ignored, 255)
    a = phidice.dice_loss(x, y_ign, ignore_index=255, phi="BI")
    b = phidice.dice_loss(x, y, mask=~ignored, phi="BI")
    torch.testing.assert_close(a, b)
    # after the activation: masked voxels leave the sums entirely (not 0.5 / uniform as in MONAI #657)
    p = torch.softmax(x, 1)
    keep = (~ignored).unsqueeze(1).double()
    onehot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1).double()
    inter = (p * onehot * keep).sum((0, 2, 3))
    S = ((p + onehot) * keep).sum((0, 2, 3))
    want = 1 - ((2 * inter + 1e-5) / (S + 1e-5)).mean()
    assert float(a) == pytest.approx(float(want), abs=1e-12)


def test_target_forms_agree():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 5, 3, dtype=torch.float64, generator=g)  # 3-D spatial
    y = torch.randint(0, 3, (2, 4, 5, 3), generator=g)
    onehot = torch.nn.functional.one_hot(y, 3).movedim(-1, 1)
    ref = phidice.dice_loss(x, y)
    for t in (y.unsqueeze(1), onehot.double(), onehot.bool(), y.unsqueeze(1).double()):
        torch.testing.assert_close(phidice.dice_loss(x, t), ref)


def test_one_spatial_dim_and_binary_sigmoid_forms():
    x = torch.randn(3, 1, 11, dtype=torch.float64)
    y = (torch.rand(3, 11) > 0.5).long()
    ref = phidice.dice_loss(x, y, activation="sigmoid")
    torch.testing.assert_close(phidice.dice_loss(x, y.unsqueeze(1), activation="sigmoid"), ref)
    torch.testing.assert_close(phidice.dice_loss(x, y.unsqueeze(1).double(), activation="sigmoid"), ref)
    p = torch.sigmoid(x)[:, 0]
    yd = y.double()
    want = 1 - ((2 * (p * yd).sum(1) + 1e-5) / ((p + yd).sum(1) + 1e-5)).mean()
    assert float(ref) == pytest.approx(float(want), abs=1e-12)


def test_squared_by_hand():
    p, y = _case()
    onehot = torch.nn.functional.one_hot(y, 2).movedim(-1, 1).double()
    inter = (p * onehot).sum(-1)
    den = (p * p).sum(-1) + (onehot * onehot).sum(-1)
    want = 1 - ((2 * inter + 1.0) / (den + 1.0)).mean()
    got = phidice.dice_loss(p, y, eps=1.0, squared=True, activation=None)
    assert float(got) == pytest.approx(float(want), abs=1e-12)


def test_generalized_weights_rule_for_empty_classes():
    """Class 1 is empty in image 1: it takes the largest weight of the other classes of that image."""
    p, y = _case()
    onehot = torch.nn.functional.one_hot(y, 2).movedim(-1, 1).double()
    inter, P, Y = (p * onehot).sum(-1), p.sum(-1), onehot.sum(-1)
    w = torch.tensor([[1 / 4, 1 / 4], [1 / 16, 1 / 16]], dtype=torch.float64)  # 1/Y², image 1 class 1 → max
    num = 2 * (w * inter).sum(1) + 1e-5
    den = (w * (P + Y)).sum(1) + 1e-5
    want = 1 - (num / den).mean()
    got = phidice.dice_loss(p, y, phi="CI", weighting="generalized", activation=None)
    assert float(got) == pytest.approx(float(want), abs=1e-12)


def test_dice_ce_equals_sum_of_parts():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (2, 6, 6), generator=g)
    y[0, 0, 0] = 255
    w = torch.tensor([0.2, 1.0, 2.0], dtype=torch.float64)
    loss = phidice.DiceCELoss("BI", lambda_dice=0.7, lambda_ce=1.3, ce_weight=w, ignore_index=255)(x, y)
    ce = torch.nn.functional.cross_entropy(x, y, weight=w, ignore_index=255)
    dice = phidice.dice_loss(x, y, phi="BI", ignore_index=255)
    assert float(loss) == pytest.approx(float(0.7 * dice + 1.3 * ce), abs=1e-12)
    # sigmoid: BCE on the single channel
    xs = torch.randn(2, 1, 6, dtype=torch.float64, generator=g)
    ys = (torch.rand(2, 6, generator=g) > 0.5).long()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(xs, ys.unsqueeze(1).double())
    got = phidice.DiceCELoss(activation="sigmoid")(xs, ys)
    want = phidice.dice_loss(xs, ys, activation="sigmoid") + bce
    assert float(got) == pytest.approx(float(want), abs=1e-12)


def test_dice_ce_matches_monai():
    monai_losses = pytest.importorskip("monai.losses")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64, generator=g)
    y = torch.randint(0, 3, (2, 1, 6, 6), generator=g)
    expected = monai_losses.DiceCELoss(softmax=True, to_onehot_y=True, batch=True, lambda_dice=0.5)(x, y)
    got = phidice.DiceCELoss("BI", lambda_dice=0.5)(x, y)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_module_matches_functional_and_moves_with_device():
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    y = torch.randint(0, 3, (2, 4, 4))
    m = phidice.DiceLoss("CI", eps=torch.tensor([1.0, 2.0, 3.0]), include_background=False)
    torch.testing.assert_close(
        m(x, y), phidice.dice_loss(x, y, phi="CI", eps=[1.0, 2.0, 3.0], include_background=False)
    )
    assert "phi='CI'" in repr(m)
