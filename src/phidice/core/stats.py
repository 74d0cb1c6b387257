"""Per-image, per-class sums — the sufficient statistics of every Dice loss in phidice.

For probabilities ỹ (after the activation), targets y and a voxel mask m, :func:`compute_stats` returns,
for every image b and class c (shape (B, C) each):

* ``intersection`` Σ_i m·y·ỹ
* ``pred_sum``     Σ_i m·ỹ      (Σ_i m·ỹ² when ``squared``)
* ``target_sum``   Σ_i m·y      (Σ_i m·y² when ``squared``)

Any Φ of Eq. 3 is a sum of these over the batch and/or class axis (:meth:`DiceStats.reduce`), so the
loss, its Eq. 4 gradient, the fused kernels, the missing-label losses, the metrics and the distributed
all-reduce all work on these three small tensors.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import torch

from phidice.core._checks import _is_compiling, check_activation
from phidice.core.phi import Phi, parse_phi


class DiceStats(NamedTuple):
    """Sums of Eq. 3 per image and class, or per subset φ after :meth:`reduce`."""

    intersection: torch.Tensor  # (B, C): Σ m·y·ỹ
    pred_sum: torch.Tensor  # (B, C): Σ m·ỹ  (or Σ m·ỹ²)
    target_sum: torch.Tensor  # (B, C): Σ m·y  (or Σ m·y²)

    def reduce(self, phi: "str | Phi") -> "DiceStats":
        """Sum into one entry per φ ∈ Φ: (B, C), (B, 1), (1, C) or (1, 1) for I, CI, BI, BCI."""
        phi = parse_phi(phi)
        return DiceStats(*(phi.reduce(t) for t in self))

    def select_classes(self, index) -> "DiceStats":
        return DiceStats(*(t[:, index] for t in self))


class PreparedTarget(NamedTuple):
    """A target brought to a common form: either integer labels or a dense (B, C, *S) float map."""

    labels: torch.Tensor | None  # (B, *S) int64 with ignored voxels set to 0, or None
    dense: torch.Tensor | None  # (B, C, *S) float, or None
    mask: torch.Tensor | None  # (B, 1, *S) or (B, C, *S) float in [0, 1], or None


def _spatial(t: torch.Tensor, start: int) -> tuple[int, ...]:
    return tuple(t.shape[start:])


def check_input(input: torch.Tensor, activation, check_finite: bool) -> None:
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor of shape (B, C, *spatial); got {type(input).__name__}")
    if input.ndim < 3:
        raise ValueError(
            f"input must have shape (B, C, *spatial) with at least one spatial dim; got shape {tuple(input.shape)}"
        )
    if input.shape[0] == 0:
        raise ValueError(f"input is an empty batch (B = 0); got shape {tuple(input.shape)}")
    if input.shape[1] == 0 or any(s == 0 for s in input.shape[2:]):
        raise ValueError(f"input has a zero-sized class or spatial dim; got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        if activation is not None:
            raise TypeError(
                f"input has integer dtype {input.dtype} but activation={activation!r} expects float logits"
            )
        raise TypeError(f"input must be a floating-point tensor of probabilities; got dtype {input.dtype}")
    if activation == "softmax" and input.shape[1] < 2:
        raise ValueError(
            "activation='softmax' needs at least 2 channels (softmax over one channel is constant 1); "
            "use activation='sigmoid' for a single binary channel"
        )
    if check_finite and not bool(torch.isfinite(input).all()):
        raise ValueError("input contains NaN or Inf (check_finite=True)")


def prepare_target(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    activation,
    ignore_index: int | None = None,
    mask: torch.Tensor | None = None,
    check_finite: bool = False,
    check_range: bool = True,
) -> PreparedTarget:
    """Validate ``target`` (and ``mask``) against ``input`` and bring them to one of two forms.

    Integer targets of shape (B, *S) or (B, 1, *S) are labels in [0, C) (or {0, 1} for a single
    sigmoid channel), with ``ignore_index`` voxels folded into the mask. Float/bool targets of shape
    (B, C, *S) are one-hot or soft maps in [0, 1]. A float target of shape (B, 1, *S) with C > 1 is
    taken as labels when its values are integers (MONAI stores labels as float).
    ``check_range=False`` leaves the label range check (without ``ignore_index``) to the caller, who
    must run :func:`check_label_range` — the fused CPU kernel gets the range in the pass it makes anyway.
    """
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target).__name__}")
    B, C = input.shape[:2]
    spatial = _spatial(input, 2)
    checking = not _is_compiling()
    if target.shape[0] != B:
        raise ValueError(f"target batch size {target.shape[0]} does not match input batch size {B} "
                         f"(input {tuple(input.shape)}, target {tuple(target.shape)})")

    is_int = not target.is_floating_point() and target.dtype != torch.bool
    if target.is_complex():
        raise TypeError(f"target must be integer labels or a float/bool map; got dtype {target.dtype}")

    labels = dense = None
    if target.dtype == torch.bool:
        target = target.to(torch.float32)
    if not is_int and target.shape[1:] == input.shape[1:]:
        dense = target
        if checking:
            if check_finite and not bool(torch.isfinite(dense).all()):
                raise ValueError("target contains NaN or Inf (check_finite=True)")
            if bool(((dense < 0) | (dense > 1)).any()):
                raise ValueError("target values must lie in [0, 1] (one-hot or soft maps)")
    else:
        lab = target
        if lab.ndim == input.ndim and lab.shape[1] == 1:
            lab = lab[:, 0]
        if _spatial(lab, 1) != spatial:
            raise ValueError(
                f"target shape {tuple(target.shape)} does not match input shape {tuple(input.shape)}: expected "
                f"labels (B, *spatial) = {(B, *spatial)} or (B, 1, *spatial), or a map (B, C, *spatial) = "
                f"{tuple(input.shape)}"
            )
        if not is_int:
            if checking and not bool((lab == torch.round(lab)).all()):
                raise ValueError(
                    f"target of shape {tuple(target.shape)} has one channel but input has C={C}: it is read as "
                    f"labels, yet it holds non-integer values"
                )
            lab = lab.long()
        labels = lab.long() if lab.dtype != torch.long else lab
        valid = None
        if ignore_index is not None:
            valid = labels != ignore_index
            labels = labels.masked_fill(~valid, 0)
        if checking and (check_range or ignore_index is not None):
            check_label_range(labels, label_upper(input, activation), ignore_index=ignore_index)
        if valid is not None:
            valid = valid.unsqueeze(1).to(input.dtype if input.is_floating_point() else torch.float32)
            mask = valid if mask is None else _check_mask(mask, input) * valid
            return PreparedTarget(labels, None, mask)
    if ignore_index is not None and labels is None:
        raise ValueError("ignore_index applies to integer label targets; for a one-hot/soft target pass mask=")
    return PreparedTarget(labels, dense, None if mask is None else _check_mask(mask, input))


def label_upper(input: torch.Tensor, activation) -> int:
    """Labels lie in [0, upper): C classes, or {0, 1} for a single sigmoid channel."""
    C = input.shape[1]
    return 2 if (activation == "sigmoid" and C == 1) else C


def check_label_range(labels: torch.Tensor, upper: int, *, ignore_index: int | None = None,
                      lo: int | None = None, hi: int | None = None) -> None:
    """ValueError unless every label lies in [0, upper); ``lo``/``hi`` when the caller already has them."""
    if lo is None or hi is None:
        lo, hi = (int(v) for v in torch.aminmax(labels))  # one pass over the labels
    if lo < 0 or hi >= upper:
        extra = "" if ignore_index is None else f" (ignore_index={ignore_index} excepted)"
        raise ValueError(f"target labels must lie in [0, {upper - 1}]{extra}; got values in [{lo}, {hi}]")


def _check_mask(mask: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor; got {type(mask).__name__}")
    B, C = input.shape[:2]
    spatial = _spatial(input, 2)
    if mask.ndim == input.ndim - 1 and (mask.shape[0], *mask.shape[1:]) == (B, *spatial):
        mask = mask.unsqueeze(1)
    if mask.ndim != input.ndim or mask.shape[0] != B or mask.shape[1] not in (1, C) or _spatial(mask, 2) != spatial:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not fit input shape {tuple(input.shape)}: expected "
            f"(B, *spatial), (B, 1, *spatial) or (B, C, *spatial)"
        )
    if mask.dtype == torch.bool or not mask.is_floating_point():
        mask = mask.to(torch.float32)
    if not _is_compiling() and bool(((mask < 0) | (mask > 1)).any()):
        raise ValueError("mask values must lie in [0, 1]")
    return mask


def activate(input: torch.Tensor, activation) -> torch.Tensor:
    """Probabilities in float32 (float64 kept): the activation never runs in fp16/bf16."""
    x = input if input.dtype == torch.float64 else input.float()
    if activation == "softmax":
        return torch.softmax(x, dim=1)
    if activation == "sigmoid":
        return torch.sigmoid(x)
    return x


def dense_target(prepared: PreparedTarget, probs: torch.Tensor, activation) -> torch.Tensor:
    """The target as a (B, C, *S) map of ``probs``' dtype (one-hot for labels)."""
    if prepared.dense is not None:
        return prepared.dense.to(probs.dtype)
    labels = prepared.labels
    if probs.shape[1] == 1 and activation != "softmax":
        return labels.unsqueeze(1).to(probs.dtype)
    return torch.zeros_like(probs).scatter_(1, labels.unsqueeze(1), 1.0)


