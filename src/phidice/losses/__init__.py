"""The losses on the sums of Eq. 3 — Dice, Tversky, Jaccard, each + cross-entropy, Dice + focal — and the gradient
of Eq. 4."""

from phidice.losses.compound import DiceCELoss, dice_ce_loss
from phidice.losses.dice import DiceLoss, dice_loss, loss_from_stats
from phidice.losses.focal import DiceFocalLoss, dice_focal_loss
from phidice.losses.gradient import DiceGradient, dice_gradient
from phidice.losses.overlaps import (
    JaccardCELoss,
    JaccardLoss,
    TverskyCELoss,
    TverskyLoss,
    jaccard_ce_loss,
    jaccard_gradient,
    jaccard_loss,
    tversky_ce_loss,
    tversky_gradient,
    tversky_loss,
)

__all__ = [
    "DiceCELoss",
    "DiceFocalLoss",
    "DiceGradient",
    "DiceLoss",
    "JaccardCELoss",
    "JaccardLoss",
    "TverskyCELoss",
    "TverskyLoss",
    "dice_ce_loss",
    "dice_focal_loss",
    "dice_gradient",
    "dice_loss",
    "jaccard_ce_loss",
    "jaccard_gradient",
    "jaccard_loss",
    "loss_from_stats",
    "tversky_ce_loss",
    "tversky_gradient",
    "tversky_loss",
]
