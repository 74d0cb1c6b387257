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

__all__ = [
    "tversky_loss",
    "jaccard_loss",
    "tversky_ce_loss",
    "jaccard_ce_loss",
    "TverskyLoss",
    "JaccardLoss",
    "TverskyCELoss",
    "JaccardCELoss",
    "tversky_gradient",
    "jaccard_gradient",
]


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
    names: tuple[str, ...] = ("phi", "eps")
    if args and isinstance(args[0], Real) and not isinstance(args[0], bool):
        warnings.warn(
            f"{owner}(alpha, beta, gamma, phi, eps) by position is deprecated: phi and eps come first, "
            f"as in every phidice loss; pass alpha=, beta=, gamma= by keyword",
            DeprecationWarning,
            stacklevel=3,
        )
        names = _OLD_ORDER
    if len(args) > len(names):
        raise TypeError(
            f"{owner} takes at most {len(names)} positional arguments ({', '.join(names)}); got {len(args)}"
        )
    for name, value in zip(names, args):
        if name in options:
            raise TypeError(f"{owner} got multiple values for argument {name!r}")
        options[name] = value
    return options


@config_signature(tversky, DiceConfig, skip=("overlap",))
def tversky_loss(
    input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None, **options
) -> torch.Tensor:
    """(Focal) Tversky loss over Φ: α weighs false positives, β false negatives, γ ≠ 1 focuses (1 − T)^γ.

    Args:
        input, target, mask: as :func:`phidice.dice_loss`.
        phi, eps, …: the options of :func:`phidice.dice_loss` (the index aside).
        alpha, beta: the weights of false positives P − I and false negatives Y − I (α = β = ½: Dice).
        gamma: the focal exponent of (1 − T_φ)^γ (1: plain Tversky).

    Returns:
        The loss, a 0-d tensor (per φ with ``reduction="none"``).

    Raises:
        ValueError: α, β or γ negative, α + β = 0, γ = 0, or any bad Dice option.

    Example:
        >>> import torch
        >>> from phidice import tversky_loss
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels), probabilities
        >>> labels = torch.tensor([[0, 1]])
        >>> tversky_loss(probs, labels, alpha=0.3, beta=0.7, eps=0.0, activation=None)  # 1 − 0.9/1.03, 1 − 0.8/0.97
        tensor(0.1507)
    """
    config = DiceConfig(**_tversky_options(options))
    return dice_from(input, target, config, config_smoothing(config), mask)


@config_signature(DiceConfig, skip=("overlap",))
def jaccard_loss(
    input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None, **options
) -> torch.Tensor:
    """Jaccard (IoU) loss over Φ: 1 − (I + ε_nr)/(P + Y − I + ε_dr).

    Args:
        input, target, mask, phi, eps, …: as :func:`phidice.dice_loss` (the index aside).

    Returns:
        The loss, a 0-d tensor (per φ with ``reduction="none"``).

    Raises:
        ValueError / TypeError: a bad option, shapes that do not fit, labels outside [0, C).

    Example:
        >>> import torch
        >>> from phidice import jaccard_loss
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels), probabilities
        >>> labels = torch.tensor([[0, 1]])
        >>> jaccard_loss(probs, labels, eps=0.0, activation=None)  # mean of 1 − 0.9/1.2 and 1 − 0.8/1.1
        tensor(0.2614)
    """
    config = DiceConfig(**_with_index(options, JACCARD))
    return dice_from(input, target, config, config_smoothing(config), mask)


def _ce_form(input, target, options, mask, what: str) -> torch.Tensor:
    dice_options, ce_options = split_options(options)
    config = DiceConfig(**dice_options)
    check_compound(config, what)
    return dice_ce_from(input, target, config, CEConfig(**ce_options), config_smoothing(config), mask=mask)


