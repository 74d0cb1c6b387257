"""The analytic derivative of Eq. 3 with respect to the probabilities ỹ — Eq. 4 of the paper.

For a voxel ω in subset φ^ω, with N_φ = 2 Σ v·y·ỹ + ε_nr and D_φ = Σ v·(y + ỹ) + ε_dr:

    ∂DL/∂ỹ_ω = −ω_φ · v_c · (2 y_ω / D_φ − N_φ / D_φ²)

so within one φ (and class c, when inner weights differ per class) the gradient takes two values, one
for y = 0 and one for y = 1. This module computes it in closed form, independently of autograd; the
tests hold autograd of :func:`phidice.dice_loss` against it, and :func:`phidice.explain` reports it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from phidice.core.dice import DEFAULT_EPS, _reduce, check_config, resolve_options, subset_terms
from phidice.core.phi import parse_phi
from phidice.core.stats import activate, compute_stats, dense_target, prepare_target


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


def dice_gradient(
    probs: torch.Tensor,
    target: torch.Tensor,
    phi="I",
    eps=DEFAULT_EPS,
    *,
    eps_nr=None,
    eps_dr=None,
    eps_empty=None,
    squared: bool = False,
    include_background: bool = True,
    class_weights=None,
    weighting: str | None = None,
    empty: str = "smooth",
    ignore_index: int | None = None,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
) -> DiceGradient:
    """Eq. 4: the gradient of :func:`phidice.dice_loss` (with ``activation=None``) w.r.t. ``probs``.

    Same arguments as :func:`phidice.dice_loss`; ``probs`` are probabilities (B, C, *spatial).
    """
    if reduction == "none":
        raise ValueError("reduction='none' gives one loss per subset, which has no single gradient; "
                         "use 'mean' or 'sum'")
    phi = check_config(phi=phi, empty=empty, reduction=reduction, weighting=weighting)
    with torch.no_grad():
        stats = compute_stats(probs, target, activation=None, mask=mask, ignore_index=ignore_index,
                              squared=squared, include_background=True, fused=False)
        prepared = prepare_target(probs, target, activation=None, ignore_index=ignore_index, mask=mask)
        p = activate(probs, None)
        y = dense_target(prepared, p, None)
        C_in = probs.shape[1]
        keep = slice(1, None) if (not include_background and C_in > 1) else slice(None)
        stats = stats.select_classes(keep)
        options = resolve_options(stats, C_in, include_background, eps=eps, eps_nr=eps_nr, eps_dr=eps_dr,
                                  eps_empty=eps_empty, class_weights=class_weights)
        t = subset_terms(stats, phi=phi, weighting=weighting, empty=empty, reduction=reduction, **options)
        N, D = t.numerator, t.denominator
        ok = D > 0
        D_safe = torch.where(ok, D, torch.ones_like(D))
        # ∂L/∂I and ∂L/∂P per φ, broadcast to (B, C') and multiplied by the inner weight v of class c
        dI = torch.where(ok, -t.weight * 2 / D_safe, torch.zeros_like(D))
        dP = torch.where(ok, t.weight * N / D_safe**2, torch.zeros_like(D))
        B, C = stats.intersection.shape
        v = t.inner.expand(B, C) if parse_phi(phi).sums_classes else torch.ones(B, C, dtype=D.dtype, device=D.device)
        dI = dI.expand(B, C) * v
        dP = dP.expand(B, C) * v
        loss = _reduce(t, reduction)  # the loss itself, exactly as loss_from_stats computes it

        spatial_ones = (1,) * (probs.ndim - 2)
        yk, pk = y[:, keep], p[:, keep]
        dP_voxel = dP.view(B, C, *spatial_ones) * (2 * pk if squared else 1)
        g = dI.view(B, C, *spatial_ones) * yk + dP_voxel
        if prepared.mask is not None:
            m = prepared.mask.to(g.dtype)
            g = g * (m if m.shape[1] == 1 else m[:, keep])
        grad = torch.zeros_like(p)
        grad[:, keep] = g
        if squared:
            return DiceGradient(grad, None, None, loss)
        return DiceGradient(grad, dP, dI + dP, loss)
