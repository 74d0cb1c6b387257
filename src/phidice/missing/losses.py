"""``nn.Module`` forms of the missing-label losses; ``forward(input, target, annotated=None, mask=None)``.

``annotated`` is a (B, C) bool tensor of the classes annotated in each sample (None: all of them). See
:mod:`phidice.missing.functional` for the definitions and docs/missing_labels.md for when to use which.
Options are checked at construction; ε and the class weights are buffers (:class:`phidice.losses.base.LossModule`).
"""

from __future__ import annotations

import torch
from torch import nn

from phidice.core.config import DEFAULT_EPS, CEConfig, DiceConfig, FocalConfig, split_options
from phidice.core.rules import check_compound, check_marginal
from phidice.core.signature import config_signature
from phidice.losses.base import LossModule
from phidice.losses.focal import check_focal
from phidice.missing.functional import (
    MARGINAL_CE_OPTIONS,
    check_marginal_fused,
    marginal_ce_from,
    marginal_ce_options,
    partial_loss,
)


class _PartialDice(LossModule):
    _kind = "leaf"

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        super().__init__(DiceConfig(phi=phi, eps=eps, **options))
        self._check_config()

    def _check_config(self) -> None:
        if self._kind == "marginal":
            check_marginal(self.config.activation, type(self).__name__)
            check_marginal_fused(self.config, type(self).__name__)

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        annotated=None,
        mask: torch.Tensor | None = None,
        *,
        monitor=None,
    ) -> torch.Tensor:
        """The loss of ``input`` (B, C, *spatial) against ``target``; ``annotated`` (B, C) bool, None: all
        classes annotated. Returns a 0-d tensor (per φ with ``reduction="none"``). ``monitor``: a
        :class:`phidice.GradientMonitor` of this loss, told the sums of this call."""
        return partial_loss(
            self._kind, input, target, annotated, self.config, self.smoothing, mask, monitor=self.monitor_for(monitor)
        )


@config_signature(DiceConfig)
class LeafDiceLoss(_PartialDice):
    """Leaf Dice (Fidon et al. 2021) with explicit Φ and ε: unannotated (image, class) entries leave φ.

    Args:
        phi, eps, …: the options of :class:`phidice.DiceLoss` (``overlap=`` for another index), checked here.

    ``forward(input, target, annotated=None, mask=None)``: ``annotated`` (B, C) bool, the classes annotated in
    each sample (None: all), as :func:`phidice.missing.functional.leaf_dice_loss`.

    Raises:
        ValueError / TypeError: a bad option (here), a bad ``annotated`` or label (in ``forward``).

    Example:
        >>> import torch
        >>> from phidice import LeafDiceLoss
        >>> probs = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]])  # (B, C, voxels)
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> LeafDiceLoss("I", 0.0, activation=None)(probs, labels, annotated)
        tensor(0.3000)
    """


@config_signature(DiceConfig)
class MarginalDiceLoss(_PartialDice):
    """Marginal Dice (Shi et al. 2021) with explicit Φ and ε: unannotated probabilities join the background.

    Needs softmax (or probabilities with ``activation=None``).

    Args:
        phi, eps, …: the options of :class:`phidice.DiceLoss` (``overlap=`` for another index), checked here.

    ``forward(input, target, annotated=None, mask=None)``: ``annotated`` (B, C) bool, the classes annotated in
    each sample (None: all), as :func:`phidice.missing.functional.leaf_dice_loss`.

    Raises:
        ValueError / TypeError: ``activation="sigmoid"``, any bad option, a bad ``annotated`` (in ``forward``).

    Example:
        >>> import torch
        >>> from phidice import MarginalDiceLoss
        >>> probs = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]])  # (B, C, voxels)
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> MarginalDiceLoss("I", 0.0, activation=None)(probs, labels, annotated)
        tensor(0.2250)
    """

    _kind = "marginal"


class _PartialDiceCE(_PartialDice):
    _buffer_names = LossModule._buffer_names + ("ce_weight",)

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        dice_options, ce_options = split_options(options)
        LossModule.__init__(self, DiceConfig(phi=phi, eps=eps, **dice_options), CEConfig(**ce_options))
        self._check_config()

    def _check_config(self) -> None:
        check_compound(self.config, type(self).__name__)
        super()._check_config()

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor,
        annotated=None,
        mask: torch.Tensor | None = None,
        *,
        monitor=None,
    ) -> torch.Tensor:
        """λ_dice · Dice + λ_ce · cross-entropy of logits ``input`` against ``target``, ``annotated`` as the
        Dice's. Returns a 0-d tensor. ``monitor``: told the Dice term's sums of this call."""
        return partial_loss(
            self._kind,
            input,
            target,
            annotated,
            self.config,
            self.smoothing,
            mask,
            self.ce,
            self.ce_weight,
            monitor=self.monitor_for(monitor),
        )


