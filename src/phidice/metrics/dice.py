"""The hard Dice score DSC_φ = 2 I_φ / (P_φ + Y_φ) per subset φ ∈ Φ, with an explicit empty convention.

I_φ, P_φ, Y_φ are the intersection, predicted and reference voxel counts summed over φ — the same
per-subset sums as the loss (:meth:`DiceStats.reduce`), so Φ = I gives one score per image and class,
CI per image, BI per class over the batch and BCI one score for everything.

When the reference of φ is empty (Y_φ = 0) the score is a convention, not a measurement:

=========  =====================  ==========================  ===================================
empty      Y_φ = 0 and P_φ = 0    Y_φ = 0 and P_φ > 0          same as
=========  =====================  ==========================  ===================================
"nan"      NaN                    NaN                         MONAI ``DiceMetric(ignore_empty=True)``
"ratio"    NaN                    0                           nnU-Net evaluation, torchmetrics ``DiceScore``
"one"      1                      0                           MONAI ``DiceMetric(ignore_empty=False)``
"zero"     0                      0                           ``zero_division=0`` scores
=========  =====================  ==========================  ===================================

With Y_φ > 0 all four give 2I/(P+Y). NaN means "undefined" and is left out of every mean (nanmean).
"""

from __future__ import annotations

import numpy as np
import torch

from phidice.core.config import EMPTY_SCORES, check_choice, check_empty
from phidice.core.phi import Phi, parse_phi
from phidice.core.types import DiceStats
from phidice.metrics._hard import hard_stats

EMPTY_CONVENTIONS = EMPTY_SCORES
SCORE_REDUCTIONS = ("none", "mean")


def score_from_stats(stats: DiceStats, *, phi: str | Phi = "I", empty: str = "nan") -> torch.Tensor:
    """DSC_φ (float64) from (B, C) counts: shapes (B, C), (B, 1), (1, C), (1, 1) for Φ = I, CI, BI, BCI.

    Args:
        stats: the (B, C) counts Σ p·y, Σ p, Σ y (:func:`~phidice.metrics.hard_stats`).
        phi, empty: as :func:`dice_score`.

    Returns:
        The score per φ, float64.

    Raises:
        ValueError: an unknown Φ or empty rule.

    Example:
        >>> from phidice.metrics import hard_stats, score_from_stats
        >>> import torch
        >>> pred = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])  # (B, voxels) labels
        >>> ref = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]])  # image 1 has no class 1
        >>> score_from_stats(hard_stats(pred, ref, num_classes=2), phi="BI")  # per class over the batch
        tensor([[0.9231, 0.6667]], dtype=torch.float64)
    """
    phi = parse_phi(phi)
    check_empty(empty, "score")
    inter, pred, ref = (t.to(torch.float64) for t in stats.reduce(phi))
    den = pred + ref
    dsc = 2 * inter / torch.where(den > 0, den, torch.ones_like(den))  # 0/0 → 0 before the convention
    nan = torch.full_like(dsc, float("nan"))
    ref_empty = ref == 0
    if empty == "nan":
        return torch.where(ref_empty, nan, dsc)
    if empty == "ratio":
        return torch.where(den == 0, nan, dsc)
    if empty == "one":
        return torch.where(den == 0, torch.ones_like(dsc), dsc)
    return torch.where(ref_empty, torch.zeros_like(dsc), dsc)


def reduce_scores(scores: torch.Tensor, reduction: str) -> torch.Tensor:
    """``"none"``: the per-φ scores; ``"mean"``: their nanmean (NaN when no φ is defined)."""
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    if reduction == "none":
        return scores
    defined = ~torch.isnan(scores)
    if not bool(defined.any()):
        return torch.tensor(float("nan"), dtype=scores.dtype, device=scores.device)
    return scores[defined].mean()


def dice_score(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    *,
    num_classes: int | None = None,
    phi: str | Phi = "I",
    empty: str = "nan",
    include_background: bool = True,
    threshold: float | str | None = None,
    ignore_index: int | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    """Hard Dice score per subset φ ∈ Φ (float64), aggregated over Φ exactly like the loss.

    Args:
        pred: hard labels (B, *S) int; binary maps (B, C, *S) (bool or 0/1); or probabilities (B, C, *S)
            with ``threshold``. Non-binary float predictions without a threshold raise a ValueError.
        target: labels (B, *S) or (B, 1, *S) (int, or integer-valued float), or binary maps (B, C, *S).
        num_classes: C for two label maps (default 1 + the largest label, at least 2); checked
            against the channel axis of a map.
        phi: "I" (per image and class), "CI" (per image), "BI" (per class over the batch), "BCI" (all).
        empty: "nan", "ratio", "one" or "zero": the score of a φ whose reference is empty (module
            docstring table).
        include_background: keep class 0 (ignored for a single channel, which is the foreground).
        threshold: None (inputs are already hard), a number t (channel-wise ``p >= t``, sigmoid style)
            or "argmax" (the class of largest probability, softmax style).
        ignore_index: label of the target whose voxels leave every count.
        reduction: "none" (per-φ scores) or "mean" (nanmean over φ; NaN when none is defined).

    Returns:
        The score per φ, float64 ((B, C), (B, 1), (1, C) or (1, 1) for I, CI, BI, BCI), or its mean.

    Raises:
        ValueError / TypeError: an unknown option, shapes that do not fit, labels outside [0, C),
            non-binary predictions without ``threshold``.

    Example:
        >>> from phidice.metrics import dice_score
        >>> import torch
        >>> pred = torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])  # (B, voxels) labels
        >>> ref = torch.tensor([[0, 1, 0, 0], [0, 0, 0, 0]])  # image 1 has no class 1
        >>> dice_score(pred, ref, num_classes=2)  # the empty class-1 map of image 1 has no score
        tensor([[0.8000, 0.6667],
                [1.0000,    nan]], dtype=torch.float64)
        >>> dice_score(pred, ref, num_classes=2, phi="BI", include_background=False)
        tensor([[0.6667]], dtype=torch.float64)
    """
    check_empty(empty, "score")
    check_choice("reduction", reduction, SCORE_REDUCTIONS)
    phi = parse_phi(phi)
    stats = hard_stats(
        pred,
        target,
        num_classes=num_classes,
        threshold=threshold,
        ignore_index=ignore_index,
        include_background=include_background,
    )
    return reduce_scores(score_from_stats(stats, phi=phi, empty=empty), reduction)
