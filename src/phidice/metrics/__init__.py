"""Evaluation metrics on the loss's per-subset sums: hard Dice per φ ∈ Φ with an explicit empty
convention, volumes and the volume difference ΔV, and the volume-based ROC of the paper's Fig. 2.

See docs/metrics.md for the empty conventions next to MONAI, nnU-Net and torchmetrics.
"""

from phidice.metrics._hard import hard_stats
from phidice.metrics.accumulator import DiceAccumulator
from phidice.metrics.dice import EMPTY_CONVENTIONS, dice_score, score_from_stats
from phidice.metrics.evaluate import Evaluation, evaluate_folders, write_outputs
from phidice.metrics.roc import ROC, volume_roc
from phidice.metrics.volume import Volume, volume, volume_difference

__all__ = [
    "EMPTY_CONVENTIONS",
    "ROC",
    "DiceAccumulator",
    "Evaluation",
    "Volume",
    "dice_score",
    "evaluate_folders",
    "hard_stats",
    "score_from_stats",
    "volume",
    "volume_difference",
    "volume_roc",
    "write_outputs",
]
