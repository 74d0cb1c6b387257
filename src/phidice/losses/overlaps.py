"""Tversky, focal Tversky and Jaccard losses: other indices of the same three sums, with explicit Φ and ε.

With I = Σ y·ỹ, P = Σ ỹ, Y = Σ y per subset φ (false positives P − I, false negatives Y − I):

    Tversky  T_φ = (I + ε_nr) / (I + α·(P − I) + β·(Y − I) + ε_dr),   loss (1 − T_φ)^γ (γ = 1: plain)
    Jaccard  J_φ = (I + ε_nr) / (P + Y − I + ε_dr),                     loss 1 − J_φ

α = β = ½ is the Dice index with ε halved (Tversky(ε) = Dice(2ε)); α = β = 1 is Jaccard. Everything else —
Φ, ε (per class, numerator/denominator, empty maps), class weights, ``empty``, ``ignore_index``, masks, the
fused path, ``sync_batch`` — is that of :func:`phidice.dice_loss`: the losses differ only in the
:class:`~phidice.core.config.Overlap` of their :class:`~phidice.core.config.DiceConfig`. The missing-label
losses take the same index with ``overlap=phidice.tversky(α, β, γ)`` (or ``overlap=phidice.JACCARD``).
"""

from __future__ import annotations

import warnings
from numbers import Real

import torch

from phidice.core.config import DEFAULT_EPS, JACCARD, CEConfig, DiceConfig, Overlap, split_options, tversky
from phidice.core.rules import check_compound
from phidice.core.signature import config_signature
from phidice.losses.base import config_smoothing
from phidice.losses.compound import DiceCELoss, dice_ce_from
from phidice.losses.dice import DiceLoss, dice_from
from phidice.losses.gradient import DiceGradient, dice_gradient

__all__ = ["tversky_loss", "jaccard_loss", "tversky_ce_loss", "jaccard_ce_loss", "TverskyLoss", "JaccardLoss",
           "TverskyCELoss", "JaccardCELoss", "tversky_gradient", "jaccard_gradient"]


def _with_index(options: dict, index: Overlap) -> dict:
    if "overlap" in options:
        raise TypeError("overlap is set by the loss itself (alpha, beta, gamma for Tversky); do not pass it")
    return {**options, "overlap": index}


def _tversky_options(options: dict) -> dict:
    """The options with α, β, γ replaced by the Tversky index they give."""
    index = tversky(*(options.pop(k, v) for k, v in (("alpha", 0.5), ("beta", 0.5), ("gamma", 1.0))))
    return _with_index(options, index)


_OLD_ORDER = ("alpha", "beta", "gamma", "phi", "eps")


def _positional(owner: str, args: tuple, options: dict) -> dict:
    """``phi, eps`` given by position, as in every loss. The order of phidice 0.1, ``alpha, beta, gamma, phi,
    eps`` (told apart by a number first: Φ is a name), still works with a DeprecationWarning."""
    names = ("phi", "eps")
    if args and isinstance(args[0], Real) and not isinstance(args[0], bool):
        warnings.warn(f"{owner}(alpha, beta, gamma, phi, eps) by position is deprecated: phi and eps come first, "
                      f"as in every phidice loss; pass alpha=, beta=, gamma= by keyword", DeprecationWarning,
                      stacklevel=3)
        names = _OLD_ORDER
    if len(args) > len(names):
        raise TypeError(f"{owner} takes at most {len(names)} positional arguments ({', '.join(names)}); "
                        f"got {len(args)}")
    for name, value in zip(names, args):
        if name in options:
            raise TypeError(f"{owner} got multiple values for argument {name!r}")
        options[name] = value
    return options


@config_signature(tversky, DiceConfig, skip=("overlap",))
def tversky_loss(input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None,
                 **options) -> torch.Tensor:
    """(Focal) Tversky loss over Φ: α weighs false positives, β false negatives, γ ≠ 1 focuses (1 − T)^γ.

    Other options as :func:`phidice.dice_loss`.
    """
    config = DiceConfig(**_tversky_options(options))
    return dice_from(input, target, config, config_smoothing(config), mask)


@config_signature(DiceConfig, skip=("overlap",))
def jaccard_loss(input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None,
                 **options) -> torch.Tensor:
    """Jaccard (IoU) loss over Φ: 1 − (I + ε_nr)/(P + Y − I + ε_dr); options as :func:`phidice.dice_loss`."""
    config = DiceConfig(**_with_index(options, JACCARD))
    return dice_from(input, target, config, config_smoothing(config), mask)


