"""Cross-entropy for the compound losses: one function for full and partial annotation.

softmax: −log p_y averaged over the kept voxels (``ce_weight``: a weighted mean, as torch). With per-sample
``annotated`` classes the probabilities of the unannotated ones join the background (Shi et al. 2021):
log p'_0 = logsumexp(z_0, z_u, …) − logsumexp(z), stable for any finite logits; with every class annotated
this is the plain cross-entropy (and then runs as ``torch.nn.functional.cross_entropy``).
sigmoid: binary cross-entropy per channel; an unannotated channel drops its term and the mean runs over the
kept (voxel, annotated channel) pairs. ``label_smoothing`` s: softmax targets (1 − s)·y + s/K over the K
classes a sample can be labelled with (C when all are annotated, as torch); BCE targets y·(1 − s) + s/2.
Everything runs in float32 (float64 kept); under ``sync_batch`` the mean runs over the voxels of every rank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from phidice import distributed
from phidice.core.config import CEConfig, DiceConfig
from phidice.core.types import PreparedTarget
from phidice.sums import dense_target

__all__ = ["cross_entropy_from", "marginal_log_probs", "ce_weight_tensor"]


def ce_weight_tensor(weight, num_channels: int, like: torch.Tensor) -> torch.Tensor | None:
    """``ce_weight`` (tuple or buffer) as a (C,) tensor of ``like``'s dtype, one value per input channel."""
    if weight is None:
        return None
    w = (
        weight.to(like.device, like.dtype)
        if isinstance(weight, torch.Tensor)
        else torch.tensor(weight, dtype=like.dtype, device=like.device)
    )
    if w.ndim != 1 or w.numel() != num_channels:
        raise ValueError(f"ce_weight must have one value per class ({num_channels}); got shape {tuple(w.shape)}")
    return w


