"""Deep supervision with an explicit rule for structures that downsampling erases.

A deeply supervised network (nnU-Net, MONAI's DynUNet) is trained at coarse outputs against downsampled
targets. Nearest-neighbour downsampling (nnU-Net's ``DownsampleSegForDSTransform``, MONAI's
``DeepSupervisionLoss``: ``interpolate(mode="nearest-exact")``) drops a structure a few voxels wide, so the
coarse output is taught *empty* where the full-resolution label says *present* — the empty-map gradient of
Eq. 4 made by the pipeline. ``coarse_empty`` says what a coarse level does with an image-class pair (b, c)
that is present at full resolution and empty after downsampling:

* ``"missing"``: (b, c) is unannotated at that level — the leaf Dice drops the entry from its
  subsets φ (and the background of that image, whose label 0 now hides the class) and the cross-entropy /
  focal term joins p_c to the background (sigmoid: drops the channel): no gradient towards empty;
* ``"maxpool"``: the level's target is max-pooled from the full-resolution one-hot target, so a structure
  survives in every cell it touches; with exclusive classes (softmax) the background yields to any class in
  the cell, and a cell holding several classes splits its target evenly among them;
* ``"nnunet"`` (default): the nearest-neighbour target as it comes (today's behaviour of nnU-Net and MONAI).

BENCHMARKS.md § 8 measures the three on structures of 1–4 voxels: none keeps them better than ``"nnunet"``,
which is the default (docs/deep_supervision.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from phidice.core.checks import plain_tensor
from phidice.core.config import check_choice
from phidice.core.rules import has_background
from phidice.losses.base import LossModule
from phidice.losses.focal import DiceFocalLoss
from phidice.missing.losses import (
    LeafDiceCELoss,
    LeafDiceFocalLoss,
    LeafDiceLoss,
    MarginalDiceCELoss,
    MarginalDiceFocalLoss,
    MarginalDiceLoss,
)

__all__ = [
    "DeepSupervisionLoss",
    "COARSE_EMPTY",
    "WEIGHT_MODES",
    "deep_supervision_weights",
    "coarse_level",
    "partial_of",
]

COARSE_EMPTY = ("missing", "maxpool", "nnunet")
WEIGHT_MODES = ("exp", "same", "two", "nnunet")
_PARTIAL = (
    LeafDiceLoss,
    MarginalDiceLoss,
    LeafDiceCELoss,
    MarginalDiceCELoss,
    LeafDiceFocalLoss,
    MarginalDiceFocalLoss,
)


def deep_supervision_weights(levels: int, mode: str = "exp") -> list[float]:
    """Weights per level, finest first: MONAI's ``"exp"`` (max(0.5^l, 1/16)), ``"same"``, ``"two"`` (1, ½, ½, …),
    or ``"nnunet"`` (1/2^l with the coarsest at 0, normalised to sum 1)."""
    check_choice("weight_mode", mode, WEIGHT_MODES)
    if mode == "same":
        return [1.0] * levels
    if mode == "two":
        return [1.0 if k == 0 else 0.5 for k in range(levels)]
    if mode == "exp":
        return [max(0.5**k, 0.0625) for k in range(levels)]
    if levels == 1:
        return [1.0]
    w = [1 / 2**k for k in range(levels)]
    w[-1] = 0.0
    return [v / sum(w) for v in w]


def partial_of(loss: LossModule, **changes) -> LossModule:
    """The leaf counterpart of ``loss`` (itself when it already takes ``annotated``), config ``changes`` applied."""
    config = loss.config.replace(**changes)
    if isinstance(loss, _PARTIAL):
        cls = type(loss)
    elif isinstance(loss, DiceFocalLoss):
        cls = LeafDiceFocalLoss
    else:
        cls = LeafDiceLoss if loss.ce is None else LeafDiceCELoss
    out = cls.__new__(cls)
    LossModule.__init__(out, config, loss.ce)
    if hasattr(loss, "focal"):
        out.focal = loss.focal
    out._check_config()
    return out


def _dense(target: torch.Tensor, like: torch.Tensor, activation, ignore_index):
    """(one-hot or soft map (B, C, *S) float, valid voxels (B, 1, *S) float or None) of a full-res target."""
    B, C = like.shape[:2]
    target = plain_tensor(target)
    if target.dtype == torch.bool:
        target = target.float()
    if target.is_floating_point() and target.shape[1:] == like.shape[1:] and not (C > 1 and target.shape[1] == 1):
        return target.to(like.dtype), None
    labels = (target[:, 0] if target.ndim == like.ndim else target).long()
    valid = None
    if ignore_index is not None:
        valid = (labels != ignore_index).unsqueeze(1).to(like.dtype)
        labels = labels.masked_fill(labels == ignore_index, 0)
    if C == 1 and activation != "softmax":
        return labels.unsqueeze(1).to(like.dtype), valid
    onehot = F.one_hot(labels, C).movedim(-1, 1).to(like.dtype)
    return (onehot if valid is None else onehot * valid), valid


def _nearest(t: torch.Tensor, size) -> torch.Tensor:
    """nnU-Net's / MONAI's downsampling: ``interpolate(mode="nearest-exact")`` on a float copy, dtype kept;
    a (B, *S) label map without a channel axis comes back without one."""
    x = t if t.is_floating_point() else t.float()
    flat = t.ndim == len(size) + 1
    out = F.interpolate(x.unsqueeze(1) if flat else x, size=size, mode="nearest-exact")
    return (out[:, 0] if flat else out).to(t.dtype)


def _maxpool(dense: torch.Tensor, valid, size, exclusive: bool):
    """Max-pooled target (and valid mask); exclusive classes: background only where no class is, ties split."""
    pool = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}[dense.ndim - 2]
    y = pool(dense, size)
    if exclusive:
        fg = y[:, 1:]
        bg = 1 - fg.amax(1, keepdim=True)
        if valid is not None:
            bg = bg * pool(valid, size)
        y = torch.cat([bg, fg], 1)
        y = y / y.sum(1, keepdim=True).clamp_min(1e-12)
    return y, (None if valid is None else pool(valid, size))


def coarse_level(
    policy: str,
    target: torch.Tensor,
    coarse: torch.Tensor | None,
    output: torch.Tensor,
    activation,
    ignore_index,
    mask=None,
):
    """(target, mask, erased (B, C) bool or None, dense) of one coarse level under ``policy``.

    ``target``: the full-resolution target; ``coarse``: the level's target when the pipeline gave one (nnU-Net's
    data loader), else None (downsampled here). ``dense``: the returned target is a map (its ignored voxels in
    ``mask``), not labels. ``erased``: (b, c) present at full resolution and empty at this level ("missing").
    """
    size = tuple(output.shape[2:])
    if mask is not None:
        mask = plain_tensor(mask)
        mask = mask.unsqueeze(1) if mask.ndim == output.ndim - 1 else mask
    m = None if mask is None else _nearest(mask, size)
    if policy == "maxpool":
        dense, valid = _dense(target, _like(output, target), activation, ignore_index)
        y, valid = _maxpool(dense, valid, size, has_background(output.shape[1], activation))
        if mask is not None:
            m = _maxpool(mask.to(y.dtype), None, size, False)[0]
        if valid is not None:
            m = valid if m is None else m * valid
        return y, m, None, True
    y = _nearest(plain_tensor(target), size) if coarse is None else coarse
    if policy == "nnunet":
        return y, m, None, False
    full = _present(target, output, activation, ignore_index, mask)
    here = _present(y, output, activation, ignore_index, m)
    erased = full & ~here
    if has_background(output.shape[1], activation):
        erased[:, 0] = False
    return y, m, erased, False


def _like(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A tensor of the output's (B, C), the target's spatial shape and float dtype, for :func:`_dense`."""
    dtype = output.dtype if output.dtype == torch.float64 else torch.float32
    return torch.empty((*output.shape[:2], *target.shape[-(output.ndim - 2) :]), dtype=dtype, device=output.device)


