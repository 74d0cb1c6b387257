"""Agreement with MONAI DiceMetric and torchmetrics DiceScore, through the mapping of docs/metrics.md.

MONAI ignore_empty=True  ↔ empty="nan";  ignore_empty=False ↔ empty="one"           (Φ = I)
torchmetrics (NaN for 0/0) ↔ empty="ratio"; samplewise ↔ Φ = I / CI, global ↔ Φ = BI / BCI,
average "none" ↔ per class, "micro" ↔ classes summed (CI / BCI), "macro" ↔ nanmean over classes.
"""

import warnings

import pytest
import torch

from _oracle_rows import MONAI_DICE_METRIC
from phidice.metrics import DiceAccumulator, dice_score

monai_metrics = pytest.importorskip("monai.metrics")
tm_seg = pytest.importorskip("torchmetrics.segmentation")
tm_fseg = pytest.importorskip("torchmetrics.functional.segmentation")

C = 4


def _batch(seed: int, B: int = 5):
    """Labels with deliberately empty references (some also with empty predictions)."""
    g = torch.Generator().manual_seed(seed)
    ref = torch.randint(0, C, (B, 6, 5, 4), generator=g)
    pred = torch.where(torch.rand(ref.shape, generator=g) < 0.7, ref, torch.randint(0, C, ref.shape, generator=g))
    ref[0][ref[0] == 3] = 0  # class 3 empty in ref, present in pred (false positives)
    ref[1][ref[1] == 2] = 0
    pred[1][pred[1] == 2] = 0  # class 2 empty in both
    ref[2] = 0
    pred[2] = 0  # image 2 background only
    return pred, ref


def _oh(t):
    return torch.nn.functional.one_hot(t, C).movedim(-1, 1).float()


def _same(a, b):
    a, b = a.double().cpu(), b.double().cpu()
    assert a.shape == b.shape, (a.shape, b.shape)
    assert torch.equal(torch.isnan(a), torch.isnan(b)), (a, b)
    torch.testing.assert_close(torch.nan_to_num(a), torch.nan_to_num(b), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize(
    "row,monai_kw,ours", MONAI_DICE_METRIC.params(), ids=[r[0] for r in MONAI_DICE_METRIC.params()]
)
def test_monai_dicemetric(include_background, row, monai_kw, ours):
    pred, ref = _batch(0)
    metric = monai_metrics.DiceMetric(include_background=include_background, reduction="none", **monai_kw)
    expected = metric(_oh(pred), _oh(ref))
    got = dice_score(pred, ref, num_classes=C, include_background=include_background, **ours)
    assert torch.isnan(got).any() == monai_kw["ignore_empty"]  # the batch does exercise the empty cases
    _same(got, expected)


@pytest.mark.parametrize("include_background", [True, False])
def test_torchmetrics_functional_samplewise(include_background):
    pred, ref = _batch(1)
    kw = dict(num_classes=C, include_background=include_background, input_format="index")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        none = tm_fseg.dice_score(pred, ref, average="none", **kw)
        micro = tm_fseg.dice_score(pred, ref, average="micro", **kw)
        macro = tm_fseg.dice_score(pred, ref, average="macro", **kw)
    ours_i = dice_score(pred, ref, num_classes=C, include_background=include_background, empty="ratio")
    assert torch.isnan(ours_i).any() and (ours_i == 0).any()
    _same(ours_i, none)
    _same(
        dice_score(pred, ref, num_classes=C, include_background=include_background, empty="ratio", phi="CI")[:, 0],
        micro,
    )
    _same(ours_i.nanmean(1), macro)


@pytest.mark.parametrize("include_background", [True, False])
def test_torchmetrics_class_over_batches_matches_accumulator(include_background):
    batches = [_batch(2, B=3), _batch(3, B=4)]
    acc = DiceAccumulator(C, include_background=include_background, empty="ratio")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics' notice about its default average
        metrics = {
            (agg, avg): tm_seg.DiceScore(
                num_classes=C,
                include_background=include_background,
                average=avg,
                aggregation_level=agg,
                input_format="index",
            )
            for agg in ("samplewise", "global")
            for avg in ("none", "micro", "macro")
        }
        for pred, ref in batches:
            acc.update(pred, ref)
            for m in metrics.values():
                m.update(pred, ref)
        tm = {k: m.compute() for k, m in metrics.items()}
    _same(acc.compute("I").nanmean(0), tm["samplewise", "none"])
    _same(acc.compute("CI").nanmean(), tm["samplewise", "micro"])
    _same(acc.compute("I").nanmean(1).nanmean(), tm["samplewise", "macro"])
    _same(acc.compute("BI")[0], tm["global", "none"])
    _same(acc.compute("BCI")[0, 0], tm["global", "micro"])
    _same(acc.compute("BI").nanmean(), tm["global", "macro"])
