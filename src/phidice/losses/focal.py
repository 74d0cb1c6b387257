"""λ_dice · Dice + λ_focal · focal loss, sharing the target, ``ignore_index`` and ``mask`` (MONAI's DiceFocalLoss).

The focal term follows MONAI's ``FocalLoss`` (see :class:`~phidice.core.config.FocalConfig`):

* sigmoid, per (voxel, class): ℓ = BCE(x, y) · exp(γ · log σ(−x·(2y − 1))), i.e. BCE·(1 − p_t)^γ computed in
  log space (stable for any finite logit); averaged over the kept (voxel, class) pairs; with
  ``include_background=False`` channel 0 leaves the term, as in MONAI;
* softmax, per voxel: ℓ = −Σ_c α_c (1 − p_c)^γ y_c log p_c over every class (one distribution per voxel:
  the background stays in the softmax); averaged over the kept voxels, as the cross-entropy of
  :class:`phidice.DiceCELoss` (γ = 0 without α is that cross-entropy).

``focal_weight`` multiplies class c's terms (no renormalisation, as MONAI). With per-sample ``annotated``
classes the softmax term uses the marginal probabilities (unannotated classes joined to the background,
log-sum-exp) and the sigmoid term drops the unannotated channels. Computed in float32 (float64 kept); under
``sync_batch`` the mean runs over every rank's voxels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from phidice import distributed
from phidice.core.checks import check_input, plain_tensor
from phidice.core.config import DEFAULT_EPS, DiceConfig, FocalConfig, class_slice, split_focal_options
from phidice.core.rules import check_compound
from phidice.core.types import PreparedTarget, drop_background
from phidice.equations import FOCAL_FLOOR
from phidice.losses.base import LossModule, config_smoothing, loss_from_sums
from phidice.losses.ce import marginal_log_probs
from phidice.sums import dense_target, prepare_target, sum_stats

__all__ = ["focal_from", "dice_focal_loss", "DiceFocalLoss", "check_focal"]


def check_focal(config: DiceConfig, focal: FocalConfig, what: str) -> None:
    """The rules the focal term adds to the Dice options: logits (softmax or sigmoid), a reduced loss."""
    check_compound(config, what)
    activation = focal.activation_for(config)
    if activation not in ("softmax", "sigmoid"):
        raise ValueError(
            f"{what}: the focal term needs logits and activation 'softmax' or 'sigmoid' (or "
            f"focal_activation=); got {activation!r}"
        )


def _row(value, name: str, length: int, C: int, include_background: bool, like: torch.Tensor):
    """A per-class value as a (1, C', 1, …) tensor for the C' channels of the term (scalars stay floats)."""
    if value is None or not isinstance(value, tuple):
        return value
    sl = class_slice(name, len(value), C, include_background, axis="dim 1")
    t = torch.tensor(value[sl], dtype=like.dtype, device=like.device)
    if t.numel() != length:
        raise ValueError(f"{name} has {len(value)} values; the focal term scores {length} classes")
    return t.view((1, length) + (1,) * (like.ndim - 2))


def _sigmoid_terms(x, y, focal: FocalConfig, include_background: bool, C: int):
    """Per-(voxel, channel) sigmoid focal loss (B, C', *S) of the scored channels."""
    if not include_background and C > 1:
        x, y = x[:, 1:], y[:, 1:]
    zero = torch.zeros_like(x)  # BCE with logits, 0·log 0 = 0 so that a ±inf logit at its own label costs 0
    per = -(torch.where(y > 0, y * F.logsigmoid(x), zero) + torch.where(y < 1, (1 - y) * F.logsigmoid(-x), zero))
    if focal.gamma:
        per = torch.exp(F.logsigmoid(-x * (2 * y - 1)) * focal.gamma) * per
    alpha = _row(focal.alpha, "alpha", x.shape[1], C, include_background, x)
    if isinstance(alpha, torch.Tensor):
        per = torch.where(y == 1, alpha, torch.ones_like(alpha)) * per
    elif alpha is not None:
        per = (y * alpha + (1 - y) * (1 - alpha)) * per
    weight = _row(focal.focal_weight, "focal_weight", x.shape[1], C, include_background, x)
    return per if weight is None else per * weight


def _class_factor(focal: FocalConfig, C: int):
    """α_c·w_c of the softmax term as a tuple of C floats (None when every factor is 1)."""
    alpha = focal.alpha
    if alpha is not None and not isinstance(alpha, tuple):
        alpha = (1 - alpha,) + (alpha,) * (C - 1)
    factor = None
    for name, value in (("alpha", alpha), ("focal_weight", focal.focal_weight)):
        if value is None:
            continue
        if isinstance(value, tuple):
            class_slice(name, len(value), C, True, axis="dim 1")  # C values, one per class (error otherwise)
        row = value if isinstance(value, tuple) else (value,) * C
        factor = row if factor is None else tuple(a * b for a, b in zip(factor, row))
    return factor


def _focal_factor(logp, gamma: float):
    if not gamma:
        return None
    base = 1 - logp.exp()
    return (base.clamp_min(FOCAL_FLOOR) if gamma < 1 else base).pow(gamma)


def _softmax_terms(x, prepared: PreparedTarget, focal: FocalConfig, annotated):
    """Per-voxel softmax focal loss (B, 1, *S), every class in one distribution. Labels read log p at the label
    only (no one-hot); maps sum −α_c (1 − p_c)^γ y_c log p_c over the classes."""
    C = x.shape[1]
    logp = torch.log_softmax(x, 1) if annotated is None else marginal_log_probs(x, annotated)
    factor = _class_factor(focal, C)
    if prepared.labels is not None:  # an unannotated class carries no label: gathering is exact
        lab = prepared.labels.unsqueeze(1)
        lp = logp.gather(1, lab)
        per = -lp
        ff = _focal_factor(lp, focal.gamma)
        per = per if ff is None else ff * per
        if factor is not None:
            per = torch.tensor(factor, dtype=x.dtype, device=x.device)[lab] * per
        return per
    y = dense_target(prepared, logp, "softmax")
    if annotated is not None:
        y = y * annotated.to(x.dtype).view((x.shape[0], C) + (1,) * (x.ndim - 2))
    per = torch.where(y > 0, -logp * y, torch.zeros_like(logp))  # 0·log 0 = 0 at a −inf logit
    ff = _focal_factor(logp, focal.gamma)
    per = per if ff is None else ff * per
    if factor is not None:
        per = per * torch.tensor(factor, dtype=x.dtype, device=x.device).view((1, C) + (1,) * (x.ndim - 2))
    return per.sum(1, keepdim=True)


def focal_from(
    input: torch.Tensor,
    prepared: PreparedTarget,
    config: DiceConfig,
    focal: FocalConfig,
    annotated: torch.Tensor | None = None,
) -> torch.Tensor:
    """The mean focal term (module docstring) of a prepared target; ``annotated`` checked by the caller."""
    if prepared.mask is not None and prepared.mask.shape[1] != 1:
        raise ValueError(
            f"the focal term needs a voxel-wise mask (B, *spatial) or (B, 1, *spatial); got a "
            f"per-class mask of shape {tuple(prepared.mask.shape)}"
        )
    x = input if input.dtype == torch.float64 else input.float()
    C = x.shape[1]
    if focal.activation_for(config) == "softmax":
        per = _softmax_terms(x, prepared, focal, annotated)
        norm = torch.ones_like(per)
    else:
        per = _sigmoid_terms(x, dense_target(prepared, x, "sigmoid"), focal, config.include_background, C)
        norm = torch.ones_like(per)
        if annotated is not None:
            k = annotated.to(x.dtype).view((x.shape[0], C) + (1,) * (x.ndim - 2))
            k = k[:, 1:] if (not config.include_background and C > 1) else k
            per, norm = per * k, norm * k
    if prepared.mask is not None:
        m = prepared.mask.to(x.dtype)
        per, norm = per * m, norm * m
    return distributed.global_mean(per.sum(), norm.sum().detach(), sync=config.sync_batch)


def dice_focal_from(
    input, target, config: DiceConfig, focal: FocalConfig, raw, mask=None, monitor=None
) -> torch.Tensor:
    input = plain_tensor(input)
    check_input(input, config.activation, config.check_finite)
    prepared = prepare_target(input, target, config, mask, check_range=False)
    full = sum_stats(input, prepared, config)
    dice = loss_from_sums(drop_background(full, config.include_background), config, raw, num_channels=input.shape[1])
    if monitor is not None:
        monitor.record(full, prepared, input.shape)
    return focal.lambda_dice * dice + focal.lambda_focal * focal_from(input, prepared, config, focal)


def dice_focal_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    config: DiceConfig | None = None,
    focal: FocalConfig | None = None,
    **options,
) -> torch.Tensor:
    """λ_dice · Dice (any Φ/ε) + λ_focal · focal loss (sigmoid or softmax, MONAI's conventions).

    ``options``: those of :func:`phidice.dice_loss` and of :class:`~phidice.core.config.FocalConfig`
    (``gamma``, ``alpha``, ``focal_weight``, ``lambda_dice``, ``lambda_focal``, ``focal_activation``).

    Raises:
        ValueError: ``activation=None``, ``reduction="none"``, γ < 0, α outside [0, 1], a negative λ or
            weight, or any bad Dice option.
    """
    dice_options, focal_options = split_focal_options(options)
    config = DiceConfig.build(config, dice_options)
    focal = FocalConfig(**{**(focal.to_dict() if focal else {}), **focal_options})
    check_focal(config, focal, "DiceFocalLoss")
    return dice_focal_from(input, target, config, focal, config_smoothing(config), mask=mask)


class DiceFocalLoss(LossModule):
    """Dice (the options of :class:`DiceLoss`) plus the focal loss of :class:`~phidice.core.config.FocalConfig`.

    ``gamma``, ``alpha`` and ``focal_weight`` shape the focal term; ``lambda_dice`` and ``lambda_focal`` weigh
    the two terms; ``ignore_index`` and ``mask`` apply to both. docs/mapping.md translates MONAI's
    ``DiceFocalLoss``.

    >>> loss = DiceFocalLoss(phi="BI", include_background=False, gamma=2.0, lambda_focal=0.5)

    Raises:
        ValueError: ``activation=None``, ``reduction="none"``, γ < 0, α outside [0, 1], a negative λ.
    """

    def __init__(
        self,
        phi="I",
        eps=DEFAULT_EPS,
        *,
        gamma: float = 2.0,
        alpha=None,
        focal_weight=None,
        lambda_dice: float = 1.0,
        lambda_focal: float = 1.0,
        focal_activation=None,
        **options,
    ):
        options.setdefault("activation", "softmax")
        super().__init__(DiceConfig(phi=phi, eps=eps, **options))
        self.focal = FocalConfig(gamma, alpha, focal_weight, lambda_dice, lambda_focal, focal_activation)
        self._check_config()

    @classmethod
    def from_config(  # type: ignore[override]  # the companion of the Dice config is a FocalConfig here
        cls, config: DiceConfig, focal: FocalConfig | None = None, **focal_options
    ) -> DiceFocalLoss:
        """The loss for a built configuration (and focal options)."""
        self = cls.__new__(cls)
        LossModule.__init__(self, config)
        self.focal = FocalConfig(**{**(focal.to_dict() if focal else {}), **focal_options})
        self._check_config()
        return self

    def _check_config(self) -> None:
        check_focal(self.config, self.focal, type(self).__name__)

    def forward(
        self, input: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *, monitor=None
    ) -> torch.Tensor:
        """The loss of logits ``input`` (B, C, *spatial) against ``target``, as :func:`phidice.dice_focal_loss`;
        ``monitor``: a :class:`phidice.GradientMonitor` of this loss, told the Dice term's sums of this call."""
        return dice_focal_from(input, target, self.config, self.focal, self.smoothing, mask, self.monitor_for(monitor))

    def extra_repr(self) -> str:
        return self.config.describe() + ", " + ", ".join(f"{k}={v!r}" for k, v in self.focal.to_dict().items())
