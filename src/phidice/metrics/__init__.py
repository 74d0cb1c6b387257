"""Evaluation metrics on the loss's per-subset sums: hard Dice per φ ∈ Φ with an explicit empty
convention, volumes and the volume difference ΔV, and the volume-based ROC of the paper's Fig. 2; surface
metrics (HD95, NSD) with the same empty conventions; bootstrap intervals and paired tests to compare methods.

See docs/metrics.md for the empty conventions next to MONAI, nnU-Net and torchmetrics. scipy (surface
metrics) and matplotlib (figures) are imported only by the functions that need them.
"""

from phidice.metrics._hard import hard_stats
from phidice.metrics.accumulator import DiceAccumulator
from phidice.metrics.bootstrap import MeanCI, PairedTest, bootstrap_ci, bootstrap_ci_by_group, paired_test
from phidice.metrics.compare import Comparison, compare_folders, write_comparison
from phidice.metrics.dice import EMPTY_CONVENTIONS, dice_score, score_from_stats
from phidice.metrics.evaluate import Evaluation, evaluate_folders, write_outputs
from phidice.metrics.roc import ROC, volume_roc
from phidice.metrics.surface import SurfaceScores, hd95, normalized_surface_dice, surface_distances, surface_metrics
from phidice.metrics.volume import Volume, volume, volume_difference

__all__ = [
    "EMPTY_CONVENTIONS",
    "ROC",
    "Comparison",
    "DiceAccumulator",
    "Evaluation",
    "MeanCI",
    "PairedTest",
    "SurfaceScores",
    "Volume",
    "bootstrap_ci",
    "bootstrap_ci_by_group",
    "compare_folders",
    "dice_score",
    "evaluate_folders",
    "hard_stats",
    "hd95",
    "normalized_surface_dice",
    "paired_test",
    "score_from_stats",
    "surface_distances",
    "surface_metrics",
    "volume",
    "volume_difference",
    "volume_roc",
    "write_comparison",
    "write_outputs",
]