def reference_stats(probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                    squared: bool) -> DiceStats:
    """Sums of Eq. 3 per (b, c) from dense probabilities and targets (the readable reference path)."""
    B, C = probs.shape[:2]
    p = probs.reshape(B, C, -1)
    y = target.reshape(B, C, -1)
    if mask is not None:
        m = mask.to(probs.dtype).reshape(B, mask.shape[1], -1)
        pm, ym = p * m, y * m
    else:
        pm, ym = p, y
    intersection = (pm * y).sum(-1)
    pred_sum = (pm * p).sum(-1) if squared else pm.sum(-1)
    target_sum = (ym * y).sum(-1) if squared else ym.sum(-1)
    return DiceStats(intersection, pred_sum, target_sum)


_warned_bg = False


def compute_stats(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: str | None = "softmax",
    mask: torch.Tensor | None = None,
    ignore_index: int | None = None,
    squared: bool = False,
    include_background: bool = True,
    check_finite: bool = False,
    fused: "bool | str" = "auto",
) -> DiceStats:
    """Per-image, per-class sums (B, C') of Eq. 3, differentiable with respect to ``input``.

    ``fused="auto"`` uses the fused one-hot-free kernels (:mod:`phidice.ops`) when they apply —
    integer labels, softmax/sigmoid, no squared denominator — and the dense reference path otherwise;
    ``fused=False`` forces the reference path, ``fused=True`` demands the fused one.
    """
    global _warned_bg
    activation = check_activation(activation)
    check_input(input, activation, check_finite)
    prepared = prepare_target(input, target, activation=activation, ignore_index=ignore_index, mask=mask,
                              check_finite=check_finite, check_range=False)  # fused_stats checks the range
    if fused not in (True, False, "auto"):
        raise ValueError(f"fused must be True, False or 'auto'; got {fused!r}")
    stats = None
    if fused is not False:
        from phidice import ops

        reason = ops.fused_unsupported_reason(input, prepared, activation=activation, squared=squared)
        if reason is None:
            stats = ops.fused_stats(input, prepared.labels, activation=activation, mask=prepared.mask)
        elif fused is True:
            raise ValueError(f"fused=True but the fused path does not apply: {reason}")
    if stats is None:
        if prepared.labels is not None and ignore_index is None and not _is_compiling():
            check_label_range(prepared.labels, label_upper(input, activation))
        probs = activate(input, activation)
        stats = reference_stats(probs, dense_target(prepared, probs, activation), prepared.mask, squared)
    if not include_background:
        if input.shape[1] == 1:
            if not _warned_bg:
                warnings.warn("include_background=False ignored: a single channel is the foreground", stacklevel=3)
                _warned_bg = True
        else:
            stats = stats.select_classes(slice(1, None))
    return stats
