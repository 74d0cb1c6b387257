"""``nn.Module`` wrappers: they hold the configuration and call the functional implementation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from phidice.core._checks import check_activation
from phidice.core.dice import DEFAULT_EPS, check_config, dice_loss
from phidice.core.stats import prepare_target


class DiceLoss(nn.Module):
    """Dice loss of Eq. 3 with explicit Φ and ε; see :func:`phidice.dice_loss` for every argument.

    >>> loss = DiceLoss(phi="BI", eps=1e-5, activation="softmax", include_background=False)
    >>> value = loss(logits, labels)            # labels: (B, *spatial) integers
    """

    def __init__(
        self,
        phi="I",
        eps=DEFAULT_EPS,
        *,
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
        reduction: str = "mean",
        check_finite: bool = False,
        fused="auto",
        sync_batch: bool = False,
    ):
        super().__init__()
        self.phi = check_config(phi=phi, empty=empty, reduction=reduction, weighting=weighting)
        self.activation = check_activation(activation)
        self.options = dict(
            phi=self.phi, eps=eps, eps_nr=eps_nr, eps_dr=eps_dr, eps_empty=eps_empty,
            activation=self.activation, squared=squared, include_background=include_background,
            class_weights=class_weights, weighting=weighting, empty=empty, ignore_index=ignore_index,
            reduction=reduction, check_finite=check_finite, fused=fused, sync_batch=sync_batch,
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return dice_loss(input, target, mask=mask, **self.options)

    def extra_repr(self) -> str:
        o = self.options
        return (f"phi={o['phi'].value!r}, eps={o['eps']}, activation={o['activation']!r}, "
                f"include_background={o['include_background']}, empty={o['empty']!r}")


def cross_entropy_term(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: str,
    ce_weight=None,
    ignore_index: int | None = None,
    mask: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    sync_batch: bool = False,
) -> torch.Tensor:
    """Cross-entropy (softmax) or binary cross-entropy (sigmoid) averaged over the kept voxels, in float32.

    With ``sync_batch`` the mean runs over the kept voxels of every rank (the global batch)."""
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(f"DiceCELoss needs logits: activation must be 'softmax' or 'sigmoid'; got {activation!r}")
    prepared = prepare_target(input, target, activation=activation, ignore_index=ignore_index, mask=mask)
    x = input if input.dtype == torch.float64 else input.float()
    C = x.shape[1]
    w = None if ce_weight is None else torch.as_tensor(ce_weight, dtype=x.dtype, device=x.device)
    if w is not None and (w.ndim != 1 or w.numel() != C):
        raise ValueError(f"ce_weight must have one value per class ({C}); got shape {tuple(w.shape)}")
    if activation == "softmax":
        tgt = prepared.labels if prepared.labels is not None else prepared.dense.to(x.dtype)
        per_voxel = F.cross_entropy(x, tgt, weight=w, reduction="none", label_smoothing=label_smoothing)
        per_voxel = per_voxel.unsqueeze(1)  # (B, 1, *S)
        if prepared.labels is not None and w is not None:  # weighted mean, as torch's reduction="mean"
            norm = w[prepared.labels].unsqueeze(1)
        else:
            norm = torch.ones_like(per_voxel)
    else:
        if prepared.labels is not None:
            y = (prepared.labels.unsqueeze(1).to(x.dtype) if C == 1
                 else torch.zeros_like(x).scatter_(1, prepared.labels.unsqueeze(1), 1.0))
        else:
            y = prepared.dense.to(x.dtype)
        if label_smoothing:
            y = y * (1 - label_smoothing) + 0.5 * label_smoothing
        per_voxel = F.binary_cross_entropy_with_logits(x, y, reduction="none")
        if w is not None:
            per_voxel = per_voxel * w.view(1, C, *([1] * (x.ndim - 2)))
        norm = torch.ones_like(per_voxel)
    if prepared.mask is not None:
        m = prepared.mask.to(x.dtype)
        per_voxel, norm = per_voxel * m, norm * m
    from phidice.distributed import global_mean

    return global_mean(per_voxel.sum(), norm.sum(), sync=sync_batch)


def dice_ce_loss(input, target, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0, ce_weight=None,
                 label_smoothing: float = 0.0, mask=None, **dice_kwargs) -> torch.Tensor:
    """λ_dice · Dice (any Φ/ε) + λ_ce · cross-entropy (BCE for sigmoid), sharing ignore_index and mask."""
    activation = check_activation(dice_kwargs.get("activation", "softmax"))
    if dice_kwargs.get("reduction", "mean") == "none":
        raise ValueError("DiceCELoss supports reduction 'mean' or 'sum', not 'none'")
    for name, lam in (("lambda_dice", lambda_dice), ("lambda_ce", lambda_ce)):
        if not (isinstance(lam, (int, float)) and lam >= 0):
            raise ValueError(f"{name} must be a number ≥ 0; got {lam!r}")
    ce = cross_entropy_term(input, target, activation=activation, ce_weight=ce_weight,
                            ignore_index=dice_kwargs.get("ignore_index"), mask=mask, label_smoothing=label_smoothing,
                            sync_batch=dice_kwargs.get("sync_batch", False))
    return lambda_dice * dice_loss(input, target, mask=mask, **dice_kwargs) + lambda_ce * ce


class DiceCELoss(DiceLoss):
    """Dice (same arguments as :class:`DiceLoss`) plus cross-entropy, or BCE for ``activation="sigmoid"``.

    ``ce_weight`` weighs classes in the cross-entropy (a weighted mean, as in ``torch``); ``lambda_dice``
    and ``lambda_ce`` weigh the two terms. ``ignore_index`` and ``mask`` apply to both.
    """

    def __init__(self, phi="I", eps=DEFAULT_EPS, *, lambda_dice: float = 1.0, lambda_ce: float = 1.0,
                 ce_weight=None, label_smoothing: float = 0.0, **kwargs):
        kwargs.setdefault("activation", "softmax")
        if check_activation(kwargs["activation"]) is None:
            raise ValueError("DiceCELoss needs logits: activation must be 'softmax' or 'sigmoid'; got None")
        super().__init__(phi, eps, **kwargs)
        self.ce_options = dict(lambda_dice=lambda_dice, lambda_ce=lambda_ce, ce_weight=ce_weight,
                               label_smoothing=label_smoothing)

    def forward(self, input, target, mask=None):
        return dice_ce_loss(input, target, mask=mask, **self.ce_options, **self.options)
