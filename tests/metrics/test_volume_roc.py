"""Volumes, ΔV and the volume ROC: hand-computed values, ties, oracles and bad input."""

import numpy as np
import pytest
import torch

from phidice.metrics import volume, volume_difference, volume_roc


def test_volume_by_hand_labels_and_maps():
    lab = torch.zeros(2, 4, 5, 6, dtype=torch.long)
    lab[0, :2, :3, :1] = 1  # 6 voxels of class 1
    lab[0, 3, 4, 5] = 2  # 1 voxel of class 2
    lab[1, :, :, :2] = 2  # 40 voxels of class 2
    v = volume(lab, (2.0, 2.0, 3.0))  # 12 mm³ = 0.012 ml per voxel
    assert v.voxels.tolist() == [[120 - 7, 6, 1], [80, 0, 40]]
    torch.testing.assert_close(v.ml, v.voxels.double() * 0.012, rtol=1e-15, atol=0)
    maps = torch.nn.functional.one_hot(lab, 3).movedim(-1, 1).bool()
    assert torch.equal(volume(maps).voxels, v.voxels)
    assert volume(maps).ml is None
    # a per-image spacing
    v2 = volume(lab, [[1.0, 1.0, 1.0], [2.0, 2.0, 3.0]], include_background=False)
    torch.testing.assert_close(v2.ml, torch.tensor([[0.006, 0.001], [0.0, 0.48]], dtype=torch.float64))


def test_volume_difference_sign_and_ml():
    ref = torch.tensor([[[0, 1, 1, 1], [0, 0, 2, 0]]])  # (1, 2, 4): class 1 ×3, class 2 ×1
    pred = torch.tensor([[[1, 1, 0, 0], [0, 2, 2, 2]]])  # class 1 ×2, class 2 ×3
    dv = volume_difference(pred, ref, (0.5, 2.0), include_background=False)  # 1 mm³ per voxel
    assert dv.voxels.tolist() == [[-1, 2]]  # under-segmented class 1, over-segmented class 2
    torch.testing.assert_close(dv.ml, torch.tensor([[-0.001, 0.002]], dtype=torch.float64))
    # empty reference: ΔV is the predicted volume
    dv0 = volume_difference(pred, torch.zeros_like(ref), num_classes=3)
    assert dv0.voxels[0, 1:].tolist() == [2, 3]


@pytest.mark.parametrize(
    "spacing, match",
    [
        ((1.0, 1.0), "3 values"),
        ((1.0, 0.0, 1.0), "> 0"),
        ((1.0, float("nan"), 1.0), "finite"),
        ([[1, 1, 1]] * 3, r"\(2, 3\)"),
        ("abc", "mm"),
    ],
)
def test_volume_bad_spacing(spacing, match):
    with pytest.raises((ValueError, TypeError), match=match):
        volume(torch.zeros(2, 3, 3, 3, dtype=torch.long), spacing)


def test_volume_threshold():
    p = torch.tensor([[[[0.2, 0.6], [0.5, 0.9]]]])  # (1, 1, 2, 2)
    assert volume(p, threshold=0.5).voxels.tolist() == [[3]]
    with pytest.raises(ValueError, match="threshold"):
        volume(p)


def test_roc_by_hand():
    # positives 3, 5, 7 ; negatives 1, 4 → pairs (pos > neg): 3>1, 5>1, 5>4, 7>1, 7>4 = 5 of 6
    roc = volume_roc([1.0, 3.0, 4.0, 5.0, 7.0], ["LGG", "HGG", "LGG", "HGG", "HGG"], positive="HGG")
    assert roc.auc == pytest.approx(5 / 6, abs=1e-15)
    np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 0, 0.5, 0.5, 1])
    np.testing.assert_array_equal(roc.thresholds, [np.inf, 7, 5, 4, 3, 1])
    assert (roc.positive, roc.n_positive, roc.n_negative) == ("HGG", 3, 2)
    # the other group as positive mirrors the curve: AUC 1 − 5/6
    assert volume_roc(
        [1.0, 3.0, 4.0, 5.0, 7.0], ["LGG", "HGG", "LGG", "HGG", "HGG"], positive="LGG"
    ).auc == pytest.approx(1 / 6, abs=1e-15)


def test_roc_ties_are_one_diagonal_step():
    # one positive and one negative both at 0 (empty predictions): the tie counts 1/2
    roc = volume_roc([0.0, 0.0, 2.0], [1, 0, 1])
    np.testing.assert_allclose(roc.fpr, [0, 0, 1])
    np.testing.assert_allclose(roc.tpr, [0, 0.5, 1])
    assert roc.auc == pytest.approx((1 + 0.5) / 2)
    # all volumes tied: chance level
    assert volume_roc([3, 3, 3, 3], [True, False, True, False]).auc == pytest.approx(0.5)


def test_roc_matches_mann_whitney_and_sklearn_with_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 40
        g = rng.integers(0, 2, n)
        g[:2] = [0, 1]
        v = rng.integers(0, 6, n).astype(float) * 0.5 + g * rng.integers(0, 2, n)  # many ties
        roc = volume_roc(v, g)
        u = scipy_stats.mannwhitneyu(v[g == 1], v[g == 0], alternative="two-sided").statistic
        assert roc.auc == pytest.approx(u / ((g == 1).sum() * (g == 0).sum()), abs=1e-12)
        assert roc.auc == pytest.approx(sk.roc_auc_score(g, v), abs=1e-12)
        fpr, tpr, _ = sk.roc_curve(g, v, drop_intermediate=False)
        np.testing.assert_allclose(roc.fpr, fpr)
        np.testing.assert_allclose(roc.tpr, tpr)


def test_roc_accepts_tensors():
    roc = volume_roc(torch.tensor([1.0, 2.0]), torch.tensor([0, 1]))
    assert roc.auc == 1.0


@pytest.mark.parametrize(
    "vols, groups, kw, match",
    [
        ([1.0, 2.0], [1, 1], {}, "two distinct groups"),
        ([1.0, 2.0, 3.0], ["a", "b", "c"], {}, "two distinct groups"),
        ([1.0, 2.0, 3.0], [0, 1], {}, "same length"),
        ([1.0, 2.0], ["a", "b"], {}, "positive must name"),
        ([1.0, 2.0], ["a", "b"], {"positive": "c"}, "not one of"),
        ([1.0, float("nan")], [0, 1], {}, "finite"),
        ([[1.0, 2.0]], [0, 1], {}, "one-dimensional"),
    ],
)
def test_roc_bad_input(vols, groups, kw, match):
    with pytest.raises(ValueError, match=match):
        volume_roc(vols, groups, **kw)
