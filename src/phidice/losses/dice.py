"""The Dice loss of Eq. 3 with explicit Φ and ε: functional form and module.

    DL = Σ_φ ω_φ · (1 − (2 Σ_φ v·y·ỹ + ε_nr,φ) / (Σ_φ v·(y + ỹ) + ε_dr,φ))

Per-(b, c) sums (:mod:`phidice.sums`, fused when it applies) → the global batch under ``sync_batch`` →
Eq. 3 (:mod:`phidice.equations`).
"""

from __future__ import annotations

from typing import Any

import torch

from phidice.core.checks import check_input
from phidice.core.config import DEFAULT_EPS, DiceConfig
from phidice.core.signature import config_signature
from phidice.core.types import DiceStats, drop_background
from phidice.losses.base import LossModule, config_smoothing, loss_from_sums
from phidice.sums import prepare_target, sum_stats

__all__ = ["dice_loss", "loss_from_stats", "DiceLoss", "DEFAULT_EPS"]


def dice_from(input, target, config: DiceConfig, raw, mask=None, monitor=None) -> torch.Tensor:
    """The Dice-family loss of ``input`` against ``target`` for a built config and its ε/weights; a
    ``monitor`` (:class:`phidice.GradientMonitor`) is told the (B, C) sums the loss used."""
    check_input(input, config.activation, config.check_finite)
    prepared = prepare_target(input, target, config, mask, check_range=False)
    full = sum_stats(input, prepared, config)
    loss = loss_from_sums(drop_background(full, config.include_background), config, raw, num_channels=input.shape[1])
    if monitor is not None:
        monitor.record(full, prepared, input.shape)
    return loss


@config_signature(DiceConfig)
def dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    config: DiceConfig | None = None,
    **options: Any,
) -> torch.Tensor:
    """Dice loss of Eq. 3 with explicit reduction subsets Φ and smoothing ε.

    Args:
        input: logits (or probabilities with ``activation=None``), shape (B, C, *spatial).
        target: integer labels (B, *spatial) / (B, 1, *spatial), or a one-hot/soft map (B, C, *spatial).
        phi: "I" (per image and class), "CI" (per image), "BI" (per class over the batch), "BCI" (all).
        eps: ε in numerator and denominator, a float or one value per class (aligned with dim 1).
        eps_nr, eps_dr: ε of the numerator / denominator only (default: ``eps``).
        eps_empty: replaces both for subsets φ whose target is empty.
        activation: "softmax", "sigmoid", None, or a callable to probabilities (MONAI's other_act, reference
            path); computed in float32 even for fp16/bf16 inputs.
        soft_label: I = Σ m·min(ỹ, y) (MONAI's soft_label), right for soft targets in [0, 1]; equal to the
            default on hard targets.
        squared: L2 relaxation, Σỹ² + Σy² in the denominator (V-Net).
        include_background: keep class 0 (ε and weights may be given with or without its entry).
        class_weights: per-class weights — a weighted mean of per-φ losses for I/BI; weights inside the
            class sums for CI/BCI.
        weighting: "generalized" (Sudre, 1/(Σy)²) or "generalized_simple" (1/Σy), for Φ = CI/BCI.
        empty: "smooth" (ε decides, the paper's behaviour) or "skip" (empty-target φ leave the mean).
        ignore_index: a label whose voxels leave every sum; applied after the activation, as ``mask``.
        reduction: "mean" (weighted mean over φ), "sum", or "none" (1 − DSC per φ: (B, C), (B, 1), (1, C)
            or (1, 1) for I, CI, BI, BCI; unweighted, 0 for skipped φ).
        check_finite: raise on NaN/Inf input.
        fused: "auto" (fused kernel when it applies), False (reference path) or True (require it).
        sync_batch: under torch.distributed, Φ ∋ B means the global batch (exact gradients).
        validate_args: False skips the checks that read tensor values on the host (see DiceConfig).
        overlap: the index of the sums (:data:`phidice.DICE`; :func:`phidice.tversky`, :data:`phidice.JACCARD`).
        mask: voxels (B, *spatial), (B, 1, *spatial) or (B, C, *spatial) in [0, 1] that weigh every sum.
        config: a built :class:`~phidice.core.config.DiceConfig`; the options given are applied on top of it.

    Returns:
        The loss: a 0-d tensor, or the per-φ values with ``reduction="none"``.

    Raises:
        ValueError / TypeError: a bad option (named), shapes that do not fit, labels outside [0, C), per-class
            values of the wrong length.

    Example:
        >>> import torch
        >>> from phidice import dice_loss
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels): one image, two classes
        >>> labels = torch.tensor([[0, 1]])  # (B, voxels)
        >>> dice_loss(probs, labels, phi="I", eps=0.0, activation=None)  # mean of 1 − 1.8/2.1 and 1 − 1.6/1.9
        tensor(0.1504)
        >>> dice_loss(probs, labels, phi="I", eps=0.0, activation=None, reduction="none")  # one value per φ
        tensor([[0.1429, 0.1579]])
    """
    config = DiceConfig.build(config, options)
    return dice_from(input, target, config, config_smoothing(config), mask)


