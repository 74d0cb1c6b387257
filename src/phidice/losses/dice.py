"""The Dice loss of Eq. 3 with explicit Φ and ε: functional form and module.

    DL = Σ_φ ω_φ · (1 − (2 Σ_φ v·y·ỹ + ε_nr,φ) / (Σ_φ v·(y + ỹ) + ε_dr,φ))

Per-(b, c) sums (:mod:`phidice.sums`, fused when it applies) → the global batch under ``sync_batch`` →
Eq. 3 (:mod:`phidice.equations`).
"""

from __future__ import annotations

from typing import Any

import torch

from phidice.core.config import DEFAULT_EPS, DiceConfig
from phidice.core.types import DiceStats, drop_background
from phidice.losses.base import LossModule, config_smoothing, loss_from_sums
from phidice.sums import class_stats

__all__ = ["dice_loss", "loss_from_stats", "DiceLoss", "DEFAULT_EPS"]


def dice_from(input, target, config: DiceConfig, raw, mask=None) -> torch.Tensor:
    """The Dice-family loss of ``input`` against ``target`` for a built config and its ε/weights."""
    stats = drop_background(class_stats(input, target, config, mask), config.include_background)
    return loss_from_sums(stats, config, raw, num_channels=input.shape[1])


def dice_loss(input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None,
              config: DiceConfig | None = None, **options: Any) -> torch.Tensor:
    """Dice loss of Eq. 3 with explicit reduction subsets Φ and smoothing ε.

    Args:
        input: logits (or probabilities with ``activation=None``), shape (B, C, *spatial).
        target: integer labels (B, *spatial) / (B, 1, *spatial), or a one-hot/soft map (B, C, *spatial).
        mask: voxels (B, *spatial), (B, 1, *spatial) or (B, C, *spatial) in [0, 1] that weigh every sum.
        config: a built :class:`~phidice.core.config.DiceConfig`; ``options`` are applied on top of it.
        **options: the fields of :class:`~phidice.core.config.DiceConfig`:

            phi: "I" (per image and class), "CI" (per image), "BI" (per class over the batch), "BCI" (all).
            eps: ε in numerator and denominator, a float or one value per class (aligned with dim 1);
                ``eps_nr`` / ``eps_dr`` override either side; ``eps_empty`` replaces both for subsets φ
                whose target is empty.
            activation: "softmax", "sigmoid" or None; computed in float32 even for fp16/bf16 inputs.
            squared: L2 relaxation, Σỹ² + Σy² in the denominator (V-Net).
            include_background: keep class 0 (ε and weights may be given with or without its entry).
            class_weights: per-class weights — a weighted mean of per-φ losses for I/BI; weights inside
                the class sums for CI/BCI.
            weighting: "generalized" (Sudre, 1/(Σy)²) or "generalized_simple" (1/Σy), for Φ = CI/BCI.
            empty: "smooth" (ε decides, the paper's behaviour) or "skip" (empty-target φ leave the mean).
            ignore_index: a label whose voxels leave every sum; applied after the activation, as ``mask``.
            reduction: "mean" (weighted mean over φ), "sum", or "none" (1 − DSC per φ: (B, C), (B, 1),
                (1, C) or (1, 1) for I, CI, BI, BCI; unweighted, 0 for skipped φ).
            fused: "auto" (fused kernel when it applies), False (reference path) or True (require it).
            sync_batch: under torch.distributed, Φ ∋ B means the global batch (exact gradients).
            check_finite: raise on NaN/Inf input.
            validate_args: False skips the checks that read tensor values on the host (see DiceConfig).

    Raises:
        ValueError / TypeError: a bad option (named), shapes that do not fit, labels outside [0, C), per-class
            values of the wrong length.
    """
    config = DiceConfig.build(config, options)
    return dice_from(input, target, config, config_smoothing(config), mask)


def loss_from_stats(stats: DiceStats, *, keep: torch.Tensor | None = None, num_channels: int | None = None,
                    config: DiceConfig | None = None, **options) -> torch.Tensor:
    """The loss of Eq. 3 from (B, C') sums (:func:`phidice.compute_stats`); options as :func:`dice_loss`.

    ``keep`` (B, C') bool: the (image, class) entries that take part (leaf Dice). ``num_channels`` and
    ``include_background`` say how per-class ε/weights align when the sums lack the background column.
    """
    config = DiceConfig.build(config, options)
    C = stats.intersection.shape[1] if num_channels is None else num_channels
    if keep is not None and tuple(keep.shape) != tuple(stats.intersection.shape):
        raise ValueError(f"keep must have shape (B, C) = {tuple(stats.intersection.shape)}; got {tuple(keep.shape)}")
    return loss_from_sums(stats, config, config_smoothing(config), num_channels=C, keep=keep)


class DiceLoss(LossModule):
    """Dice loss of Eq. 3 with explicit Φ and ε; the options are those of :func:`phidice.dice_loss`.

    Options are checked here, at construction; ε and the class weights are buffers.

    >>> loss = DiceLoss(phi="BI", eps=1e-5, activation="softmax", include_background=False)
    >>> value = loss(logits, labels)            # labels: (B, *spatial) integers
    """

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        super().__init__(DiceConfig(phi=phi, eps=eps, **options))

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return dice_from(input, target, self.config, self.smoothing, mask)
