"""Missing labels: leaf Dice (Fidon et al. 2021) and marginal Dice / cross-entropy (Shi et al. 2021) over Φ.

Per-sample ``annotated`` (B, C) flags say which classes each sample labels; see docs/missing_labels.md.
"""

from phidice.missing.functional import (
    check_annotated,
    leaf_dice_ce_loss,
    leaf_dice_focal_loss,
    leaf_dice_loss,
    marginal_cross_entropy,
    marginal_dice_ce_loss,
    marginal_dice_focal_loss,
    marginal_dice_loss,
    merge_probabilities,
)
from phidice.missing.label_sets import annotated_from_label_sets
from phidice.missing.losses import (
    LeafDiceCELoss,
    LeafDiceFocalLoss,
    LeafDiceLoss,
    MarginalCrossEntropyLoss,
    MarginalDiceCELoss,
    MarginalDiceFocalLoss,
    MarginalDiceLoss,
)

__all__ = [
    "LeafDiceFocalLoss",
    "MarginalDiceFocalLoss",
    "leaf_dice_focal_loss",
    "marginal_dice_focal_loss",
    "LeafDiceCELoss",
    "LeafDiceLoss",
    "MarginalCrossEntropyLoss",
    "MarginalDiceCELoss",
    "MarginalDiceLoss",
    "annotated_from_label_sets",
    "check_annotated",
    "leaf_dice_ce_loss",
    "leaf_dice_loss",
    "marginal_cross_entropy",
    "marginal_dice_ce_loss",
    "marginal_dice_loss",
    "merge_probabilities",
]
