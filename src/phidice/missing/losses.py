"""``nn.Module`` forms of the missing-label losses; ``forward(input, target, annotated=None, mask=None)``.

``annotated`` is a (B, C) bool tensor of the classes annotated in each sample (None: all of them). See
:mod:`phidice.missing.functional` for the definitions and docs/missing_labels.md for when to use which.
Options are checked at construction; ε and the class weights are buffers (:class:`phidice.losses.base.LossModule`).
"""

from __future__ import annotations

import torch
from torch import nn

from phidice.core.config import DEFAULT_EPS, CEConfig, DiceConfig
from phidice.core.rules import check_compound, check_marginal
from phidice.losses.base import LossModule
from phidice.missing.functional import check_marginal_fused, marginal_ce_from, partial_loss


class _PartialDice(LossModule):
    _kind = "leaf"

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        super().__init__(DiceConfig(phi=phi, eps=eps, **options))
        self._check_config()

    def _check_config(self) -> None:
        if self._kind == "marginal":
            check_marginal(self.config.activation, type(self).__name__)
            check_marginal_fused(self.config, type(self).__name__)

    def forward(self, input: torch.Tensor, target: torch.Tensor, annotated=None,
                mask: torch.Tensor | None = None, *, monitor=None) -> torch.Tensor:
        """``monitor``: a :class:`phidice.GradientMonitor` of this loss, told the sums of this call."""
        return partial_loss(self._kind, input, target, annotated, self.config, self.smoothing, mask,
                            monitor=self.monitor_for(monitor))


class LeafDiceLoss(_PartialDice):
    """Leaf Dice (Fidon et al. 2021) with explicit Φ and ε: unannotated (image, class) entries leave φ.

    >>> loss = LeafDiceLoss(phi="I", eps=1e-5, include_background=False)
    >>> value = loss(logits, labels, annotated)     # annotated: (B, C) bool
    """


class MarginalDiceLoss(_PartialDice):
    """Marginal Dice (Shi et al. 2021) with explicit Φ and ε: unannotated probabilities join the background.

    Needs softmax (or probabilities with ``activation=None``).
    """

    _kind = "marginal"


class _PartialDiceCE(_PartialDice):
    _buffer_names = LossModule._buffer_names + ("ce_weight",)

    def __init__(self, phi="I", eps=DEFAULT_EPS, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 ce_weight=None, label_smoothing: float = 0.0, **options):
        options.setdefault("activation", "softmax")
        LossModule.__init__(self, DiceConfig(phi=phi, eps=eps, **options),
                            CEConfig(lambda_dice, lambda_ce, ce_weight, label_smoothing))
        self._check_config()

    def _check_config(self) -> None:
        check_compound(self.config, type(self).__name__)
        super()._check_config()

    def forward(self, input, target, annotated=None, mask=None, *, monitor=None):
        return partial_loss(self._kind, input, target, annotated, self.config, self.smoothing, mask, self.ce,
                            self.ce_weight, self.monitor_for(monitor))


class LeafDiceCELoss(_PartialDiceCE):
    """λ_dice · leaf Dice + λ_ce · marginal cross-entropy (the voxel-wise counterpart of dropping a class)."""


class MarginalDiceCELoss(_PartialDiceCE):
    """λ_dice · marginal Dice + λ_ce · marginal cross-entropy (softmax), the counterpart of ``DiceCELoss``."""

    _kind = "marginal"


class MarginalCrossEntropyLoss(nn.Module):
    """Cross-entropy with unannotated classes marginalised into the background (log-sum-exp; BCE over the
    annotated channels for ``activation="sigmoid"``); ``ce_weight`` is a buffer."""

    def __init__(self, *, activation: str = "softmax", ce_weight=None, ignore_index: int | None = None,
                 sync_batch: bool = False, label_smoothing: float = 0.0, validate_args: bool = True):
        super().__init__()
        self.config = DiceConfig(activation=activation, ignore_index=ignore_index, sync_batch=sync_batch,
                                 validate_args=validate_args)
        if self.config.activation is None:
            raise ValueError("MarginalCrossEntropyLoss needs logits: activation must be 'softmax' or 'sigmoid'; "
                             "got None")
        self.ce = CEConfig(ce_weight=ce_weight, label_smoothing=label_smoothing)
        weight = self.ce.ce_weight
        self.register_buffer("ce_weight", None if weight is None else torch.tensor(weight, dtype=torch.float32))

    def forward(self, input, target, annotated=None, mask=None):
        return marginal_ce_from(input, target, annotated, self.config, self.ce, self.ce_weight, mask)