@config_signature(tversky, DiceConfig, CEConfig, skip=("overlap",))
def tversky_ce_loss(
    input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None, **options
) -> torch.Tensor:
    """λ_dice · (focal) Tversky + λ_ce · cross-entropy.

    Args:
        input, target, mask: as :func:`phidice.dice_ce_loss`.
        alpha, beta, gamma: as :func:`phidice.tversky_loss`; the other options as :func:`phidice.dice_ce_loss`.

    Returns:
        The loss, a 0-d tensor.

    Raises:
        ValueError: a bad index, ``activation=None``, ``reduction="none"``, a negative λ, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import tversky_ce_loss
        >>> tversky_ce_loss(torch.zeros(1, 2, 2), torch.tensor([[0, 1]]), alpha=0.3, beta=0.7, eps=0.0)  # ½ + log 2
        tensor(1.1931)
    """
    return _ce_form(input, target, _tversky_options(options), mask, "TverskyCELoss")


@config_signature(DiceConfig, CEConfig, skip=("overlap",))
def jaccard_ce_loss(
    input: torch.Tensor, target: torch.Tensor, *, mask: torch.Tensor | None = None, **options
) -> torch.Tensor:
    """λ_dice · Jaccard + λ_ce · cross-entropy.

    Args:
        input, target, mask, phi, eps, …: as :func:`phidice.dice_ce_loss` (the index aside).

    Returns:
        The loss, a 0-d tensor.

    Raises:
        ValueError: ``activation=None``, ``reduction="none"``, a negative λ, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import jaccard_ce_loss
        >>> jaccard_ce_loss(torch.zeros(1, 2, 2), torch.tensor([[0, 1]]), eps=0.0)  # 1 − ⅓, plus log 2
        tensor(1.3598)
    """
    return _ce_form(input, target, _with_index(options, JACCARD), mask, "JaccardCELoss")


@config_signature(tversky, DiceConfig, skip=("overlap",), positional=("phi", "eps"))
class TverskyLoss(DiceLoss):
    """(Focal) Tversky loss with explicit Φ and ε, the module form of :func:`phidice.tversky_loss`.

    Args:
        phi, eps: as :class:`phidice.DiceLoss`, first by position as in every loss (the order ``alpha, beta,
            gamma, phi, eps`` of phidice 0.1 still works, with a DeprecationWarning).
        alpha, beta: the weights of false positives and false negatives; gamma ≠ 1 gives the focal form
            (1 − T_φ)^γ. Other options as :class:`phidice.DiceLoss`.

    Raises:
        ValueError: α, β or γ negative, α + β = 0, γ = 0, or any bad Dice option.

    Example:
        >>> import torch
        >>> from phidice import TverskyLoss
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels), probabilities
        >>> labels = torch.tensor([[0, 1]])
        >>> TverskyLoss("I", 0.0, alpha=0.3, beta=0.7, activation=None)(probs, labels)
        tensor(0.1507)
    """

    def __init__(self, *args, **options):
        super().__init__(**_tversky_options(_positional("TverskyLoss", args, options)))


@config_signature(DiceConfig, skip=("overlap",))
class JaccardLoss(DiceLoss):
    """Jaccard (IoU) loss with explicit Φ and ε, the module form of :func:`phidice.jaccard_loss`.

    Args:
        phi, eps, …: the options of :class:`phidice.DiceLoss` (the index aside).

    Raises:
        ValueError / TypeError: a bad option, named.

    Example:
        >>> import torch
        >>> from phidice import JaccardLoss
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels), probabilities
        >>> labels = torch.tensor([[0, 1]])
        >>> JaccardLoss("BCI", 0.0, activation=None)(probs, labels)  # one φ: 1 − 1.7/(2 + 2 − 1.7)
        tensor(0.2609)
    """

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        super().__init__(phi, eps, **_with_index(options, JACCARD))


