"""``nn.Module`` wrappers of the missing-label losses; ``forward(input, target, annotated=None, mask=None)``.

``annotated`` is a (B, C) bool tensor of the classes annotated in each sample (None: all of them). See
:mod:`phidice.missing.functional` for the definitions and docs/missing_labels.md for when to use which.
"""

from __future__ import annotations

import torch
from torch import nn

from phidice.core._checks import check_activation
from phidice.core.dice import DEFAULT_EPS, check_config
from phidice.missing.functional import (
    _ce_combo,
    _check_marginal_activation,
    leaf_dice_loss,
    marginal_cross_entropy,
    marginal_dice_loss,
)


class _MissingDice(nn.Module):
    _fn = None

    def __init__(self, phi="I", eps=DEFAULT_EPS, *, eps_nr=None, eps_dr=None, eps_empty=None,
                 activation: str | None = "softmax", squared: bool = False, include_background: bool = True,
                 class_weights=None, weighting: str | None = None, empty: str = "smooth",
                 ignore_index: int | None = None, reduction: str = "mean", check_finite: bool = False,
                 fused="auto", sync_batch: bool = False):
        super().__init__()
        self.phi = check_config(phi=phi, empty=empty, reduction=reduction, weighting=weighting)
        self.activation = check_activation(activation)
        self.options = dict(
            phi=self.phi, eps=eps, eps_nr=eps_nr, eps_dr=eps_dr, eps_empty=eps_empty, activation=self.activation,
            squared=squared, include_background=include_background, class_weights=class_weights,
            weighting=weighting, empty=empty, ignore_index=ignore_index, reduction=reduction,
            check_finite=check_finite, fused=fused, sync_batch=sync_batch,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor, annotated=None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        return type(self)._fn(input, target, annotated, mask=mask, **self.options)

    def extra_repr(self) -> str:
        o = self.options
        return (f"phi={o['phi'].value!r}, eps={o['eps']}, activation={o['activation']!r}, "
                f"include_background={o['include_background']}")


class LeafDiceLoss(_MissingDice):
    """Leaf Dice (Fidon et al. 2021) with explicit Φ and ε: unannotated (image, class) entries leave φ.

    >>> loss = LeafDiceLoss(phi="I", eps=1e-5, include_background=False)
    >>> value = loss(logits, labels, annotated)     # annotated: (B, C) bool
    """

    _fn = staticmethod(leaf_dice_loss)


class MarginalDiceLoss(_MissingDice):
    """Marginal Dice (Shi et al. 2021) with explicit Φ and ε: unannotated probabilities join the background.

    Needs softmax (or probabilities with ``activation=None``).
    """

    _fn = staticmethod(marginal_dice_loss)

    def __init__(self, phi="I", eps=DEFAULT_EPS, **kwargs):
        super().__init__(phi, eps, **kwargs)
        _check_marginal_activation(self.activation, None, "MarginalDiceLoss")


class MarginalCrossEntropyLoss(nn.Module):
    """Cross-entropy with unannotated classes marginalised into the background (log-sum-exp; BCE over the
    annotated channels for ``activation="sigmoid"``)."""

    def __init__(self, *, activation: str = "softmax", ce_weight=None, ignore_index: int | None = None,
                 sync_batch: bool = False):
        super().__init__()
        activation = check_activation(activation)
        if activation not in ("softmax", "sigmoid"):
            raise ValueError(f"MarginalCrossEntropyLoss needs logits: activation must be 'softmax' or 'sigmoid'; "
                             f"got {activation!r}")
        self.options = dict(activation=activation, ce_weight=ce_weight, ignore_index=ignore_index,
                            sync_batch=sync_batch)

    def forward(self, input, target, annotated=None, mask=None):
        return marginal_cross_entropy(input, target, annotated, mask=mask, **self.options)


class _MissingDiceCE(_MissingDice):
    _dice = None

    def __init__(self, phi="I", eps=DEFAULT_EPS, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 ce_weight=None, **kwargs):
        kwargs.setdefault("activation", "softmax")
        if check_activation(kwargs["activation"]) is None:
            raise ValueError(f"{type(self).__name__} needs logits: activation must be 'softmax' or 'sigmoid'; "
                             f"got None")
        super().__init__(phi, eps, **kwargs)
        if self.options["reduction"] == "none":
            raise ValueError(f"{type(self).__name__} supports reduction 'mean' or 'sum', not 'none'")
        self.ce_options = dict(lambda_dice=lambda_dice, lambda_ce=lambda_ce, ce_weight=ce_weight)

    def forward(self, input, target, annotated=None, mask=None):
        return _ce_combo(type(self)._dice, input, target, annotated, mask=mask, **self.ce_options, **self.options)


class LeafDiceCELoss(_MissingDiceCE):
    """λ_dice · leaf Dice + λ_ce · marginal cross-entropy (the voxel-wise counterpart of dropping a class)."""

    _dice = staticmethod(leaf_dice_loss)


class MarginalDiceCELoss(_MissingDiceCE):
    """λ_dice · marginal Dice + λ_ce · marginal cross-entropy (softmax), the counterpart of ``DiceCELoss``."""

    _dice = staticmethod(marginal_dice_loss)

    def __init__(self, phi="I", eps=DEFAULT_EPS, **kwargs):
        super().__init__(phi, eps, **kwargs)
        _check_marginal_activation(self.activation, None, "MarginalDiceCELoss")
