"""torchmetrics' average="weighted" through phidice: per-(image, class) scores weighted by the class volumes.

torchmetrics weights class c of image b by its support Y_bc / Σ_c Y_bc (samplewise; summed over the batch
first for aggregation_level="global"); 0/0 classes have weight 0. docs/mapping.md gives the two lines.
"""

import warnings

import pytest
import torch

from phidice.metrics import dice_score

tm_fseg = pytest.importorskip("torchmetrics.functional.segmentation")

C = 4


def _batch(seed: int, B: int = 5):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randint(0, C, (B, 6, 7), generator=g)
    ref[1][ref[1] == 2] = 0  # an absent class
    pred = torch.where(torch.rand(B, 6, 7, generator=g) < 0.7, ref, torch.randint(0, C, (B, 6, 7), generator=g))
    return pred, ref


def weighted(pred, ref, include_background: bool, phi: str):
    """Σ_c Y_c·DSC_c / Σ_c Y_c per image (phi="I") or over the batch (phi="BI")."""
    scores = dice_score(pred, ref, num_classes=C, include_background=include_background, empty="ratio", phi=phi)
    volume = torch.nn.functional.one_hot(ref, C).flatten(1, -2).sum(1).double()  # (B, C)
    volume = volume if include_background else volume[:, 1:]
    volume = volume.sum(0, keepdim=True) if phi == "BI" else volume
    return (scores.nan_to_num(0.0) * volume).sum(1) / volume.sum(1)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("aggregation,phi", [("samplewise", "I"), ("global", "BI")])
def test_torchmetrics_weighted_average(include_background, aggregation, phi):
    pred, ref = _batch(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = tm_fseg.dice_score(
            pred,
            ref,
            num_classes=C,
            include_background=include_background,
            average="weighted",
            input_format="index",
            aggregation_level=aggregation,
        )
    got = weighted(pred, ref, include_background, phi)
    torch.testing.assert_close(got, expected.double(), rtol=0, atol=1e-6)
    assert not torch.allclose(
        got,
        dice_score(pred, ref, num_classes=C, include_background=include_background, empty="ratio", phi=phi).nanmean(1),
    )  # weighting changes the number