@config_signature(DiceConfig)
def loss_from_stats(
    stats: DiceStats,
    *,
    keep: torch.Tensor | None = None,
    num_channels: int | None = None,
    config: DiceConfig | None = None,
    **options,
) -> torch.Tensor:
    """The loss of Eq. 3 from (B, C') sums (:func:`phidice.compute_stats`); options as :func:`dice_loss`.

    Args:
        stats: the per-(image, class) sums I, P, Y, each (B, C').
        keep: (B, C') bool, the (image, class) entries that take part (leaf Dice); None: all.
        num_channels: C of the input; with ``include_background`` it says how per-class ε and weights align
            when the sums lack the background column (default: C').
        config, **options: as :func:`dice_loss` (``activation`` and ``fused`` do not apply to sums).

    Returns:
        The loss, as :func:`dice_loss` returns it.

    Raises:
        ValueError: ``keep`` of another shape than the sums, or a bad option.

    Example:
        >>> import torch
        >>> from phidice import DiceStats, loss_from_stats
        >>> stats = DiceStats(torch.tensor([[0.9, 0.8]]), torch.tensor([[1.1, 0.9]]), torch.tensor([[1.0, 1.0]]))
        >>> loss_from_stats(stats, phi="I", eps=0.0)  # the sums of the dice_loss example
        tensor(0.1504)
    """
    config = DiceConfig.build(config, options)
    C = stats.intersection.shape[1] if num_channels is None else num_channels
    if keep is not None and tuple(keep.shape) != tuple(stats.intersection.shape):
        raise ValueError(f"keep must have shape (B, C) = {tuple(stats.intersection.shape)}; got {tuple(keep.shape)}")
    return loss_from_sums(stats, config, config_smoothing(config), num_channels=C, keep=keep)


@config_signature(DiceConfig)
class DiceLoss(LossModule):
    """Dice loss of Eq. 3 with explicit Φ and ε, the module form of :func:`phidice.dice_loss`.

    Args:
        phi, eps, …: the options of :func:`phidice.dice_loss` (every field of
            :class:`~phidice.core.config.DiceConfig`), checked here, at construction. ε and the class
            weights are buffers: they follow ``.to(device)`` and ``state_dict``.

    Raises:
        ValueError / TypeError: a bad option, named.

    Example:
        >>> import torch
        >>> from phidice import DiceLoss
        >>> loss = DiceLoss(phi="BI", eps=1e-5, include_background=False)
        >>> logits = torch.zeros(2, 3, 4, 4)  # (B, C, H, W): softmax ⅓ everywhere
        >>> labels = torch.zeros(2, 4, 4, dtype=torch.long)
        >>> labels[:, :2] = 1
        >>> labels[:, 2:] = 2
        >>> loss(logits, labels)  # per class over the batch: 1 − 2·(16/3)/(32/3 + 16), classes 1 and 2
        tensor(0.6000)
    """

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        super().__init__(DiceConfig(phi=phi, eps=eps, **options))

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *, monitor=None
    ) -> torch.Tensor:
        """The loss of ``input`` (B, C, *spatial) against ``target``; ``input``, ``target`` and ``mask`` as in
        :func:`phidice.dice_loss`. Returns a 0-d tensor (per φ with ``reduction="none"``). ``monitor``: a
        :class:`phidice.GradientMonitor` of this loss, told the sums of this call."""
        return dice_from(input, target, self.config, self.smoothing, mask, self.monitor_for(monitor))