def marginal_log_probs(logits: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """log p' with log p'_0 = logsumexp(z_0, z_u …) − logsumexp(z), stable for any finite logits (float32).

    Entries of unannotated channels are 0 (they carry no target).
    """
    x = logits if logits.dtype == torch.float64 else logits.float()
    B, C = x.shape[:2]
    view = (B, C) + (1,) * (x.ndim - 2)
    a = annotated.view(view)
    bg = torch.zeros(C, dtype=torch.bool, device=x.device)
    bg[0] = True
    bg = bg.view((1, C) + (1,) * (x.ndim - 2))
    log_z = torch.logsumexp(x, 1, keepdim=True)
    log_bg = torch.logsumexp(x.masked_fill(~(bg | ~a), float("-inf")), 1, keepdim=True)
    out = torch.where(a, x - log_z, torch.zeros_like(x))
    return torch.where(bg, log_bg - log_z, out)


def xlogy_sum(y, log_p):
    """Σ_c y_c·log p_c over dim 1 (keepdim) with 0·log 0 = 0: a −Inf logit (p = 0) where y = 0 adds nothing,
    where y·log p would be 0·(−∞) = NaN (as in torch's cross-entropy with probability targets)."""
    return torch.where(y == 0, 0.0, y * log_p).sum(1, keepdim=True)


def _softmax_terms(x, prepared: PreparedTarget, annotated, w, smoothing: float):
    """Per-voxel cross-entropy (B, 1, *S) and its normaliser (the class weight of the voxel's label, or 1)."""
    C = x.shape[1]
    if annotated is None and prepared.labels is not None:  # every class annotated: torch's own fused kernel
        per = F.cross_entropy(x, prepared.labels, weight=w, reduction="none", label_smoothing=smoothing).unsqueeze(1)
        return per, (torch.ones_like(per) if w is None else w[prepared.labels].unsqueeze(1))
    if annotated is None:  # a map: torch's formula (weight w_c inside the sum, norm 1), with 0·log 0 = 0
        y = prepared.dense.to(x.dtype)
        if smoothing:
            y = (1 - smoothing) * y + smoothing / C
        wy = y if w is None else y * w.view((1, C) + (1,) * (x.ndim - 2))
        per = -xlogy_sum(wy, torch.log_softmax(x, 1))
        return per, torch.ones_like(per)
    B = x.shape[0]
    view = (B, C) + (1,) * (x.ndim - 2)
    logp = marginal_log_probs(x, annotated)
    a = annotated.to(x.dtype).view(view)
    weighted = logp if w is None else logp * w.view((1, C) + (1,) * (x.ndim - 2))
    if prepared.labels is not None:
        lab = prepared.labels.unsqueeze(1)
        per = -weighted.gather(1, lab)
        norm = torch.ones_like(per) if w is None else w[lab]
        if smoothing:  # (1 − s)·w_y·(−log p'_y) + s/K·Σ_k w_k·(−log p'_k) over the K labelable classes
            per = (1 - smoothing) * per - smoothing * weighted.sum(1, keepdim=True) / a.sum(1, keepdim=True)
        return per, norm
    y = prepared.dense.to(x.dtype) * a
    if smoothing:
        y = (1 - smoothing) * y + smoothing * a / a.sum(1, keepdim=True)
    per = -xlogy_sum(y, weighted)
    return per, torch.ones_like(per)


def _sigmoid_terms(x, prepared: PreparedTarget, annotated, w, smoothing: float):
    """Per-(voxel, channel) binary cross-entropy (B, C, *S) and its normaliser (0 for unannotated channels)."""
    B, C = x.shape[:2]
    y = dense_target(prepared, x, "sigmoid")
    if smoothing:
        y = y * (1 - smoothing) + 0.5 * smoothing
    # y·softplus(−x) + (1 − y)·softplus(x), each term 0 where its factor is: a saturated ±Inf logit on its own
    # label costs 0 (torch's binary_cross_entropy_with_logits gives NaN there), on the other label +Inf
    zero = torch.zeros_like(x)  # log(1 + e^x) as logaddexp(x, 0): exact, where F.softplus cuts off at x > 20
    per = torch.where(y == 0, 0.0, y * torch.logaddexp(-x, zero)) + torch.where(
        y == 1, 0.0, (1 - y) * torch.logaddexp(x, zero)
    )
    if w is not None:
        per = per * w.view((1, C) + (1,) * (x.ndim - 2))
    if annotated is None:
        return per, torch.ones_like(per)
    k = annotated.to(x.dtype).view((B, C) + (1,) * (x.ndim - 2)).expand_as(per)
    return per * k, k


def cross_entropy_from(
    input: torch.Tensor,
    prepared: PreparedTarget,
    config: DiceConfig,
    ce: CEConfig,
    weight=None,
    annotated: torch.Tensor | None = None,
) -> torch.Tensor:
    """The cross-entropy term (module docstring) of a prepared target; ``annotated`` checked by the caller.

    ``weight`` is the ``ce_weight`` buffer of a module (the config's tuple otherwise). The mask (and
    ``ignore_index``) must be voxel-wise here: a per-class mask has no meaning for one softmax term.
    """
    if config.activation not in ("softmax", "sigmoid"):
        raise ValueError(
            f"the cross-entropy needs logits: activation must be 'softmax' or 'sigmoid'; got {config.activation!r}"
        )
    if prepared.mask is not None and prepared.mask.shape[1] != 1:
        raise ValueError(
            f"the cross-entropy needs a voxel-wise mask (B, *spatial) or (B, 1, *spatial); got a "
            f"per-class mask of shape {tuple(prepared.mask.shape)}"
        )
    x = input if input.dtype == torch.float64 else input.float()
    w = ce_weight_tensor(ce.ce_weight if weight is None else weight, x.shape[1], x)
    terms = _softmax_terms if config.activation == "softmax" else _sigmoid_terms
    per, norm = terms(x, prepared, annotated, w, ce.label_smoothing)
    if prepared.mask is not None:
        m = prepared.mask.to(x.dtype)
        per, norm = torch.where(m == 0, 0.0, per * m), norm * m  # an ignored voxel's +Inf term: 0, not ∞·0 = NaN
    return distributed.global_mean(per.sum(), norm.sum().detach(), sync=config.sync_batch)
