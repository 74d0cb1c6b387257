"""What the nnU-Net trainers would use from the core but the core does not offer yet (strict xfail: when the
core gains it, these fail as XPASS, and the integration's workaround should go).

* ``label_smoothing`` exists on ``DiceCELoss`` but not on the missing-label Dice + CE losses, so the leaf and
  marginal trainers refuse the option (``options.resolve_options``: "label_smoothing is not available ...").
"""

import pytest
import torch

import phidice


@pytest.mark.xfail(strict=True, raises=TypeError,
                   reason="core: LeafDiceCELoss / MarginalDiceCELoss take no label_smoothing (DiceCELoss does)")
@pytest.mark.parametrize("cls", ["LeafDiceCELoss", "MarginalDiceCELoss"])
def test_missing_label_ce_losses_take_label_smoothing(cls):
    loss = getattr(phidice, cls)(phi="I", label_smoothing=0.1)
    x, y = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    smoothed = loss(x, y, torch.ones(2, 3, dtype=torch.bool))
    plain = getattr(phidice, cls)(phi="I")(x, y, torch.ones(2, 3, dtype=torch.bool))
    assert not torch.isclose(smoothed, plain)
