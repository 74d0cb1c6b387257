"""Hard Dice per φ: hand-computed values, every empty convention, input layouts and bad input."""

import math

import numpy as np
import pytest
import torch

from phidice import DiceStats
from phidice.metrics import EMPTY_CONVENTIONS, dice_score, hard_stats, score_from_stats

NAN = float("nan")


def _same(a, b):
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.equal(torch.isnan(a), torch.isnan(b)), (a, b)
    torch.testing.assert_close(torch.nan_to_num(a), torch.nan_to_num(b), rtol=0, atol=1e-12)


# Two 1-D "images" of 6 voxels, 3 classes, written out by hand.
PRED = torch.tensor([[0, 1, 1, 2, 2, 0], [0, 0, 1, 1, 0, 0]])
REF = torch.tensor([[0, 1, 0, 2, 0, 0], [0, 0, 1, 0, 0, 0]])
# image 0: c0 P={0,5} Y={0,2,4,5} I=2 | c1 P={1,2} Y={1} I=1 | c2 P={3,4} Y={3} I=1
# image 1: c0 P={0,1,4,5} Y={0,1,3,4,5} I=4 | c1 P={2,3} Y={2} I=1 | c2 P={} Y={} I=0


def test_counts_by_hand():
    s = hard_stats(PRED, REF)
    assert s.intersection.tolist() == [[2, 1, 1], [4, 1, 0]]
    assert s.pred_sum.tolist() == [[2, 2, 2], [4, 2, 0]]
    assert s.target_sum.tolist() == [[4, 1, 1], [5, 1, 0]]
    assert s.intersection.dtype == torch.int64


@pytest.mark.parametrize("empty, last", [("nan", NAN), ("ratio", NAN), ("one", 1.0), ("zero", 0.0)])
def test_phi_I_by_hand(empty, last):
    _same(dice_score(PRED, REF, empty=empty), [[4 / 6, 2 / 3, 2 / 3], [8 / 9, 2 / 3, last]])


def test_every_phi_by_hand():
    _same(dice_score(PRED, REF, phi="CI"), [[2 * 4 / 12], [2 * 5 / 12]])
    _same(dice_score(PRED, REF, phi="BI"), [[2 * 6 / 15, 2 * 2 / 6, 2 * 1 / 3]])
    _same(dice_score(PRED, REF, phi="BCI"), [[2 * 9 / 24]])
    _same(dice_score(PRED, REF, phi="I", reduction="mean"), (4 / 6 + 2 / 3 + 2 / 3 + 8 / 9 + 2 / 3) / 5)


def test_include_background_false_drops_class_0():
    _same(dice_score(PRED, REF, include_background=False, empty="one"), [[2 / 3, 2 / 3], [2 / 3, 1.0]])


# The two cells where the conventions differ: empty reference with empty / non-empty prediction.
@pytest.mark.parametrize(
    "empty, both_empty, fp_only", [("nan", NAN, NAN), ("ratio", NAN, 0.0), ("one", 1.0, 0.0), ("zero", 0.0, 0.0)]
)
def test_empty_conventions_table(empty, both_empty, fp_only):
    ref = torch.zeros(2, 1, 4, dtype=torch.bool)
    pred = torch.zeros(2, 1, 4, dtype=torch.bool)
    pred[1, 0, :2] = True  # image 1: two false-positive voxels
    _same(dice_score(pred, ref, empty=empty), [[both_empty], [fp_only]])
    # a non-empty reference is never affected by the convention
    ref2 = ref.clone()
    ref2[:, 0, 0] = True
    _same(dice_score(pred, ref2, empty=empty), [[0.0], [2 / 3]])