def _present(target, output, activation, ignore_index, mask) -> torch.Tensor:
    """(B, C) bool: class c has target mass in image b (ignored and masked voxels left out)."""
    dense, valid = _dense(target, _like(output, target), activation, ignore_index)
    if mask is not None:
        dense = dense * mask.to(dense.dtype)
    return dense.flatten(2).sum(-1) > 0


class DeepSupervisionLoss(nn.Module):
    """Σ_k w_k · loss(output_k, target_k) over the levels of a deeply supervised network, with ``coarse_empty``
    deciding what a coarse level does with a structure that downsampling erased (module docstring).

    Args:
        loss: a phidice loss module (``DiceLoss``, ``DiceCELoss``, ``DiceFocalLoss``, Tversky/Jaccard, or
            their leaf/marginal forms); level 0 (full resolution) uses it as it is.
        weight_mode: MONAI's ``"exp"`` (default), ``"same"``, ``"two"``, or ``"nnunet"``; ``weights`` overrides.
        weights: one weight ≥ 0 per level, finest first (a level of weight 0 is skipped).
        coarse_empty: ``"nnunet"`` (default), ``"missing"`` or ``"maxpool"``.

    ``forward(outputs, target, annotated=None, mask=None)``: ``outputs`` a list of (B, C, *S_k) tensors, finest
    first (a single tensor: the loss itself); ``target`` the full-resolution target (MONAI's pattern) or a list
    of per-level targets whose first entry is at full resolution (nnU-Net's data loader; ``"maxpool"`` then
    pools the first entry and ignores the others). ``annotated`` (B, C) for missing-label data.

    Raises:
        ValueError: an unknown policy or weight mode, negative weights, fewer weights than levels, outputs
            and target lists of different lengths.
    """

    def __init__(
        self,
        loss: nn.Module,
        weight_mode: str = "exp",
        weights: Sequence[float] | None = None,
        coarse_empty: str = "nnunet",
    ):
        super().__init__()
        if not isinstance(loss, LossModule):
            raise TypeError(
                f"loss must be a phidice loss module (DiceLoss, DiceCELoss, DiceFocalLoss, …); got "
                f"{type(loss).__name__}"
            )
        check_choice("coarse_empty", coarse_empty, COARSE_EMPTY)
        check_choice("weight_mode", weight_mode, WEIGHT_MODES)
        if weights is not None:
            weights = [float(w) for w in weights]
            if not weights or any(not w >= 0 for w in weights):
                raise ValueError(f"weights must be numbers ≥ 0, one per level; got {weights}")
        self.loss, self.weight_mode, self.weights, self.coarse_empty = loss, weight_mode, weights, coarse_empty
        config = loss.config
        self.partial = partial_of(loss)  # coarse levels that take annotated flags
        # a max-pooled target is a dense map: its ignored voxels travel as a mask, not as ignore_index
        self.partial_dense = self.partial if config.ignore_index is None else partial_of(loss, ignore_index=None)

    def level_weights(self, levels: int) -> list[float]:
        if self.weights is not None:
            if len(self.weights) < levels:
                raise ValueError(f"weights has {len(self.weights)} entries for {levels} deep-supervision levels")
            return self.weights[:levels]
        return deep_supervision_weights(levels, self.weight_mode)

    def forward(self, outputs, target, annotated=None, mask=None) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            outputs = [outputs]
        coarse = None
        if isinstance(target, (list, tuple)):
            if len(target) != len(outputs):
                raise ValueError(f"deep supervision: {len(outputs)} outputs and {len(target)} targets")
            target, coarse = target[0], list(target)
        total = None
        for k, (w, out) in enumerate(zip(self.level_weights(len(outputs)), outputs)):
            if w == 0:
                continue
            term = w * self._level(out, target, None if coarse is None else coarse[k], annotated, mask)
            total = term if total is None else total + term
        if total is None:
            raise ValueError(f"deep supervision: every level weight is 0 ({self.level_weights(len(outputs))})")
        return total

    def _level(self, output, target, coarse, annotated, mask) -> torch.Tensor:
        config = self.loss.config
        if tuple(output.shape[2:]) == tuple(target.shape[-(output.ndim - 2) :]):  # full resolution
            if isinstance(self.loss, _PARTIAL):
                return self.loss(output, target, annotated, mask=mask)
            return self.loss(output, target, mask=mask)
        y, m, erased, dense = coarse_level(
            self.coarse_empty, target, coarse, output, config.activation, config.ignore_index, mask
        )
        loss = self.partial_dense if dense else self.partial
        flags = None if annotated is None else torch.as_tensor(annotated, device=output.device).bool()
        if erased is not None and bool(erased.any()):
            flags = ~erased if flags is None else flags & ~erased
            nothing = ~flags.any(1)  # a sample whose every class was erased: it leaves this level
            if bool(nothing.any()):
                flags = flags | nothing.unsqueeze(1)
                keep = (~nothing).to(output.dtype).view(-1, *([1] * (output.ndim - 1)))
                keep = keep.expand(-1, 1, *output.shape[2:])
                m = keep if m is None else m * keep
        return loss(output, y, flags, mask=m)

    def extra_repr(self) -> str:
        return f"coarse_empty={self.coarse_empty!r}, weight_mode={self.weight_mode!r}, weights={self.weights}"
