"""The Dice loss of Eq. 3 over subsets φ ∈ Φ, computed from per-(b, c) sums.

    DL = Σ_φ ω_φ · (1 − (2 Σ_φ v·y·ỹ + ε_nr,φ) / (Σ_φ v·(y + ỹ) + ε_dr,φ))

with ω_φ the normalised outer weights (1/|Φ| by default) and v the inner class weights, which are 1
unless a φ spans several classes (Φ = CI/BCI) and ``class_weights`` or ``weighting`` are given.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from phidice.core._checks import EMPTY_MODES, REDUCTIONS, WEIGHTINGS, check_choice, per_class
from phidice.core.phi import Phi, parse_phi
from phidice.core.stats import DiceStats, compute_stats

DEFAULT_EPS = 1e-5


class SubsetTerms(NamedTuple):
    """Everything Eq. 3/4 needs per subset φ (shapes (Bφ, Cφ)) plus the inner weights v (shape (B|1, C))."""

    numerator: torch.Tensor  # N_φ = 2 Σ v·I + ε_nr
    denominator: torch.Tensor  # D_φ = Σ v·(P + Y) + ε_dr
    weight: torch.Tensor  # ω_φ (normalised for "mean", raw for "sum"; 0 for skipped φ)
    empty: torch.Tensor | None  # bool: Σ_φ y == 0 (None when neither eps_empty nor empty="skip" needs it)
    skipped: torch.Tensor | None  # bool: φ dropped from the mean (None: none can be)
    inner: torch.Tensor  # v, broadcastable to (B, C)


def _generalized_weights(target_sum: torch.Tensor, kind: str) -> torch.Tensor:
    """Sudre's w_c = 1/(Σy)² ("generalized") or 1/Σy ("generalized_simple") per row of ``target_sum``.

    Rule for empty classes (Σy = 0, weight ∞): they take the largest weight among the non-empty classes
    of the same subset (MONAI's rule); if every class of the subset is empty, all weights are 1, so that
    ε alone decides that subset, as in a plain Dice.
    """
    ts = target_sum.detach()
    w = 1.0 / (ts * ts) if kind == "generalized" else 1.0 / ts
    inf = torch.isinf(w)
    w = w.masked_fill(inf, 0.0)
    row_max = w.amax(dim=1, keepdim=True)
    w = torch.where(inf, row_max.expand_as(w), w)
    all_empty = inf.all(dim=1, keepdim=True)
    return torch.where(all_empty, torch.ones_like(w), w)


def _sync(stats: DiceStats, keep: torch.Tensor | None, sync_batch: bool):
    """Under ``sync_batch``, the (b, c) sums and keep of every rank, in rank order: the global (DDP) batch.

    Gathering rows before any subset sum makes every Φ, weight, ε and skip rule that of one process on the
    concatenated batch; :mod:`phidice.distributed` gives the backward that keeps DDP's gradients exact.
    """
    if not sync_batch:
        return stats, keep
    from phidice import distributed

    return distributed.gather_batch(stats, keep)


def subset_terms(
    stats: DiceStats,
    *,
    phi: "str | Phi" = "I",
    eps_nr: torch.Tensor,
    eps_dr: torch.Tensor,
    eps_empty: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
    weighting: str | None = None,
    empty: str = "smooth",
    reduction: str = "mean",
    sync_batch: bool = False,
    keep: torch.Tensor | None = None,
) -> SubsetTerms:
    """Numerator, denominator and weight of every φ ∈ Φ from the (B, C) sums.

    ε tensors are scalars or (C,) per class. A scalar ε enters each φ once; a per-class ε is a virtual
    volume of its class and is summed, with the inner weight v, over the classes a φ spans.

    ``keep`` (B, C) bool says which (image, class) entries take part (the leaf Dice's annotated
    classes): the sums of the others leave their subsets, and a φ with no kept entry leaves the mean.
    """
    phi = check_config(phi=phi, empty=empty, reduction=reduction, weighting=weighting)
    stats, keep = _sync(stats, keep, sync_batch)
    I, P, Y = stats
    kept_phi = None
    if keep is not None:
        if keep.shape != I.shape:
            raise ValueError(f"keep must have shape (B, C) = {tuple(I.shape)}; got {tuple(keep.shape)}")
        k = keep.to(I.dtype)
        I, P, Y = I * k, P * k, Y * k
        kept_phi = phi.reduce(k) > 0
    if phi.sums_batch:  # under sync_batch the batch is already the global one (see _sync)
        I, P, Y = I.sum(0, keepdim=True), P.sum(0, keepdim=True), Y.sum(0, keepdim=True)
    C = I.shape[1]
    ones = torch.ones((1, C), dtype=I.dtype, device=I.device)

    def as_row(e: torch.Tensor) -> torch.Tensor:  # per-class ε or weight → (1, C)
        return e.to(I.dtype).reshape(1, -1).expand(1, C) if e.ndim == 1 else e.to(I.dtype)

    if phi.sums_classes:
        inner = ones if class_weights is None else as_row(class_weights)
        if weighting is not None:
            inner = inner * _generalized_weights(Y, weighting)
        if keep is not None:  # unkept classes carry no ε and no weight inside a class sum
            k = keep.to(I.dtype)
            inner = inner * (k.amax(0, keepdim=True) if phi.sums_batch else k)
        target_sum = Y.sum(1, keepdim=True)
        inter = (inner * I).sum(1, keepdim=True)
        den = (inner * (P + Y)).sum(1, keepdim=True)

        def eps_phi(e: torch.Tensor) -> torch.Tensor:
            return e if e.ndim == 0 else (inner * as_row(e)).sum(1, keepdim=True)

        outer = torch.ones_like(target_sum)
    else:
        inner = ones
        target_sum, inter, den = Y, I, P + Y

        def eps_phi(e: torch.Tensor) -> torch.Tensor:
            return e if e.ndim == 0 else as_row(e)

        outer = (ones if class_weights is None else as_row(class_weights)).expand_as(target_sum)

    is_empty = target_sum == 0 if (eps_empty is not None or empty == "skip") else None
    en, ed = eps_phi(eps_nr), eps_phi(eps_dr)
    if eps_empty is not None:
        ee = eps_phi(eps_empty)
        en, ed = torch.where(is_empty, ee, en), torch.where(is_empty, ee, ed)
    numerator = torch.add(en, inter, alpha=2)  # 2·I + ε_nr in one operation
    denominator = den + ed
    skipped = is_empty if empty == "skip" else None
    if kept_phi is not None:
        skipped = ~kept_phi if skipped is None else skipped | ~kept_phi
    if skipped is not None:
        outer = outer * (~skipped).to(outer.dtype)
    if reduction == "mean":
        if skipped is None and (phi.sums_classes or class_weights is None):  # equal weights
            outer = torch.full_like(target_sum, 1.0 / target_sum.numel())
        else:
            total = outer.sum()
            outer = outer / torch.where(total > 0, total, 1.0)
    return SubsetTerms(numerator, denominator, outer, is_empty, skipped, inner)


def check_config(*, phi, empty, reduction, weighting) -> Phi:
    """Validate the non-tensor options up front (module construction, before any computation)."""
    phi = parse_phi(phi)
    check_choice("empty", empty, EMPTY_MODES)
    check_choice("reduction", reduction, REDUCTIONS)
    check_choice("weighting", weighting, WEIGHTINGS)
    if weighting is not None and not phi.sums_classes:
        raise ValueError(
            f"weighting={weighting!r} weighs classes inside one Dice ratio and needs a Φ that sums over "
            f"classes ('CI' or 'BCI'); got phi={phi.value!r}"
        )
    return phi


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """N/D, with 0/0 (ε = 0 and nothing predicted nor labelled) read as a perfect score of 1."""
    ok = den > 0
    return torch.where(ok, num / torch.where(ok, den, 1.0), 1.0)


def loss_from_stats(
    stats: DiceStats,
    *,
    phi: "str | Phi" = "I",
    eps: "float | torch.Tensor" = DEFAULT_EPS,
    eps_nr=None,
    eps_dr=None,
    eps_empty=None,
    class_weights=None,
    weighting: str | None = None,
    empty: str = "smooth",
    reduction: str = "mean",
    sync_batch: bool = False,
    keep: torch.Tensor | None = None,
    num_channels: int | None = None,
    include_background: bool = True,
) -> torch.Tensor:
    """The Dice loss of Eq. 3 from (B, C) sums (see :func:`dice_loss` for the arguments).

    ``reduction="none"`` returns 1 − DSC_φ per subset, shape (B, C), (B, 1), (1, C) or (1, 1) for
    I, CI, BI, BCI, unweighted; subsets skipped by ``empty="skip"`` are 0 there. ``num_channels`` and
    ``include_background`` say how per-class ε/weights align when the sums lack the background column.
    """
    C_in = stats.intersection.shape[1] if num_channels is None else num_channels
    options = resolve_options(stats, C_in, include_background, eps=eps, eps_nr=eps_nr, eps_dr=eps_dr,
                              eps_empty=eps_empty, class_weights=class_weights)
    terms = subset_terms(stats, phi=phi, weighting=weighting, empty=empty, reduction=reduction,
                         sync_batch=sync_batch, keep=keep, **options)
    return _reduce(terms, reduction)


def resolve_options(stats: DiceStats, num_channels: int, include_background: bool, *, eps, eps_nr, eps_dr,
                    eps_empty, class_weights) -> dict:
    """ε and class weights as scalar or (C',) tensors on the sums' device, checked and class-aligned."""
    kw = dict(device=stats.intersection.device, dtype=stats.intersection.dtype)

    def pc(value, name, allow_none=False):
        return per_class(value, name, num_channels, include_background, allow_none=allow_none, **kw)

    e = pc(eps, "eps")
    return dict(
        eps_nr=e if eps_nr is None else pc(eps_nr, "eps_nr"),
        eps_dr=e if eps_dr is None else pc(eps_dr, "eps_dr"),
        eps_empty=pc(eps_empty, "eps_empty", allow_none=True),
        class_weights=pc(class_weights, "class_weights", allow_none=True),
    )


def _reduce(terms: SubsetTerms, reduction: str) -> torch.Tensor:
    per_subset = 1 - _safe_ratio(terms.numerator, terms.denominator)
    if reduction == "none":
        return per_subset if terms.skipped is None else per_subset.masked_fill(terms.skipped, 0.0)
    return (terms.weight * per_subset).sum()


def dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    phi: "str | Phi" = "I",
    eps: "float | torch.Tensor" = DEFAULT_EPS,
    eps_nr=None,
    eps_dr=None,
    eps_empty=None,
    activation: str | None = "softmax",
    squared: bool = False,
    include_background: bool = True,
    class_weights=None,
    weighting: str | None = None,
    empty: str = "smooth",
    ignore_index: int | None = None,
    mask: torch.Tensor | None = None,
    reduction: str = "mean",
    check_finite: bool = False,
    fused: "bool | str" = "auto",
    sync_batch: bool = False,
) -> torch.Tensor:
    """Dice loss of Eq. 3 with explicit reduction subsets Φ and smoothing ε.

    Args:
        input: logits (or probabilities with ``activation=None``), shape (B, C, *spatial).
        target: integer labels (B, *spatial) / (B, 1, *spatial), or a one-hot/soft map (B, C, *spatial).
        phi: "I" (per image and class), "CI" (per image), "BI" (per class over the batch), "BCI" (all).
        eps: ε in numerator and denominator, a float or one value per class (aligned with dim 1);
            ``eps_nr`` / ``eps_dr`` override either side; ``eps_empty`` replaces both for subsets φ
            whose target is empty.
        activation: "softmax", "sigmoid" or None; computed in float32 even for fp16/bf16 inputs.
        squared: L2 relaxation, Σỹ² + Σy² in the denominator (V-Net).
        include_background: keep class 0 (ε and weights may be given with or without its entry).
        class_weights: per-class weights — a weighted mean of per-φ losses for I/BI; weights inside
            the class sums for CI/BCI.
        weighting: "generalized" (Sudre, 1/(Σy)²) or "generalized_simple" (1/Σy), for Φ = CI/BCI.
        empty: "smooth" (ε decides, the paper's behaviour) or "skip" (empty-target φ leave the mean).
        ignore_index / mask: voxels that leave every sum; applied after the activation.
        reduction: "mean" (weighted mean over φ), "sum", or "none" (1 − DSC per φ, see
            :func:`loss_from_stats`).
        fused: "auto" (fused kernel when it applies), False (reference path) or True (require it).
        sync_batch: under torch.distributed, all-reduce the sums so Φ ∋ B means the global batch.
    """
    check_config(phi=phi, empty=empty, reduction=reduction, weighting=weighting)
    stats = compute_stats(
        input, target, activation=activation, mask=mask, ignore_index=ignore_index, squared=squared,
        include_background=include_background, check_finite=check_finite, fused=fused,
    )
    return loss_from_stats(stats, phi=phi, eps=eps, eps_nr=eps_nr, eps_dr=eps_dr, eps_empty=eps_empty,
                           class_weights=class_weights, weighting=weighting, empty=empty, reduction=reduction,
                           sync_batch=sync_batch, num_channels=input.shape[1],
                           include_background=include_background)
