"""λ_dice · Dice + λ_ce · cross-entropy, sharing the target, ``ignore_index`` and ``mask``.

The target is checked once for both terms; the Dice term runs first and checks the label range (the
fused CPU kernel in its own pass), so the cross-entropy reads labels already known to be valid.
"""

from __future__ import annotations

import torch

from phidice.core.checks import check_input, plain_tensor
from phidice.core.config import DEFAULT_EPS, CEConfig, DiceConfig, split_options
from phidice.core.rules import check_compound
from phidice.core.signature import config_signature
from phidice.core.types import drop_background
from phidice.losses.base import LossModule, config_smoothing, loss_from_sums
from phidice.losses.ce import cross_entropy_from
from phidice.sums import prepare_target, sum_stats

__all__ = ["dice_ce_loss", "DiceCELoss"]


def dice_ce_from(
    input, target, config: DiceConfig, ce: CEConfig, raw, ce_weight=None, mask=None, monitor=None
) -> torch.Tensor:
    input = plain_tensor(input)  # a MONAI MetaTensor as a plain view: both terms compute on plain tensors
    check_input(input, config.activation, config.check_finite)
    prepared = prepare_target(input, target, config, mask, check_range=False)
    full = sum_stats(input, prepared, config)
    dice = loss_from_sums(drop_background(full, config.include_background), config, raw, num_channels=input.shape[1])
    if monitor is not None:
        monitor.record(full, prepared, input.shape)
    return ce.lambda_dice * dice + ce.lambda_ce * cross_entropy_from(input, prepared, config, ce, ce_weight)


@config_signature(DiceConfig, CEConfig)
def dice_ce_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    config: DiceConfig | None = None,
    ce: CEConfig | None = None,
    **options,
) -> torch.Tensor:
    """λ_dice · Dice (any Φ/ε) + λ_ce · cross-entropy (binary cross-entropy for ``activation="sigmoid"``).

    Args:
        input, target, mask: as :func:`phidice.dice_loss`; ``ignore_index`` and ``mask`` apply to both terms
            (the mask must be voxel-wise for the cross-entropy).
        phi, eps, …: the Dice options of :func:`phidice.dice_loss`.
        lambda_dice, lambda_ce: the weights of the two terms (≥ 0).
        ce_weight: one weight per class in the cross-entropy (a weighted mean over voxels, as torch's).
        label_smoothing: in [0, 1], as torch's.
        config, ce: built :class:`~phidice.core.config.DiceConfig` / :class:`~phidice.core.config.CEConfig`;
            the options given are applied on top of them.

    Returns:
        The loss, a 0-d tensor.

    Raises:
        ValueError / TypeError: ``activation=None`` or ``reduction="none"`` (the sum of two terms needs logits
            and one value), a negative λ, or any bad Dice option.

    Example:
        >>> import torch
        >>> from phidice import dice_ce_loss
        >>> logits = torch.zeros(1, 2, 2)  # softmax ½ everywhere
        >>> labels = torch.tensor([[0, 1]])
        >>> dice_ce_loss(logits, labels, eps=0.0)  # Dice 1 − 1/2, plus cross-entropy log 2
        tensor(1.1931)
    """
    dice_options, ce_options = split_options(options)
    config = DiceConfig.build(config, dice_options)
    ce = CEConfig(**{**(ce.to_dict() if ce else {}), **ce_options})
    check_compound(config, "DiceCELoss")
    return dice_ce_from(input, target, config, ce, config_smoothing(config), mask=mask)


@config_signature(DiceConfig, CEConfig)
class DiceCELoss(LossModule):
    """λ_dice · Dice + λ_ce · cross-entropy (BCE for ``activation="sigmoid"``), the module form of
    :func:`phidice.dice_ce_loss`.

    Args:
        phi, eps, …: the Dice options of :class:`DiceLoss`.
        lambda_dice, lambda_ce, ce_weight, label_smoothing: the cross-entropy options
            (:class:`~phidice.core.config.CEConfig`); ``ce_weight`` is a buffer. ``ignore_index`` and ``mask``
            apply to both terms.

    Raises:
        ValueError: ``activation=None``, ``reduction="none"``, a negative λ, or any bad Dice option.

    Example:
        >>> import torch
        >>> from phidice import DiceCELoss
        >>> loss = DiceCELoss(phi="I", eps=0.0, lambda_ce=0.5)
        >>> loss(torch.zeros(1, 2, 2), torch.tensor([[0, 1]]))  # 1/2 + 0.5 · log 2
        tensor(0.8466)
    """

    _buffer_names = LossModule._buffer_names + ("ce_weight",)

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        dice_options, ce_options = split_options(options)
        super().__init__(DiceConfig(phi=phi, eps=eps, **dice_options), CEConfig(**ce_options))
        self._check_config()

    def _check_config(self) -> None:
        check_compound(self.config, "DiceCELoss")

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *, monitor=None
    ) -> torch.Tensor:
        """The loss of logits ``input`` (B, C, *spatial) against ``target``, as :func:`phidice.dice_ce_loss`;
        ``monitor``: a :class:`phidice.GradientMonitor` of this loss, told the Dice term's sums of this call."""
        assert self.ce is not None  # set by __init__ and from_config
        return dice_ce_from(
            input, target, self.config, self.ce, self.smoothing, self.ce_weight, mask, self.monitor_for(monitor)
        )