@config_signature(DiceConfig, CEConfig)
class LeafDiceCELoss(_PartialDiceCE):
    """λ_dice · leaf Dice + λ_ce · marginal cross-entropy (the voxel-wise counterpart of dropping a class).

    Args:
        phi, eps, …, lambda_dice, lambda_ce, ce_weight, label_smoothing: as :class:`phidice.DiceCELoss`.

    Raises:
        ValueError / TypeError: ``activation=None``, ``reduction="none"``, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import LeafDiceCELoss
        >>> logits = torch.zeros(1, 3, 3)  # (B, C, voxels): softmax ⅓ everywhere
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> LeafDiceCELoss("I", 0.0)(logits, labels, annotated)
        tensor(1.3032)
    """


@config_signature(DiceConfig, CEConfig)
class MarginalDiceCELoss(_PartialDiceCE):
    """λ_dice · marginal Dice + λ_ce · marginal cross-entropy (softmax), the counterpart of ``DiceCELoss``.

    Args:
        phi, eps, …, lambda_dice, lambda_ce, ce_weight, label_smoothing: as :class:`phidice.DiceCELoss`.

    Raises:
        ValueError / TypeError: ``activation`` other than "softmax", ``reduction="none"``, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import MarginalDiceCELoss
        >>> logits = torch.zeros(1, 3, 3)  # (B, C, voxels): softmax ⅓ everywhere
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> MarginalDiceCELoss("I", 0.0)(logits, labels, annotated)
        tensor(1.1365)
    """

    _kind = "marginal"


class _PartialDiceFocal(_PartialDice):
    def __init__(
        self,
        phi="I",
        eps=DEFAULT_EPS,
        *,
        gamma: float = 2.0,
        alpha=None,
        focal_weight=None,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        focal_activation=None,
        **options,
    ):
        options.setdefault("activation", "softmax")
        LossModule.__init__(self, DiceConfig(phi=phi, eps=eps, **options))
        self.focal = FocalConfig(gamma, alpha, focal_weight, lambda_dice, lambda_focal, focal_activation)
        self._check_config()

    def _check_config(self) -> None:
        check_focal(self.config, self.focal, type(self).__name__)
        super()._check_config()

    def forward(self, input, target, annotated=None, mask=None, *, monitor=None):
        """λ_dice · Dice + λ_focal · focal loss of logits ``input`` against ``target``, ``annotated`` as the
        Dice's; ``monitor``: told the Dice term's sums of this call."""
        return partial_loss(
            self._kind,
            input,
            target,
            annotated,
            self.config,
            self.smoothing,
            mask,
            focal=self.focal,
            monitor=self.monitor_for(monitor),
        )

    def extra_repr(self) -> str:
        return self.config.describe() + ", " + ", ".join(f"{k}={v!r}" for k, v in self.focal.to_dict().items())


class LeafDiceFocalLoss(_PartialDiceFocal):
    """λ_dice · leaf Dice + λ_focal · focal loss: softmax on the marginal probabilities (unannotated classes
    joined to the background), sigmoid over the annotated channels; the counterpart of ``DiceFocalLoss``."""


class MarginalDiceFocalLoss(_PartialDiceFocal):
    """λ_dice · marginal Dice + λ_focal · focal loss on the marginal probabilities (softmax)."""

    _kind = "marginal"


@config_signature(DiceConfig, CEConfig, only=MARGINAL_CE_OPTIONS)
class MarginalCrossEntropyLoss(nn.Module):
    """Cross-entropy with unannotated classes marginalised into the background (log-sum-exp; BCE over the
    annotated channels for ``activation="sigmoid"``), the module form of
    :func:`phidice.missing.functional.marginal_cross_entropy`.

    Args:
        activation, ignore_index, sync_batch, validate_args, ce_weight, label_smoothing: as
            :func:`~phidice.missing.functional.marginal_cross_entropy`; ``ce_weight`` is a buffer.

    Raises:
        ValueError / TypeError: ``activation=None``, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import MarginalCrossEntropyLoss
        >>> logits = torch.zeros(1, 3, 3)  # (B, C, voxels): softmax ⅓ everywhere
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> MarginalCrossEntropyLoss()(logits, labels, annotated)
        tensor(0.6365)
    """

    def __init__(self, **options):
        super().__init__()
        dice_options, ce_options = marginal_ce_options(options, type(self).__name__)
        self.config = DiceConfig(**dice_options)
        if self.config.activation is None:
            raise ValueError(
                "MarginalCrossEntropyLoss needs logits: activation must be 'softmax' or 'sigmoid'; got None"
            )
        self.ce = CEConfig(**ce_options)
        weight = self.ce.ce_weight
        self.register_buffer("ce_weight", None if weight is None else torch.tensor(weight, dtype=torch.float32))

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, annotated=None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The marginal cross-entropy of logits ``input`` against ``target``; a 0-d tensor."""
        return marginal_ce_from(input, target, annotated, self.config, self.ce, self.ce_weight, mask)
