"""The per-(image, class) sums of Eq. 3 from logits and targets — the input of every loss in phidice.

For probabilities ỹ (after the activation), targets y and a voxel mask m, the sums are, per image b and
class c: I = Σ m·y·ỹ, P = Σ m·ỹ (Σ m·ỹ² when squared) and Y = Σ m·y (Σ m·y²). Integer labels with softmax
or sigmoid go through the fused one-hot-free kernels (:mod:`phidice.kernels`); everything else through the
dense reference path here, which the kernels are tested against.
"""

from __future__ import annotations

from typing import cast

import torch

from phidice import kernels
from phidice.core import steps
from phidice.core.checks import (
    check_all_finite,
    check_input,
    check_label_range,
    check_mask,
    check_unit_interval,
    is_compiling,
    is_functorch_tensor,
    plain_tensor,
)
from phidice.core.config import DiceConfig
from phidice.core.rules import label_upper
from phidice.core.signature import config_signature
from phidice.core.types import DiceStats, PreparedTarget, drop_background
from phidice.core.xp import TORCH

__all__ = ["compute_stats", "sum_stats", "prepare_target", "activate", "dense_target", "reference_stats"]


def prepare_target(
    input: torch.Tensor,
    target: torch.Tensor,
    config: DiceConfig,
    mask: torch.Tensor | None = None,
    *,
    check_range: bool = True,
) -> PreparedTarget:
    """Check ``target`` (and ``mask``) against ``input`` and bring them to one of two forms.

    Integer targets of shape (B, *S) or (B, 1, *S) are labels in [0, C) (or {0, 1} for a single sigmoid
    channel), with ``ignore_index`` voxels folded into the mask. Float/bool targets of shape (B, C, *S) are
    one-hot or soft maps in [0, 1]; so are integer ones when C > 1 (``F.one_hot(y, C).movedim(-1, 1)``). A
    float target of shape (B, 1, *S) with C > 1 is taken as labels when its values are integers (MONAI stores
    labels as float). ``check_range=False`` leaves the label range check (without ``ignore_index``) to the
    caller: the fused CPU kernel gets the range in the pass it makes anyway. Value checks run only with
    ``config.validate_args``, and not on a target whose values cannot be read (while ``torch.compile`` traces,
    or under a ``torch.func`` transform such as ``vmap``). A MONAI MetaTensor target or mask is read as a plain
    tensor (:func:`~phidice.core.checks.plain_tensor`).
    """
    target, mask = plain_tensor(target), plain_tensor(mask)
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor; got {type(target).__name__}")
    if target.is_complex():
        raise TypeError(f"target must be integer labels or a float/bool map; got dtype {target.dtype}")
    B, C = input.shape[:2]
    if target.shape[0] != B:
        raise ValueError(
            f"target batch size {target.shape[0]} does not match input batch size {B} "
            f"(input {tuple(input.shape)}, target {tuple(target.shape)})"
        )
    values = config.validate_args and not is_compiling() and not is_functorch_tensor(target)  # vmap over targets
    ignore_index = config.ignore_index
    given = target.dtype
    is_int = not target.is_floating_point() and target.dtype != torch.bool
    one_hot_int = is_int and C > 1 and target.shape[1:] == input.shape[1:]  # F.one_hot(y, C).movedim(-1, 1)
    read_as = ""
    if one_hot_int:
        read_as = (
            f"; an integer target of shape {tuple(target.shape)} is read as a one-hot map (B, C, *spatial) "
            f"— labels have shape (B, *spatial) = {(B, *input.shape[2:])}"
        )
    if target.dtype == torch.bool or one_hot_int:
        target, is_int = target.to(torch.float32), False
    if not is_int and target.shape[1:] == input.shape[1:]:
        if ignore_index is not None:
            raise ValueError(
                "ignore_index applies to integer label targets (B, *spatial); the target is a "
                "one-hot/soft map (B, C, *spatial): pass mask= instead"
            )
        if config.check_finite and not is_compiling():
            check_all_finite(target, "target")
        if values:
            check_unit_interval(target, "target values must lie in [0, 1] (one-hot or soft maps)" + read_as)
        return PreparedTarget(None, target, None if mask is None else check_mask(mask, input, values=values))
    labels = _labels(input, target, values, given=given)
    valid = None
    if ignore_index is not None:
        valid = labels != ignore_index
        labels = labels.masked_fill(~valid, 0)
    if values and (check_range or ignore_index is not None):
        check_label_range(labels, label_upper(C, config.activation), ignore_index=ignore_index)
    if mask is not None:
        mask = check_mask(mask, input, values=values)
    if valid is not None:
        valid = valid.unsqueeze(1).to(input.dtype)
        mask = valid if mask is None else mask * valid
    return PreparedTarget(labels, None, mask)