@config_signature(tversky, DiceConfig, CEConfig, skip=("overlap",), positional=("phi", "eps"))
class TverskyCELoss(DiceCELoss):
    """λ_dice · (focal) Tversky + λ_ce · cross-entropy, the module form of :func:`phidice.tversky_ce_loss`.

    Args:
        phi, eps, alpha, beta, gamma: as :class:`TverskyLoss` (the old order warns the same way).
        lambda_dice, lambda_ce, ce_weight, label_smoothing, …: as :class:`phidice.DiceCELoss`.

    Raises:
        ValueError: a bad index, ``activation=None``, ``reduction="none"``, a negative λ, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import TverskyCELoss
        >>> TverskyCELoss("I", 0.0, alpha=0.3, beta=0.7)(torch.zeros(1, 2, 2), torch.tensor([[0, 1]]))
        tensor(1.1931)
    """

    def __init__(self, *args, **options):
        super().__init__(**_tversky_options(_positional("TverskyCELoss", args, options)))


@config_signature(DiceConfig, CEConfig, skip=("overlap",))
class JaccardCELoss(DiceCELoss):
    """λ_dice · Jaccard + λ_ce · cross-entropy, the module form of :func:`phidice.jaccard_ce_loss`.

    Args:
        phi, eps, …: the options of :class:`phidice.DiceCELoss` (the index aside).

    Raises:
        ValueError: ``activation=None``, ``reduction="none"``, a negative λ, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import JaccardCELoss
        >>> JaccardCELoss("I", 0.0)(torch.zeros(1, 2, 2), torch.tensor([[0, 1]]))
        tensor(1.3598)
    """

    def __init__(self, phi="I", eps=DEFAULT_EPS, **options):
        super().__init__(phi, eps, **_with_index(options, JACCARD))


@config_signature(tversky, DiceConfig, skip=("overlap", "activation", "fused"), positional=("phi", "eps"))
def tversky_gradient(probs: torch.Tensor, target: torch.Tensor, *args, **options) -> DiceGradient:
    """Eq. 4 for the (focal) Tversky loss: ∂L/∂ỹ, and its value at y = 0 (``g0``) and y = 1 (``g1``) per φ.

    With γ = 1 and N_φ, D_φ the numerator and denominator of T_φ: ω·α·N_φ/D_φ² at a y = 0 voxel and
    ω·((1 − β)·N_φ − D_φ)/D_φ² at a y = 1 voxel; γ ≠ 1 multiplies both by γ·(1 − T_φ)^(γ−1)
    (:func:`phidice.equations.eq4`).

    Args:
        probs, target, phi, eps, …: as :func:`phidice.dice_gradient`; alpha, beta, gamma as
            :func:`phidice.tversky_loss` (the order ``alpha, beta, gamma, phi, eps`` warns, as in TverskyLoss).

    Returns:
        :class:`phidice.DiceGradient` (``grad``, ``g0``, ``g1``, ``loss``).

    Raises:
        ValueError: a bad index, ``reduction="none"``, ``sync_batch=True``, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import tversky_gradient
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels), probabilities
        >>> labels = torch.tensor([[0, 1]])
        >>> tversky_gradient(probs, labels, "I", 0.0, alpha=0.3, beta=0.7).g0  # ω·α·N/D² per (image, class)
        tensor([[0.1273, 0.1275]])
    """
    return dice_gradient(probs, target, **_tversky_options(_positional("tversky_gradient", args, options)))


@config_signature(DiceConfig, skip=("overlap", "activation", "fused"))
def jaccard_gradient(probs: torch.Tensor, target: torch.Tensor, phi="I", eps=DEFAULT_EPS, **options) -> DiceGradient:
    """Eq. 4 for the Jaccard loss: ω·N_φ/D_φ² at a y = 0 voxel and −ω/D_φ at a y = 1 voxel of φ.

    Args:
        probs, target, phi, eps, …: as :func:`phidice.dice_gradient` (the index aside).

    Returns:
        :class:`phidice.DiceGradient` (``grad``, ``g0``, ``g1``, ``loss``).

    Raises:
        ValueError: ``reduction="none"``, ``sync_batch=True``, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import jaccard_gradient
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels), probabilities
        >>> labels = torch.tensor([[0, 1]])
        >>> jaccard_gradient(probs, labels, "I", 0.0).g1  # −ω/D_φ: −½/1.2 and −½/1.1
        tensor([[-0.4167, -0.4545]])
    """
    return dice_gradient(probs, target, phi, eps, **_with_index(options, JACCARD))
