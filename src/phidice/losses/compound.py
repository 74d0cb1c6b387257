"""λ_dice · Dice + λ_ce · cross-entropy, sharing the target, ``ignore_index`` and ``mask``.

The target is checked once for both terms; the Dice term runs first and checks the label range (the
fused CPU kernel in its own pass), so the cross-entropy reads labels already known to be valid.
"""

from __future__ import annotations

import torch

from phidice.core.checks import check_input, plain_tensor
from phidice.core.config import DEFAULT_EPS, CEConfig, DiceConfig, split_options
from phidice.core.rules import check_compound
from phidice.core.types import drop_background
from phidice.losses.base import LossModule, config_smoothing, loss_from_sums
from phidice.losses.ce import cross_entropy_from
from phidice.sums import prepare_target, stats_of_prepared

__all__ = ["dice_ce_loss", "DiceCELoss"]


def dice_ce_from(input, target, config: DiceConfig, ce: CEConfig, raw, ce_weight=None, mask=None) -> torch.Tensor:
    input = plain_tensor(input)  # a MONAI MetaTensor as a plain view: both terms compute on plain tensors
    check_input(input, config.activation, config.check_finite)
    prepared = prepare_target(input, target, config, mask, check_range=False)
    stats = drop_background(stats_of_prepared(input, prepared, config), config.include_background)
    dice = loss_from_sums(stats, config, raw, num_channels=input.shape[1])
    return ce.lambda_dice * dice + ce.lambda_ce * cross_entropy_from(input, prepared, config, ce, ce_weight)


def dice_ce_loss(input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None,
                 config: DiceConfig | None = None, ce: CEConfig | None = None, **options) -> torch.Tensor:
    """λ_dice · Dice (any Φ/ε) + λ_ce · cross-entropy (BCE for sigmoid).

    ``options``: those of :func:`phidice.dice_loss` and of :class:`~phidice.core.config.CEConfig`
    (``lambda_dice``, ``lambda_ce``, ``ce_weight``, ``label_smoothing``).
    """
    dice_options, ce_options = split_options(options)
    config = DiceConfig.build(config, dice_options)
    ce = CEConfig(**{**(ce.to_dict() if ce else {}), **ce_options})
    check_compound(config, "DiceCELoss")
    return dice_ce_from(input, target, config, ce, config_smoothing(config), mask=mask)


class DiceCELoss(LossModule):
    """Dice (the options of :class:`DiceLoss`) plus cross-entropy, or BCE for ``activation="sigmoid"``.

    ``ce_weight`` weighs classes in the cross-entropy (a weighted mean, as in ``torch``); ``lambda_dice``
    and ``lambda_ce`` weigh the two terms; ``label_smoothing`` as in torch. ``ignore_index`` and ``mask``
    apply to both.

    Raises:
        ValueError: ``activation=None``, ``reduction="none"``, a negative λ, or any bad Dice option.
    """

    _buffer_names = LossModule._buffer_names + ("ce_weight",)

    def __init__(self, phi="I", eps=DEFAULT_EPS, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 ce_weight=None, label_smoothing: float = 0.0, **options):
        options.setdefault("activation", "softmax")
        super().__init__(DiceConfig(phi=phi, eps=eps, **options),
                         CEConfig(lambda_dice, lambda_ce, ce_weight, label_smoothing))
        self._check_config()

    def _check_config(self) -> None:
        check_compound(self.config, "DiceCELoss")

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        assert self.ce is not None  # set by __init__ and from_config
        return dice_ce_from(input, target, self.config, self.ce, self.smoothing, self.ce_weight, mask)