def _labels(input: torch.Tensor, target: torch.Tensor, values: bool, given=None) -> torch.Tensor:
    """A label target (B, *S) or (B, 1, *S), integer or integer-valued float, as (B, *S) int64; ``given`` is
    the dtype the caller got (errors name it)."""
    lab = target[:, 0] if (target.ndim == input.ndim and target.shape[1] == 1) else target
    if tuple(lab.shape[1:]) != tuple(input.shape[2:]):
        B = input.shape[0]
        raise ValueError(
            f"target shape {tuple(target.shape)} (dtype {given or target.dtype}) does not fit input shape "
            f"{tuple(input.shape)}: expected "
            f"labels (B, *spatial) = {(B, *input.shape[2:])} or (B, 1, *spatial), or a map (B, C, *spatial) = "
            f"{tuple(input.shape)}"
        )
    if lab.is_floating_point() and values and not bool((lab == torch.round(lab)).all()):
        raise ValueError(
            f"target of shape {tuple(target.shape)} has one channel but input has C={input.shape[1]}: it is read "
            f"as labels, yet it holds non-integer values"
        )
    return lab if lab.dtype == torch.long else lab.long()


def activate(input: torch.Tensor, activation) -> torch.Tensor:
    """Probabilities in float32 (float64 kept): the activation never runs in fp16/bf16; a callable
    activation gets the float32 (float64) input (:func:`phidice.core.steps.activate`)."""
    return steps.activate(plain_tensor(input), activation, TORCH)


def dense_target(prepared: PreparedTarget, probs: torch.Tensor, activation) -> torch.Tensor:
    """The target as a (B, C, *S) map of ``probs``' dtype (one-hot for labels)."""
    return steps.dense_target(prepared, probs, activation, TORCH)


def reference_stats(
    probs: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, squared: bool, soft: bool = False
) -> DiceStats:
    """Sums of Eq. 3 per (b, c) from dense (B, C, *S) probabilities and targets (the readable reference path);
    ``soft`` (``soft_label=True``): I = Σ m·min(ỹ, y), as :func:`phidice.core.steps.reference_stats` says."""
    return steps.reference_stats(probs, target, mask, squared, soft, TORCH)


