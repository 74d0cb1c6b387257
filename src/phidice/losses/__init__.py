"""The losses on the sums of Eq. 3: Dice, Dice + cross-entropy, and the analytic gradient of Eq. 4."""

from phidice.losses.compound import DiceCELoss, dice_ce_loss
from phidice.losses.dice import DiceLoss, dice_loss, loss_from_stats
from phidice.losses.gradient import DiceGradient, dice_gradient

__all__ = ["DiceCELoss", "DiceGradient", "DiceLoss", "dice_ce_loss", "dice_gradient", "dice_loss",
           "loss_from_stats"]
