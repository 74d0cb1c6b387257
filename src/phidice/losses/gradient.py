"""The analytic derivative of Eq. 3 with respect to the probabilities ỹ — Eq. 4 of the paper.

For a voxel ω in subset φ^ω, with N_φ = 2 Σ v·y·ỹ + ε_nr and D_φ = Σ v·(y + ỹ) + ε_dr:

    ∂DL/∂ỹ_ω = −ω_φ · v_c · (2 y_ω / D_φ − N_φ / D_φ²)

so within one φ (and class c, when inner weights differ per class) the gradient takes two values, one
for y = 0 and one for y = 1. :func:`dice_gradient` computes it in closed form from the same Eq. 3 steps as
the loss (:func:`phidice.equations.subset_terms`, then :func:`phidice.equations.eq4`), independently of
autograd; the tests hold autograd of :func:`phidice.dice_loss` against it, and :func:`phidice.explain`
reports it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from phidice import equations
from phidice.core.checks import check_input
from phidice.core.config import DEFAULT_EPS, DiceConfig
from phidice.core.signature import config_signature
from phidice.core.types import drop_background
from phidice.core.xp import TORCH
from phidice.equations import align_smoothing, loss_from_terms, subset_terms
from phidice.losses.base import config_smoothing
from phidice.sums import activate, dense_target, prepare_target, sum_stats


class DiceGradient(NamedTuple):
    """∂DL/∂ỹ and its two values per image and class.

    grad: (B, C, *spatial), the full gradient (0 on an excluded background channel and masked voxels).
    g0:   (B, C') value of ∂DL/∂ỹ at voxels with y = 0 (L1 relaxation; None when ``squared``).
    g1:   (B, C') value at voxels with y = 1 (None when ``squared``).
    loss: the loss value, for reference.
    """

    grad: torch.Tensor
    g0: torch.Tensor | None
    g1: torch.Tensor | None
    loss: torch.Tensor


def entry_gradients(terms, config: DiceConfig, shape) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4 per (image, class) entry: (∂DL/∂I, ∂DL/∂P), each of ``shape`` (B, C'), v_c included."""
    d_inter, d_pred = equations.entry_gradients(terms, config, TORCH)
    return d_inter.expand(shape), d_pred.expand(shape)


def _d_intersection(p: torch.Tensor, y: torch.Tensor, config: DiceConfig) -> torch.Tensor:
    """∂I/∂ỹ per voxel: y, or for ``soft_label`` (I = Σ min(ỹ, y)) 1 where ỹ < y, ½ where ỹ = y, 0 above."""
    if not config.soft_label or config.squared:
        return y
    return (p < y).to(p.dtype) + 0.5 * (p == y).to(p.dtype)


@config_signature(DiceConfig, skip=("activation", "fused"))
def dice_gradient(
    probs: torch.Tensor,
    target: torch.Tensor,
    phi="I",
    eps=DEFAULT_EPS,
    *,
    mask: torch.Tensor | None = None,
    config: DiceConfig | None = None,
    **options,
) -> DiceGradient:
    """Eq. 4: the gradient of :func:`phidice.dice_loss` (with ``activation=None``) w.r.t. ``probs``.

    Computed in closed form from the same Eq. 3 steps as the loss, independently of autograd, on the reference
    path (no ``activation``, no ``fused``).

    Args:
        probs: probabilities (B, C, *spatial).
        target, mask: as :func:`phidice.dice_loss`.
        phi, eps, …: the options of :func:`phidice.dice_loss`.
        config: a built :class:`~phidice.core.config.DiceConfig`; the options given are applied on top of it.

    Returns:
        :class:`DiceGradient`: ``grad`` (B, C, *spatial); ``g0`` / ``g1``, its (B, C') values at y = 0 / y = 1
        voxels (None when ``squared``); ``loss``.

    Raises:
        ValueError: ``reduction="none"`` (no single gradient), ``sync_batch=True``, or any bad option.

    Example:
        >>> import torch
        >>> from phidice import dice_gradient
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels)
        >>> labels = torch.tensor([[0, 1]])
        >>> g = dice_gradient(probs, labels, "I", 0.0)
        >>> g.g0  # ω·N/D² at y = 0: ½·1.8/2.1² and ½·1.6/1.9²
        tensor([[0.2041, 0.2216]])
        >>> g.g1  # ω·(N/D² − 2/D) at y = 1
        tensor([[-0.2721, -0.3047]])
    """
    config = DiceConfig(phi=phi, eps=eps, **options) if config is None else config.replace(**options)
    config = config.replace(activation=None, fused=False)
    if config.reduction == "none":
        raise ValueError(
            "reduction='none' gives one loss per subset, which has no single gradient; use 'mean' or 'sum'"
        )
    if config.sync_batch:
        raise ValueError("dice_gradient is the gradient of one process's batch; sync_batch=True is not supported")
    with torch.no_grad():
        check_input(probs, None, config.check_finite)
        prepared = prepare_target(probs, target, config, mask, check_range=False)
        stats = drop_background(sum_stats(probs, prepared, config), config.include_background)
        smoothing = align_smoothing(config_smoothing(config), config, probs.shape[1], stats.intersection, xp=TORCH)
        terms = subset_terms(stats, config, smoothing, xp=TORCH)
        d_inter, d_pred = entry_gradients(terms, config, stats.intersection.shape)
        p = activate(probs, None)
        C_in = probs.shape[1]
        keep = slice(1, None) if (not config.include_background and C_in > 1) else slice(None)
        B, C = d_inter.shape
        spatial_ones = (1,) * (probs.ndim - 2)
        pk = p[:, keep]
        dP_voxel = d_pred.view(B, C, *spatial_ones) * (2 * pk if config.squared else 1)
        g = (
            d_inter.view(B, C, *spatial_ones) * _d_intersection(p, dense_target(prepared, p, None), config)[:, keep]
            + dP_voxel
        )
        if prepared.mask is not None:
            m = prepared.mask.to(g.dtype)
            g = g * (m if m.shape[1] == 1 else m[:, keep])
        grad = torch.zeros_like(p)
        grad[:, keep] = g
        loss = loss_from_terms(terms, config, TORCH)
        if config.squared:
            return DiceGradient(grad, None, None, loss)
        return DiceGradient(grad, d_pred, d_inter + d_pred, loss)