def sum_stats(input: torch.Tensor, prepared: PreparedTarget, config: DiceConfig) -> DiceStats:
    """The sums stage: (B, C) sums I, P, Y of every channel, differentiable w.r.t. ``input``, of a target
    prepared with ``check_range=False``; the label range is checked here (with an ``ignore_index``,
    :func:`prepare_target` has checked it already). The stages: :func:`prepare_target` → :func:`activate` →
    :func:`dense_target` → :func:`reference_stats`, or the fused kernels in their place.

    ``fused="auto"`` takes the fused one-hot-free kernels when they apply — integer labels, softmax/sigmoid,
    no squared denominator — and the dense reference path otherwise, or where the fused path is the slower one
    (:func:`phidice.kernels.auto_prefers_reference`: on the CPU without numba); ``True`` demands them. ``soft_label``
    changes nothing for labels (min(ỹ, y) = y·ỹ there), so they stay fused; soft maps are dense targets and
    take the reference path, as any dense target does. A MONAI MetaTensor
    input is read as a plain tensor.
    """
    input = plain_tensor(input)
    if config.fused is not False:
        reason = kernels.fused_unsupported_reason(input, prepared, activation=config.activation, squared=config.squared)
        slower = (
            None
            if reason is not None or config.fused is True
            else kernels.auto_prefers_reference(input.device, input.dtype)
        )
        if reason is None and slower is None:
            return kernels.fused_stats(
                input,
                prepared.labels,
                activation=cast(str, config.activation),  # None was refused by fused_unsupported_reason
                mask=prepared.mask,
                check_range=config.validate_args and config.ignore_index is None,
            )
        if config.fused is True:
            raise ValueError(f"fused=True but the fused path does not apply: {reason}")
    check_prepared_range(input, prepared, config)
    probs = activate(input, config.activation)
    return reference_stats(
        probs, dense_target(prepared, probs, config.activation), prepared.mask, config.squared, config.soft_label
    )


def check_prepared_range(input: torch.Tensor, prepared: PreparedTarget, config: DiceConfig) -> None:
    """The label range check that ``prepare_target(..., check_range=False)`` left to the dense path."""
    if (
        prepared.labels is not None
        and config.ignore_index is None
        and config.validate_args
        and not is_compiling()
        and not is_functorch_tensor(prepared.labels)
    ):
        check_label_range(prepared.labels, label_upper(input.shape[1], config.activation))


# the DiceConfig fields that concern the sums (the others act on Eq. 3 after them)
SUM_OPTIONS = ("activation", "squared", "include_background", "ignore_index", "check_finite", "fused", "validate_args")


@config_signature(DiceConfig, only=SUM_OPTIONS)
def compute_stats(
    input: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    config: DiceConfig | None = None,
    **options,
) -> DiceStats:
    """Per-image, per-class sums (B, C') of Eq. 3, differentiable with respect to ``input``.

    Args:
        input, target, mask: as :func:`phidice.dice_loss`.
        activation, squared, include_background, ignore_index, check_finite, fused, validate_args: the options
            of :func:`phidice.dice_loss` that concern the sums (the others are accepted and have no effect here).
        config: a built :class:`~phidice.core.config.DiceConfig`; the options given are applied on top of it.

    Returns:
        :class:`~phidice.DiceStats`: ``intersection`` Σ y·ỹ, ``pred_sum`` Σ ỹ, ``target_sum`` Σ y, each (B, C').

    Raises:
        ValueError / TypeError: as :func:`phidice.dice_loss`.

    Example:
        >>> import torch
        >>> from phidice import compute_stats
        >>> probs = torch.tensor([[[0.9, 0.2], [0.1, 0.8]]])  # (B, C, voxels)
        >>> compute_stats(probs, torch.tensor([[0, 1]]), activation=None).intersection
        tensor([[0.9000, 0.8000]])
    """
    config = DiceConfig.build(config, options)
    check_input(input, config.activation, config.check_finite)
    prepared = prepare_target(input, target, config, mask, check_range=False)
    return drop_background(sum_stats(input, prepared, config), config.include_background)


_RENAMED = {"stats_of_prepared": "sum_stats"}


def __getattr__(name: str):
    if name in _RENAMED:
        import warnings

        warnings.warn(
            f"phidice.sums.{name} is deprecated: use phidice.sums.{_RENAMED[name]}", DeprecationWarning, stacklevel=2
        )
        return globals()[_RENAMED[name]]
    if name == "class_stats":
        raise AttributeError(
            "phidice.sums.class_stats is gone: use phidice.compute_stats(input, target, config=config, mask=mask) "
            "(the sums of the scored classes) or phidice.sums.sum_stats(input, prepare_target(...), config)"
        )
    raise AttributeError(f"module 'phidice.sums' has no attribute {name!r}")