def test_empty_applies_per_subset_phi():
    # image 0 has no class-2 voxel, image 1 does: under Φ=BI class 2 is defined, under Φ=I image 0's is not
    ref = torch.tensor([[0, 1, 1, 0], [0, 2, 2, 1]])
    pred = torch.tensor([[0, 1, 2, 0], [0, 2, 0, 1]])
    i = dice_score(pred, ref, phi="I", empty="nan")
    assert math.isnan(i[0, 2]) and not math.isnan(i[1, 2])
    _same(dice_score(pred, ref, phi="BI", empty="nan")[0, 2], 2 * 1 / (2 + 2))
    # mean over Φ = I leaves the undefined entry out (nanmean)
    defined = i[~torch.isnan(i)]
    _same(dice_score(pred, ref, reduction="mean"), defined.mean())
    # everything undefined → NaN, not an error
    z = torch.zeros(1, 4, dtype=torch.long)
    assert math.isnan(dice_score(z, z, num_classes=2, include_background=False, reduction="mean"))


def _oracle(pred_oh: np.ndarray, ref_oh: np.ndarray, empty: str) -> np.ndarray:
    """Independent per-(b, c) loop, straight from the definition."""
    B, C = pred_oh.shape[:2]
    out = np.empty((B, C))
    for b in range(B):
        for c in range(C):
            p, y = pred_oh[b, c].astype(bool), ref_oh[b, c].astype(bool)
            if y.sum() > 0:
                out[b, c] = 2 * (p & y).sum() / (p.sum() + y.sum())
            elif empty == "nan" or (empty == "ratio" and p.sum() == 0):
                out[b, c] = np.nan
            elif empty == "one" and p.sum() == 0:
                out[b, c] = 1.0
            else:
                out[b, c] = 0.0
    return out


@pytest.mark.parametrize("empty", EMPTY_CONVENTIONS)
def test_random_against_loop_oracle_and_layouts(empty):
    g = torch.Generator().manual_seed(1)
    B, C = 4, 4
    ref = torch.randint(0, C, (B, 5, 6), generator=g)
    ref[0][ref[0] == 3] = 0  # class 3 absent in image 0
    pred = torch.randint(0, C, (B, 5, 6), generator=g)
    pred[1][pred[1] == 3] = 0
    ref[1][ref[1] == 3] = 0  # class 3 absent in both, image 1
    oh = lambda t: torch.nn.functional.one_hot(t, C).movedim(-1, 1)  # noqa: E731
    expected = _oracle(oh(pred).numpy(), oh(ref).numpy(), empty)
    for p, t in [
        (pred, ref),
        (oh(pred).bool(), ref),
        (pred, oh(ref).float()),
        (oh(pred).float(), oh(ref)),
        (oh(pred), ref),
        (pred, oh(ref)),
        (oh(pred), oh(ref).bool()),
        (pred.numpy(), ref.unsqueeze(1).float().numpy()),
    ]:
        got = dice_score(p, t, num_classes=C, empty=empty)
        _same(got, expected)


def test_probabilities_need_threshold_or_argmax():
    g = torch.Generator().manual_seed(2)
    probs = torch.rand(2, 3, 4, 4, generator=g, dtype=torch.float64)
    ref = torch.randint(0, 3, (2, 4, 4), generator=g)
    with pytest.raises(ValueError, match=r"non-binary.*threshold"):
        dice_score(probs, ref)
    _same(dice_score(probs, ref, threshold="argmax"), dice_score(probs.argmax(1), ref, num_classes=3))
    hard = probs >= 0.5
    _same(dice_score(probs, ref, threshold=0.5), dice_score(hard, ref))
    # threshold at a value that is hit exactly: p >= t counts as foreground
    p = torch.tensor([[[0.5, 0.49, 0.7]]], dtype=torch.float64)
    r = torch.tensor([[[1, 1, 0]]], dtype=torch.bool)
    _same(dice_score(p, r, threshold=0.5), [[2 * 1 / (2 + 2)]])


def test_single_channel_binary_with_label_reference():
    pred = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])  # (B=1, C=1, 4): foreground map
    ref = torch.tensor([[1, 0, 0, 0]])  # labels {0, 1}: label 1 is the foreground
    _same(dice_score(pred, ref), [[2 / 3]])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        dice_score(pred, torch.tensor([[2, 0, 0, 0]]))


def test_ignore_index_removes_voxels():
    ref = torch.tensor([[1, 1, 255, 0]])
    pred = torch.tensor([[1, 0, 1, 0]])
    # voxel 2 ignored: c0 P={1,3} Y={3} I=1 ; c1 P={0} Y={0,1} I=1
    _same(dice_score(pred, ref, ignore_index=255, num_classes=2), [[2 / 3, 2 / 3]])
    with pytest.raises(ValueError, match="255"):
        dice_score(pred, ref, num_classes=2)


