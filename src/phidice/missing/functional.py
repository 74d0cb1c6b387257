"""Dice and cross-entropy for partially annotated data: leaf (Fidon et al. 2021) and marginal (Shi et al. 2021).

``annotated`` is a (B, C) bool tensor over the input's channels: which classes are annotated in each
sample. In a sample with unannotated classes, label 0 means "background or one of those classes", so
their voxels are labelled background in the target. Both losses reuse the core's per-(b, c) sums:

* leaf: the (b, c) entries of unannotated classes — and of the background of any sample that misses a
  class, since its label 0 is then no leaf label — leave the subsets φ through the core's ``keep`` mask;
* marginal: per sample, the probabilities of unannotated classes are summed into the background
  (probability space; in log space for the cross-entropy), then those channels leave through ``keep``.

With every class annotated both equal :func:`phidice.dice_loss` (and the cross-entropy equals torch's).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from phidice.core._checks import _is_compiling, check_activation
from phidice.core.dice import DEFAULT_EPS, check_config, loss_from_stats
from phidice.core.stats import (
    DiceStats,
    activate,
    check_input,
    compute_stats,
    dense_target,
    prepare_target,
    reference_stats,
)


def has_background(num_channels: int, activation) -> bool:
    """Channel 0 is a background that absorbs unannotated classes for softmax/probabilities with C > 1.

    Under ``activation="sigmoid"`` every channel is its own (possibly overlapping) class.
    """
    return num_channels > 1 and activation != "sigmoid"


def check_annotated(annotated, input: torch.Tensor, activation) -> torch.Tensor:
    """Validate ``annotated`` against ``input`` (B, C, *S) and return it as a (B, C) bool tensor on its device.

    Accepted: bool, or integers holding only 0/1 (anything convertible by ``torch.as_tensor``); None means
    every class is annotated. Errors: a float dtype, a shape other than (B, C), a sample with nothing
    annotated, and — when channel 0 is a background (:func:`has_background`) — a False background entry.
    """
    B, C = input.shape[:2]
    if annotated is None:
        return torch.ones(B, C, dtype=torch.bool, device=input.device)
    if not isinstance(annotated, torch.Tensor):
        try:
            annotated = torch.as_tensor(annotated)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"annotated must be a (B, C) bool tensor; got {type(annotated).__name__}") from err
    if annotated.dtype != torch.bool and (annotated.is_floating_point() or annotated.is_complex()):
        raise TypeError(f"annotated must be a bool tensor (or integers 0/1) of shape (B, C); got dtype "
                        f"{annotated.dtype} — use `annotated > 0.5` or `.bool()` to say which classes are annotated")
    if tuple(annotated.shape) != (B, C):
        raise ValueError(f"annotated must have shape (B, C) = {(B, C)}, one flag per sample and input channel "
                         f"(background column included); got shape {tuple(annotated.shape)}")
    checking = not _is_compiling()
    if annotated.dtype != torch.bool:
        if checking and bool(((annotated != 0) & (annotated != 1)).any()):
            raise ValueError(f"annotated of integer dtype {annotated.dtype} must hold only 0 and 1")
        annotated = annotated != 0
    annotated = annotated.to(input.device)
    if checking:
        nothing = ~annotated.any(1)
        if bool(nothing.any()):
            rows = nothing.nonzero().flatten().tolist()
            raise ValueError(f"annotated: sample(s) {rows} have no class annotated at all; such a sample carries "
                             f"no label information — leave it out of the batch (or mask it)")
        if has_background(C, activation) and not bool(annotated[:, 0].all()):
            rows = (~annotated[:, 0]).nonzero().flatten().tolist()
            raise ValueError(
                f"annotated[:, 0] (background) must be True; got False for sample(s) {rows}. The background "
                f"is always annotated: it is what unannotated classes are labelled as in the target"
            )
    return annotated


def check_unannotated_labels(target_sum: torch.Tensor, annotated: torch.Tensor) -> None:
    """Error when a class marked unannotated has labels (target mass under the mask) in its sample."""
    if _is_compiling():
        return
    bad = (target_sum.detach() > 0) & ~annotated
    if bool(bad.any()):
        pairs = [tuple(p) for p in bad.nonzero().tolist()]
        shown = ", ".join(str(p) for p in pairs[:6]) + (" ..." if len(pairs) > 6 else "")
        raise ValueError(
            f"target has labels of classes marked unannotated, at (sample, class) {shown}: label unannotated "
            f"classes as background (0) in the target, or mark them annotated"
        )


def leaf_keep(annotated: torch.Tensor, activation) -> torch.Tensor:
    """(B, C) entries of the leaf Dice: annotated classes, and the background only in fully annotated samples."""
    if not has_background(annotated.shape[1], activation):
        return annotated
    complete = annotated[:, 1:].all(1, keepdim=True)
    return torch.cat([complete, annotated[:, 1:]], dim=1)


def merge_probabilities(probs: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """Shi et al.'s marginalisation: p'_0 = p_0 + Σ_{u unannotated} p_u per sample; unannotated channels → 0.

    Done in probability space (adding logits would be wrong). ∂p'_0/∂p_u = 1, so an unannotated class's
    probability receives exactly the background's gradient.
    """
    B, C = probs.shape[:2]
    view = (B, C) + (1,) * (probs.ndim - 2)
    a = annotated.to(probs.dtype).view(view)
    to_background = ((1 - a) * probs).sum(1, keepdim=True)
    e0 = torch.zeros(C, dtype=probs.dtype, device=probs.device)
    e0[0] = 1
    return probs * a + e0.view((1, C) + (1,) * (probs.ndim - 2)) * to_background


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


def _dice_from_stats(stats: DiceStats, keep: torch.Tensor, num_channels: int, *, include_background, phi, eps,
                     eps_nr, eps_dr, eps_empty, class_weights, weighting, empty, reduction, sync_batch):
    if not include_background and num_channels > 1:
        stats, keep = stats.select_classes(slice(1, None)), keep[:, 1:]
    return loss_from_stats(stats, phi=phi, eps=eps, eps_nr=eps_nr, eps_dr=eps_dr, eps_empty=eps_empty,
                           class_weights=class_weights, weighting=weighting, empty=empty, reduction=reduction,
                           sync_batch=sync_batch, keep=keep, num_channels=num_channels,
                           include_background=include_background)


def leaf_dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    annotated=None,
    *,
    phi="I",
    eps=DEFAULT_EPS,
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
    fused="auto",
    sync_batch: bool = False,
) -> torch.Tensor:
    """Leaf Dice (Fidon et al. 2021) over Φ: unannotated (image, class) entries leave the subsets φ.

    Per Φ: I — mean over the annotated (b, c); CI — per image, classes summed over its annotated ones;
    BI — per class, summed over the images where it is annotated; BCI — one sum over all annotated
    entries. The background takes part only in samples with every class annotated (elsewhere label 0
    may hide an unannotated class). φ with no kept entry leave the mean. Other arguments as
    :func:`phidice.dice_loss`; the fused path applies as there.
    """
    check_config(phi=phi, empty=empty, reduction=reduction, weighting=weighting)
    activation = check_activation(activation)
    check_input(input, activation, check_finite)
    annotated = check_annotated(annotated, input, activation)
    stats = compute_stats(input, target, activation=activation, mask=mask, ignore_index=ignore_index,
                          squared=squared, include_background=True, check_finite=check_finite, fused=fused)
    check_unannotated_labels(stats.target_sum, annotated)
    return _dice_from_stats(stats, leaf_keep(annotated, activation), input.shape[1],
                            include_background=include_background, phi=phi, eps=eps, eps_nr=eps_nr,
                            eps_dr=eps_dr, eps_empty=eps_empty, class_weights=class_weights, weighting=weighting,
                            empty=empty, reduction=reduction, sync_batch=sync_batch)


def _check_marginal_activation(activation, num_channels: int | None, what: str) -> None:
    if activation == "sigmoid":
        raise ValueError(f"{what} sums the probabilities of mutually exclusive classes into the background and "
                         f"needs activation='softmax' (or None with probabilities); got 'sigmoid' — "
                         f"use the leaf loss for independent sigmoid channels")
    if num_channels is not None and num_channels < 2:
        raise ValueError(f"{what} needs a background channel and at least one class (C ≥ 2); "
                         f"got C = {num_channels}")


def marginal_dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    annotated=None,
    *,
    phi="I",
    eps=DEFAULT_EPS,
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
    fused="auto",
    sync_batch: bool = False,
) -> torch.Tensor:
    """Marginal Dice (Shi et al. 2021) over Φ: p_u of unannotated classes is added to p_0, then they leave.

    The merged background's intersection needs Σ_{y=0} p_u, which per-(b, c) sums do not hold, so with
    ``include_background=True`` this runs the dense reference path (``fused=True`` is an error). With
    ``include_background=False`` the merged background leaves the loss and the marginal Dice equals the
    leaf Dice on the foreground; it then takes the per-(b, c) (fused when available) path.
    """
    check_config(phi=phi, empty=empty, reduction=reduction, weighting=weighting)
    activation = check_activation(activation)
    check_input(input, activation, check_finite)
    _check_marginal_activation(activation, input.shape[1], "the marginal Dice")
    annotated = check_annotated(annotated, input, activation)
    if fused not in (True, False, "auto"):
        raise ValueError(f"fused must be True, False or 'auto'; got {fused!r}")
    if not include_background:
        stats = compute_stats(input, target, activation=activation, mask=mask, ignore_index=ignore_index,
                              squared=squared, include_background=True, check_finite=check_finite, fused=fused)
    else:
        if fused is True:
            raise ValueError("fused=True but the marginal Dice with include_background=True needs Σ_{y=0} p_u "
                             "cross sums that the per-(b, c) fused kernels do not give; use fused='auto' or False")
        prepared = prepare_target(input, target, activation=activation, ignore_index=ignore_index, mask=mask,
                                  check_finite=check_finite)
        probs = activate(input, activation)
        y = dense_target(prepared, probs, activation)
        stats = reference_stats(merge_probabilities(probs, annotated), y, prepared.mask, squared)
    check_unannotated_labels(stats.target_sum, annotated)
    return _dice_from_stats(stats, annotated, input.shape[1], include_background=include_background, phi=phi,
                            eps=eps, eps_nr=eps_nr, eps_dr=eps_dr, eps_empty=eps_empty,
                            class_weights=class_weights, weighting=weighting, empty=empty, reduction=reduction,
                            sync_batch=sync_batch)


def _target_sums(prepared, B: int, C: int, dtype) -> torch.Tensor:
    """Σ m·y per (b, c) without probabilities (for the label check of the cross-entropy)."""
    m = prepared.mask
    if prepared.labels is not None:
        labels = prepared.labels.reshape(B, -1)
        w = torch.ones(labels.shape, dtype=dtype, device=labels.device) if m is None else m.reshape(B, -1).to(dtype)
        return torch.zeros(B, C, dtype=dtype, device=labels.device).scatter_add_(1, labels, w)
    y = prepared.dense.to(dtype)
    y = y if m is None else y * m.to(dtype)
    return y.reshape(B, C, -1).sum(-1)


def marginal_cross_entropy(
    input: torch.Tensor,
    target: torch.Tensor,
    annotated=None,
    *,
    activation: str = "softmax",
    ce_weight=None,
    ignore_index: int | None = None,
    mask: torch.Tensor | None = None,
    sync_batch: bool = False,
) -> torch.Tensor:
    """Cross-entropy with unannotated classes marginalised, averaged over the kept voxels (float32).

    softmax: −log p'_y with log p'_0 = logsumexp(z_0, z_u …) − logsumexp(z) (log space, stable).
    sigmoid: channels are independent, so marginalising an unannotated channel drops its BCE term; the
    mean runs over kept (voxel, annotated channel) pairs. ``ce_weight`` weighs classes as in torch (a
    weighted mean for labels); the merged background takes the background's weight. ``mask`` must be
    voxel-wise, (B, *S) or (B, 1, *S). ``sync_batch``: under torch.distributed, the mean runs over the
    voxels of every rank (:func:`phidice.distributed.global_mean`).
    """
    activation = check_activation(activation)
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"the marginal cross-entropy needs logits: activation must be 'softmax' or 'sigmoid'; "
                         f"got {activation!r}")
    check_input(input, activation, False)
    if activation == "softmax":
        _check_marginal_activation(activation, input.shape[1], "the marginal cross-entropy")
    annotated = check_annotated(annotated, input, activation)
    prepared = prepare_target(input, target, activation=activation, ignore_index=ignore_index, mask=mask)
    if prepared.mask is not None and prepared.mask.shape[1] != 1:
        raise ValueError(f"the cross-entropy needs a voxel-wise mask (B, *spatial) or (B, 1, *spatial); got a "
                         f"per-class mask of shape {tuple(prepared.mask.shape)}")
    x = input if input.dtype == torch.float64 else input.float()
    B, C = x.shape[:2]
    check_unannotated_labels(_target_sums(prepared, B, C, x.dtype), annotated)
    view = (1, C) + (1,) * (x.ndim - 2)
    w = None if ce_weight is None else torch.as_tensor(ce_weight, dtype=x.dtype, device=x.device)
    if w is not None and (w.ndim != 1 or w.numel() != C):
        raise ValueError(f"ce_weight must have one value per class ({C}); got shape {tuple(w.shape)}")
    m = None if prepared.mask is None else prepared.mask.to(x.dtype)
    if activation == "sigmoid":
        y = dense_target(prepared, x, activation)
        per = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        if w is not None:
            per = per * w.view(view)
        k = annotated.to(x.dtype).view((B, C) + (1,) * (x.ndim - 2)).expand_as(per)
        norm = k if m is None else k * m
        per = per * norm
    else:
        logp = marginal_log_probs(x, annotated)
        if prepared.labels is not None:
            lab = prepared.labels.unsqueeze(1)
            per = -logp.gather(1, lab)
            norm = torch.ones_like(per) if w is None else w[lab]
            per = per * norm
        else:
            y = prepared.dense.to(x.dtype) * annotated.to(x.dtype).view((B, C) + (1,) * (x.ndim - 2))
            per = -((y if w is None else y * w.view(view)) * logp).sum(1, keepdim=True)
            norm = torch.ones_like(per)
        if m is not None:
            per, norm = per * m, norm * m
    total = norm.sum()
    if sync_batch:
        from phidice import distributed

        return distributed.global_mean(per.sum(), total.detach(), sync=True)
    return per.sum() / torch.where(total > 0, total, torch.ones_like(total))


def _ce_combo(dice_fn, input, target, annotated, *, lambda_dice, lambda_ce, ce_weight, mask, **dice_kwargs):
    activation = check_activation(dice_kwargs.get("activation", "softmax"))
    if activation is None:
        raise ValueError("a Dice + cross-entropy loss needs logits: activation must be 'softmax' or 'sigmoid'; "
                         "got None")
    if dice_kwargs.get("reduction", "mean") == "none":
        raise ValueError("Dice + cross-entropy supports reduction 'mean' or 'sum', not 'none'")
    for name, lam in (("lambda_dice", lambda_dice), ("lambda_ce", lambda_ce)):
        if isinstance(lam, bool) or not (isinstance(lam, (int, float)) and lam >= 0):
            raise ValueError(f"{name} must be a number ≥ 0; got {lam!r}")
    dice = dice_fn(input, target, annotated, mask=mask, **dice_kwargs)
    ce = marginal_cross_entropy(input, target, annotated, activation=activation, ce_weight=ce_weight,
                                ignore_index=dice_kwargs.get("ignore_index"), mask=mask,
                                sync_batch=dice_kwargs.get("sync_batch", False))
    return lambda_dice * dice + lambda_ce * ce


def marginal_dice_ce_loss(input, target, annotated=None, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                          ce_weight=None, mask=None, **dice_kwargs) -> torch.Tensor:
    """λ_dice · marginal Dice + λ_ce · marginal cross-entropy (softmax only)."""
    return _ce_combo(marginal_dice_loss, input, target, annotated, lambda_dice=lambda_dice, lambda_ce=lambda_ce,
                     ce_weight=ce_weight, mask=mask, **dice_kwargs)


def leaf_dice_ce_loss(input, target, annotated=None, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                      ce_weight=None, mask=None, **dice_kwargs) -> torch.Tensor:
    """λ_dice · leaf Dice + λ_ce · marginal cross-entropy (for sigmoid: BCE over the annotated channels).

    Cross-entropy is voxel-wise, so it cannot drop a class the way the leaf Dice drops an entry; the
    marginal form (unannotated classes summed into the background) is the standard counterpart.
    """
    return _ce_combo(leaf_dice_loss, input, target, annotated, lambda_dice=lambda_dice, lambda_ce=lambda_ce,
                     ce_weight=ce_weight, mask=mask, **dice_kwargs)