def _ce_form(input, target, options, mask, what: str) -> torch.Tensor:
    dice_options, ce_options = split_options(options)
    config = DiceConfig(**dice_options)
    check_compound(config, what)
    return dice_ce_from(input, target, config, CEConfig(**ce_options), config_smoothing(config), mask=mask)


@config_signature(tversky, DiceConfig, CEConfig, skip=("overlap",))
def tversky_ce_loss(input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None,
                    **options) -> torch.Tensor:
    """λ_dice · Tversky + λ_ce · cross-entropy; options as :func:`phidice.dice_ce_loss`."""
    return _ce_form(input, target, _tversky_options(options), mask, "TverskyCELoss")


@config_signature(DiceConfig, CEConfig, skip=("overlap",))
def jaccard_ce_loss(input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None,
                    **options) -> torch.Tensor:
    """λ_dice · Jaccard + λ_ce · cross-entropy; options as :func:`phidice.dice_ce_loss`."""
    return _ce_form(input, target, _with_index(options, JACCARD), mask, "JaccardCELoss")


@config_signature(tversky, DiceConfig, skip=("overlap",), positional=("phi", "eps"))
class TverskyLoss(DiceLoss):
    """(Focal) Tversky loss with explicit Φ and ε; ``alpha`` weighs false positives, ``beta`` false negatives,
    ``gamma`` ≠ 1 gives the focal form (1 − T_φ)^γ. Other options as :class:`phidice.DiceLoss`.

    Raises:
        ValueError: α, β or γ negative, α + β = 0, γ = 0, or any bad Dice option.
    """

    def __init__(self, *args, **options):
        super().__init__(**_tversky_options(_positional("TverskyLoss", args, options)))


@config_signature(DiceConfig, skip=("overlap",))
class JaccardLoss(DiceLoss):
    """Jaccard (IoU) loss with explicit Φ and ε; options as :class:`phidice.DiceLoss`."""

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        super().__init__(phi, eps, **_with_index(options, JACCARD))


@config_signature(tversky, DiceConfig, CEConfig, skip=("overlap",), positional=("phi", "eps"))
class TverskyCELoss(DiceCELoss):
    """λ_dice · (focal) Tversky + λ_ce · cross-entropy; the options of :class:`TverskyLoss` and
    :class:`phidice.DiceCELoss`."""

    def __init__(self, *args, **options):
        super().__init__(**_tversky_options(_positional("TverskyCELoss", args, options)))


@config_signature(DiceConfig, CEConfig, skip=("overlap",))
class JaccardCELoss(DiceCELoss):
    """λ_dice · Jaccard + λ_ce · cross-entropy; the options of :class:`phidice.DiceCELoss`."""

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        super().__init__(phi, eps, **_with_index(options, JACCARD))


@config_signature(tversky, DiceConfig, skip=("overlap", "activation", "fused"), positional=("phi", "eps"))
def tversky_gradient(probs: torch.Tensor, target: torch.Tensor, *args, **options) -> DiceGradient:
    """Eq. 4 for the (focal) Tversky loss: ∂L/∂ỹ, and its value at y = 0 (``g0``) and y = 1 (``g1``) per φ.

    With γ = 1 and N_φ, D_φ the numerator and denominator of T_φ: ω·α·N_φ/D_φ² at a y = 0 voxel and
    ω·((1 − β)·N_φ − D_φ)/D_φ² at a y = 1 voxel; γ ≠ 1 multiplies both by γ·(1 − T_φ)^(γ−1)
    (:func:`phidice.equations.eq4`). Options as :func:`phidice.dice_gradient`.
    """
    return dice_gradient(probs, target, **_tversky_options(_positional("tversky_gradient", args, options)))


@config_signature(DiceConfig, skip=("overlap", "activation", "fused"))
def jaccard_gradient(probs: torch.Tensor, target: torch.Tensor, phi="I", eps=DEFAULT_EPS, **options) -> DiceGradient:
    """Eq. 4 for the Jaccard loss: ω·N_φ/D_φ² at a y = 0 voxel and −ω/D_φ at a y = 1 voxel of φ."""
    return dice_gradient(probs, target, phi, eps, **_with_index(options, JACCARD))