def test_score_from_stats_matches_core_reduce():
    s = hard_stats(PRED, REF)
    for phi in ("I", "CI", "BI", "BCI"):
        red = s.reduce(phi)
        expect = 2 * red.intersection.double() / (red.pred_sum + red.target_sum).double()
        _same(score_from_stats(s, phi=phi, empty="ratio")[red.target_sum > 0], expect[red.target_sum > 0])
    # floating counts (e.g. from elsewhere) work too
    f = DiceStats(*(t.double() for t in s))
    _same(score_from_stats(f, phi="BI"), score_from_stats(s, phi="BI"))


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        (dict(pred=torch.rand(1, 2, 3), target=torch.zeros(1, 3, dtype=torch.long)), ValueError, "threshold"),
        (
            dict(pred=torch.zeros(1, 4, dtype=torch.long), target=torch.zeros(1, 5, dtype=torch.long)),
            ValueError,
            "differ",
        ),
        (
            dict(pred=torch.zeros(2, 4, dtype=torch.long), target=torch.zeros(1, 4, dtype=torch.long)),
            ValueError,
            "differ",
        ),
        (dict(pred=torch.zeros(1, 2, 4), target=torch.zeros(1, 3, 4)), ValueError, "differ"),
        (dict(pred=torch.zeros(1, 2, 4), target=torch.zeros(1, 5, dtype=torch.long)), ValueError, "does not fit"),
        (dict(pred=torch.tensor([[0, 3]]), target=torch.tensor([[0, 1]]), num_classes=2), ValueError, r"\[0, 1\]"),
        (dict(pred=torch.tensor([[0, -1]]), target=torch.tensor([[0, 1]])), ValueError, "labels must lie"),
        (
            dict(pred=torch.zeros(1, 4, dtype=torch.long), target=torch.tensor([[0.0, 0.5, 1.0, 1.0]])),
            ValueError,
            "non-integer",
        ),
        (dict(pred=torch.zeros(1, 2, 4), target=torch.zeros(1, 2, 4), num_classes=3), ValueError, "num_classes"),
        (
            dict(pred=torch.zeros(1, 4, dtype=torch.long), target=torch.zeros(1, 4, dtype=torch.long), threshold=0.5),
            TypeError,
            "threshold",
        ),
        (
            dict(pred=torch.rand(1, 1, 4), target=torch.zeros(1, 4, dtype=torch.long), threshold="argmax"),
            ValueError,
            "2 channels",
        ),
        (
            dict(pred=torch.rand(1, 2, 4), target=torch.zeros(1, 4, dtype=torch.long), threshold="max"),
            ValueError,
            "threshold",
        ),
        (
            dict(pred=torch.zeros(1, 4, dtype=torch.long), target=torch.zeros(1, 4, dtype=torch.long), empty="skip"),
            ValueError,
            "empty",
        ),
        (
            dict(pred=torch.zeros(1, 4, dtype=torch.long), target=torch.zeros(1, 4, dtype=torch.long), phi="IB"),
            ValueError,
            "phi",
        ),
        (
            dict(pred=torch.zeros(1, 4, dtype=torch.long), target=torch.zeros(1, 4, dtype=torch.long), reduction="sum"),
            ValueError,
            "reduction",
        ),
        (dict(pred=[[0, 1]], target=torch.zeros(1, 2, dtype=torch.long)), TypeError, "pred"),
        (dict(pred=torch.zeros(4, dtype=torch.long), target=torch.zeros(4, dtype=torch.long)), ValueError, "batch"),
        (dict(pred=torch.zeros(1, 2, 4), target=torch.zeros(1, 2, 4), ignore_index=0), ValueError, "ignore_index"),
    ],
)
def test_bad_input(kwargs, err, match):
    pred, target = kwargs.pop("pred"), kwargs.pop("target")
    with pytest.raises(err, match=match):
        dice_score(pred, target, **kwargs)
