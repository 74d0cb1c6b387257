"""Segmented volumes and the volume difference ΔV = V_pred − V_ref, in voxels and millilitres.

ΔV is signed as in the paper: positive means over-segmentation (more predicted than labelled), negative
under-segmentation. On an empty reference ΔV = V_pred, which is how the paper scores false positives
on images without the class (Fig. 2), where the Dice score is undefined.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from phidice.metrics._hard import hard_stats_nd, single_counts


class Volume(NamedTuple):
    """Per image and class (B, C): ``voxels`` (int64) and ``ml`` (float64, None without a spacing)."""

    voxels: torch.Tensor
    ml: torch.Tensor | None


def check_spacing(spacing, batch: int, ndim: int) -> np.ndarray:
    """Voxel spacing in mm as a (B, ndim) float64 array: one value per spatial axis, or one row per image."""
    if spacing is None:
        raise ValueError(f"spacing is required: the voxel size in mm, {ndim} values (one per spatial axis)")
    try:
        s = np.asarray(spacing.detach().cpu() if isinstance(spacing, torch.Tensor) else spacing, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"spacing must be numbers in mm, one per spatial axis; got {spacing!r}") from err
    if s.ndim == 1:
        s = np.broadcast_to(s, (batch, s.shape[0]))
    if s.ndim != 2 or s.shape != (batch, ndim):
        raise ValueError(
            f"spacing must have {ndim} values (one per spatial axis, in mm) or shape (B, {ndim}) = "
            f"({batch}, {ndim}); got shape {np.shape(spacing)}"
        )
    if not np.isfinite(s).all() or (s <= 0).any():
        raise ValueError(f"spacing must be finite and > 0 (mm); got {spacing!r}")
    return s


def voxel_ml(spacing, batch: int, ndim: int) -> torch.Tensor | None:
    """Volume of one voxel in ml, shape (B, 1), from a spacing in mm: (ndim,) for all images or (B, ndim)."""
    if spacing is None:
        return None
    return torch.from_numpy(check_spacing(spacing, batch, ndim).prod(1, keepdims=True) / 1000.0)  # mm³ → ml


def _with_ml(voxels: torch.Tensor, spacing, ndim: int) -> Volume:
    per_voxel = voxel_ml(spacing, voxels.shape[0], ndim)
    ml = None if per_voxel is None else voxels.to(torch.float64) * per_voxel.to(voxels.device)
    return Volume(voxels, ml)


def volume(
    x, spacing=None, *, num_classes: int | None = None, threshold=None, include_background: bool = True
) -> Volume:
    """Volume per image and class of a hard segmentation (labels (B, *S) or maps (B, C, *S)).

    ``spacing`` is the voxel size in mm — one value per spatial axis, or shape (B, ndim) for images of
    different spacings; ml = voxels · Π spacing / 1000. Layout, ``num_classes`` and ``threshold`` follow
    :func:`~phidice.metrics.dice_score`.

    Args:
        x: labels (B, *S) or binary maps / probabilities with ``threshold`` (B, C, *S).
        spacing: mm per spatial axis, or (B, ndim); None: voxels only.
        num_classes, threshold, include_background: as :func:`~phidice.metrics.dice_score`.

    Returns:
        :class:`Volume`: ``voxels`` (B, C) int64 and ``ml`` (B, C) float64 (None without ``spacing``).

    Raises:
        ValueError: a spacing of the wrong shape or not > 0, or a bad layout.

    Example:
        >>> import torch
        >>> from phidice.metrics import volume
        >>> volume(torch.tensor([[0, 1, 1, 0]]), spacing=(2.0,)).voxels  # (B, C): 2 voxels of each class
        tensor([[2, 2]])
    """
    counts, ndim = single_counts(
        x, "input", num_classes=num_classes, threshold=threshold, include_background=include_background
    )
    return _with_ml(counts, spacing, ndim)


def volume_difference(
    pred,
    target,
    spacing=None,
    *,
    num_classes: int | None = None,
    threshold=None,
    ignore_index: int | None = None,
    include_background: bool = True,
) -> Volume:
    """ΔV = V_pred − V_ref per image and class (signed; > 0 is over-segmentation), in voxels and ml.

    Args:
        pred, target, spacing, num_classes, threshold, ignore_index, include_background: as :func:`volume`
            and :func:`~phidice.metrics.dice_score`.

    Returns:
        :class:`Volume` of the differences.

    Raises:
        ValueError: as :func:`volume`, or maps that do not fit each other.

    Example:
        >>> import torch
        >>> from phidice.metrics import volume_difference
        >>> volume_difference(torch.tensor([[0, 1, 1, 0]]), torch.tensor([[0, 1, 0, 0]])).voxels
        tensor([[-1,  1]])
    """
    stats, ndim = hard_stats_nd(
        pred,
        target,
        num_classes=num_classes,
        threshold=threshold,
        ignore_index=ignore_index,
        include_background=include_background,
    )
    return _with_ml(stats.pred_sum - stats.target_sum, spacing, ndim)
