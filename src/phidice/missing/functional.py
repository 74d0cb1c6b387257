"""Dice and cross-entropy for partially annotated data: leaf (Fidon et al. 2021) and marginal (Shi et al. 2021).

``annotated`` is a (B, C) bool tensor over the input's channels: which classes are annotated in each
sample. In a sample with unannotated classes, label 0 means "background or one of those classes", so
their voxels are labelled background in the target. Both losses reuse the core's per-(b, c) sums:

* leaf: the (b, c) entries of unannotated classes — and of the background of any sample that misses a
  class, since its label 0 is then no leaf label — leave the subsets φ through Eq. 3's ``keep`` mask;
* marginal: per sample, the probabilities of unannotated classes are summed into the background
  (probability space; in log space for the cross-entropy), then those channels leave through ``keep``.

With every class annotated both equal :func:`phidice.dice_loss` (and the cross-entropy equals torch's).
Options (``**options``) are those of :func:`phidice.dice_loss`; the Dice + CE forms add ``lambda_dice``,
``lambda_ce``, ``ce_weight`` and ``label_smoothing``.
"""

from __future__ import annotations

import torch

from phidice.core import steps
from phidice.core.checks import check_input, is_compiling, plain_tensor
from phidice.core.config import CEConfig, DiceConfig, FocalConfig, split_focal_options, split_options
from phidice.core.rules import check_compound, check_marginal, has_background
from phidice.core.signature import config_signature
from phidice.core.xp import TORCH
from phidice.losses.base import config_smoothing, loss_from_sums
from phidice.losses.ce import cross_entropy_from, marginal_log_probs
from phidice.losses.focal import check_focal, focal_from
from phidice.sums import check_prepared_range, prepare_target, sum_stats

__all__ = [
    "check_annotated",
    "leaf_keep",
    "merge_probabilities",
    "marginal_log_probs",
    "leaf_dice_loss",
    "marginal_dice_loss",
    "marginal_cross_entropy",
    "leaf_dice_ce_loss",
    "marginal_dice_ce_loss",
    "leaf_dice_focal_loss",
    "marginal_dice_focal_loss",
]


def check_annotated(annotated, input: torch.Tensor, activation, *, values: bool = True) -> torch.Tensor:
    """Validate ``annotated`` against ``input`` (B, C, *S) and return it as a (B, C) bool tensor on its device.

    Accepted: bool, or integers holding only 0/1 (anything convertible by ``torch.as_tensor``); None means
    every class is annotated. Errors: a float dtype, a shape other than (B, C), and with ``values`` (which
    reads the flags on the host) a sample with nothing annotated and — when channel 0 is a background
    (:func:`has_background`) — a False background entry.
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
        raise TypeError(
            f"annotated must be a bool tensor (or integers 0/1) of shape (B, C); got dtype "
            f"{annotated.dtype} — use `annotated > 0.5` or `.bool()` to say which classes are annotated"
        )
    if tuple(annotated.shape) != (B, C):
        raise ValueError(
            f"annotated must have shape (B, C) = {(B, C)}, one flag per sample and input channel "
            f"(background column included); got shape {tuple(annotated.shape)}"
        )
    values = values and not is_compiling()
    if annotated.dtype != torch.bool:
        if values and bool(((annotated != 0) & (annotated != 1)).any()):
            raise ValueError(f"annotated of integer dtype {annotated.dtype} must hold only 0 and 1")
        annotated = annotated != 0
    annotated = annotated.to(input.device)
    if values:
        _check_flags(annotated, has_background(C, activation))
    return annotated


def _check_flags(annotated: torch.Tensor, background: bool) -> None:
    nothing = ~annotated.any(1)
    if bool(nothing.any()):
        rows = nothing.nonzero().flatten().tolist()
        raise ValueError(
            f"annotated: sample(s) {rows} have no class annotated at all; such a sample carries "
            f"no label information — leave it out of the batch (or mask it)"
        )
    if background and not bool(annotated[:, 0].all()):
        rows = (~annotated[:, 0]).nonzero().flatten().tolist()
        raise ValueError(
            f"annotated[:, 0] (background) must be True; got False for sample(s) {rows}. The background "
            f"is always annotated: it is what unannotated classes are labelled as in the target"
        )


def check_unannotated_labels(target_sum: torch.Tensor, annotated: torch.Tensor) -> None:
    """Error when a class marked unannotated has labels (target mass under the mask) in its sample."""
    if is_compiling():
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
    return steps.leaf_keep(annotated, activation, TORCH)


def merge_probabilities(probs: torch.Tensor, annotated: torch.Tensor) -> torch.Tensor:
    """Shi et al.'s marginalisation of (B, C, *S) probabilities: p'_0 = p_0 + Σ_{u unannotated} p_u per sample;
    unannotated channels → 0 (:func:`phidice.core.steps.merge_probabilities`)."""
    return steps.merge_probabilities(probs, annotated, TORCH)


def check_marginal_fused(config: DiceConfig, what: str) -> None:
    if config.fused is True and config.include_background:
        raise ValueError(
            f"fused=True but {what} with include_background=True needs Σ_{{y=0}} p_u cross sums that "
            f"the per-(b, c) fused kernels do not give; use fused='auto' or False"
        )


def partial_loss(
    kind: str,
    input,
    target,
    annotated,
    config: DiceConfig,
    raw,
    mask=None,
    ce: CEConfig | None = None,
    ce_weight=None,
    focal: FocalConfig | None = None,
    monitor=None,
) -> torch.Tensor:
    """The leaf or marginal Dice (``kind``), plus the marginal cross-entropy when ``ce`` is given, or the
    focal term on the marginal probabilities (sigmoid: over the annotated channels) when ``focal`` is; a
    ``monitor`` (:class:`phidice.GradientMonitor`) is told the (B, C) sums and ``annotated``."""
    input = plain_tensor(input)  # a MONAI MetaTensor as a plain view (phidice.core.checks.plain_tensor)
    check_input(input, config.activation, config.check_finite)
    if kind == "marginal":
        check_marginal(config.activation, "the marginal Dice", input.shape[1])
    everything = annotated is None  # then the CE is plain: torch's fused kernel
    annotated = check_annotated(annotated, input, config.activation, values=config.validate_args)
    prepared = prepare_target(input, target, config, mask, check_range=False)
    if steps.merges_background(kind, config):  # the dense merged path: the label range sum_stats would check
        check_prepared_range(input, prepared, config)
    full, keep = steps.partial_stats(kind, input, prepared, annotated, config, sum_stats, TORCH)
    if config.validate_args:
        check_unannotated_labels(full.target_sum, annotated)
    stats, keep = steps.scored(full, keep, config, input.shape[1])
    dice = loss_from_sums(stats, config, raw, num_channels=input.shape[1], keep=keep)
    flags = None if everything else annotated
    if monitor is not None:
        monitor.record(full, prepared, input.shape, annotated)
    if focal is not None:
        return focal.lambda_dice * dice + focal.lambda_focal * focal_from(input, prepared, config, focal, flags)
    if ce is None:
        return dice
    return ce.lambda_dice * dice + ce.lambda_ce * cross_entropy_from(input, prepared, config, ce, ce_weight, flags)


def _partial(kind: str, input, target, annotated, mask, config, options, with_ce: bool):
    dice_options, ce_options = split_options(options)
    if ce_options and not with_ce:
        raise TypeError(f"unexpected option(s) {sorted(ce_options)}: the Dice + cross-entropy forms take them")
    config = DiceConfig.build(config, dice_options)
    what = f"the {kind} Dice"
    if kind == "marginal":
        check_marginal(config.activation, what)
        check_marginal_fused(config, what)
    ce = None
    if with_ce:
        check_compound(config, f"the {kind} Dice + cross-entropy")
        ce = CEConfig(**ce_options)
    return partial_loss(kind, input, target, annotated, config, config_smoothing(config), mask, ce)


@config_signature(DiceConfig)
def leaf_dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    annotated=None,
    *,
    mask: torch.Tensor | None = None,
    config: DiceConfig | None = None,
    **options,
) -> torch.Tensor:
    """Leaf Dice (Fidon et al. 2021) over Φ: unannotated (image, class) entries leave the subsets φ.

    Per Φ: I — mean over the annotated (b, c); CI — per image, classes summed over its annotated ones;
    BI — per class, summed over the images where it is annotated; BCI — one sum over all annotated
    entries. The background takes part only in samples with every class annotated (elsewhere label 0
    may hide an unannotated class). φ with no kept entry leave the mean; the fused path applies as in
    :func:`phidice.dice_loss`.

    Args:
        input: logits (or probabilities with ``activation=None``), shape (B, C, *spatial).
        target: labels or a dense map, as :func:`phidice.dice_loss`; unannotated classes read as background.
        annotated: (B, C) bool, the classes annotated in each sample (None: all of them).
        phi, eps, …: the options of :func:`phidice.dice_loss` (``overlap=phidice.tversky(α, β)`` or
            ``phidice.JACCARD`` for another index).
        mask, config: as :func:`phidice.dice_loss`.

    Returns:
        The loss, a 0-d tensor (per φ with ``reduction="none"``).

    Raises:
        ValueError / TypeError: ``annotated`` not (B, C) bool or 0/1, a sample with nothing annotated, a label
            of an unannotated class, or any error of :func:`phidice.dice_loss`.

    Example:
        >>> import torch
        >>> from phidice.missing.functional import leaf_dice_loss
        >>> probs = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]])  # (B, C, voxels)
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> leaf_dice_loss(probs, labels, annotated, eps=0.0, activation=None)  # class 1 only: 1 − 1.4/2
        tensor(0.3000)
    """
    return _partial("leaf", input, target, annotated, mask, config, options, with_ce=False)


@config_signature(DiceConfig)
def marginal_dice_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    annotated=None,
    *,
    mask: torch.Tensor | None = None,
    config: DiceConfig | None = None,
    **options,
) -> torch.Tensor:
    """Marginal Dice (Shi et al. 2021) over Φ: p_u of unannotated classes is added to p_0, then they leave.

    With ``include_background=True`` this runs the dense reference path (``fused=True`` is an error); with
    ``include_background=False`` the marginal Dice equals the leaf Dice on the foreground and takes the
    per-(b, c) (fused when available) path.

    Args:
        input: logits (or probabilities with ``activation=None``), shape (B, C, *spatial).
        target: labels or a dense map, as :func:`phidice.dice_loss`; unannotated classes read as background.
        annotated: (B, C) bool, the classes annotated in each sample (None: all of them).
        phi, eps, …: the options of :func:`phidice.dice_loss` (``overlap=phidice.tversky(α, β)`` or
            ``phidice.JACCARD`` for another index).
        mask, config: as :func:`phidice.dice_loss`.

    Returns:
        The loss, a 0-d tensor (per φ with ``reduction="none"``).

    Raises:
        ValueError / TypeError: ``activation="sigmoid"`` (no exclusive classes to merge), a bad ``annotated``,
            or any error of :func:`phidice.dice_loss`.

    Example:
        >>> import torch
        >>> from phidice.missing.functional import marginal_dice_loss
        >>> probs = torch.tensor([[[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]]])  # (B, C, voxels)
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> marginal_dice_loss(probs, labels, annotated, eps=0.0, activation=None)  # p_2 joins p_0
        tensor(0.2250)
    """
    return _partial("marginal", input, target, annotated, mask, config, options, with_ce=False)


# the options of the marginal cross-entropy: those of the configs that a cross-entropy alone reads
MARGINAL_CE_OPTIONS = ("activation", "ignore_index", "sync_batch", "validate_args", "ce_weight", "label_smoothing")


def marginal_ce_options(options: dict, what: str) -> tuple[dict, dict]:
    """(DiceConfig, CEConfig) keywords of a marginal cross-entropy; any other option is a TypeError."""
    other = sorted(set(options) - set(MARGINAL_CE_OPTIONS))
    if other:
        raise TypeError(
            f"{what} got unexpected option(s) {', '.join(map(repr, other))}; its options are "
            f"{', '.join(MARGINAL_CE_OPTIONS)}"
        )
    return split_options(options)


@config_signature(DiceConfig, CEConfig, only=MARGINAL_CE_OPTIONS)
def marginal_cross_entropy(
    input: torch.Tensor, target: torch.Tensor, annotated=None, *, mask: torch.Tensor | None = None, **options
) -> torch.Tensor:
    """Cross-entropy with unannotated classes marginalised, averaged over the kept voxels (float32).

    softmax: −log p'_y with log p'_0 = logsumexp(z_0, z_u …) − logsumexp(z) (log space, stable).
    sigmoid: channels are independent, so marginalising an unannotated channel drops its BCE term; the
    mean runs over kept (voxel, annotated channel) pairs. ``ce_weight`` weighs classes as in torch (a
    weighted mean for labels); the merged background takes the background's weight. ``mask`` must be
    voxel-wise, (B, *S) or (B, 1, *S). ``sync_batch``: under torch.distributed, the mean runs over the
    voxels of every rank (:func:`phidice.distributed.global_mean`).

    Args:
        input: logits (B, C, *spatial).
        target, annotated: as :func:`leaf_dice_loss`.
        activation: "softmax" or "sigmoid"; ignore_index, sync_batch, validate_args as :func:`phidice.dice_loss`;
            ce_weight, label_smoothing as :func:`phidice.dice_ce_loss`.
        mask: voxel-wise, (B, *spatial) or (B, 1, *spatial).

    Returns:
        The mean cross-entropy over the kept voxels, a 0-d float32 tensor (float64 for float64 logits).

    Raises:
        ValueError / TypeError: ``activation=None``, a per-class mask, a bad ``annotated``, or another option.

    Example:
        >>> import torch
        >>> from phidice.missing.functional import marginal_cross_entropy
        >>> logits = torch.zeros(1, 3, 3)  # (B, C, voxels): softmax ⅓ everywhere
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> marginal_cross_entropy(logits, labels, annotated)  # p'_0 = ⅔: −(2·log ⅔ + log ⅓)/3
        tensor(0.6365)
    """
    dice_options, ce_options = marginal_ce_options(options, "marginal_cross_entropy")
    config, ce = DiceConfig(**dice_options), CEConfig(**ce_options)
    return marginal_ce_from(input, target, annotated, config, ce, mask=mask)


def marginal_ce_from(input, target, annotated, config: DiceConfig, ce: CEConfig, ce_weight=None, mask=None):
    if config.activation is None:
        raise ValueError("the marginal cross-entropy needs logits: activation must be 'softmax' or 'sigmoid'; got None")
    input = plain_tensor(input)
    check_input(input, config.activation)
    if config.activation == "softmax":
        check_marginal(config.activation, "the marginal cross-entropy", input.shape[1])
    everything = annotated is None  # then the CE is plain: torch's fused kernel
    annotated = check_annotated(annotated, input, config.activation, values=config.validate_args)
    prepared = prepare_target(input, target, config, mask)
    if config.validate_args:
        check_unannotated_labels(_target_sums(prepared, input), annotated)
    return cross_entropy_from(input, prepared, config, ce, ce_weight, None if everything else annotated)


def _target_sums(prepared, input: torch.Tensor) -> torch.Tensor:
    """Σ m·y per (b, c) without probabilities (for the label check of the cross-entropy)."""
    B, C = input.shape[:2]
    m = prepared.mask
    if prepared.labels is not None:
        labels = prepared.labels.reshape(B, -1)
        w = torch.ones(labels.shape, device=labels.device) if m is None else m.reshape(B, -1).float()
        return torch.zeros(B, C, device=labels.device).scatter_add_(1, labels, w)
    y = prepared.dense.float()
    y = y if m is None else y * m.float()
    return y.reshape(B, C, -1).sum(-1)


@config_signature(DiceConfig, CEConfig)
def marginal_dice_ce_loss(
    input, target, annotated=None, *, mask=None, config: DiceConfig | None = None, **options
) -> torch.Tensor:
    """λ_dice · marginal Dice + λ_ce · marginal cross-entropy (softmax only).

    Args:
        input, target, annotated, mask, config: as :func:`marginal_dice_loss`.
        phi, eps, …, lambda_dice, lambda_ce, ce_weight, label_smoothing: as :func:`phidice.dice_ce_loss`.

    Returns:
        The loss, a 0-d tensor.

    Raises:
        ValueError / TypeError: as :func:`marginal_dice_loss` and :func:`phidice.dice_ce_loss`.

    Example:
        >>> import torch
        >>> from phidice.missing.functional import marginal_dice_ce_loss
        >>> logits = torch.zeros(1, 3, 3)  # (B, C, voxels): softmax ⅓ everywhere
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> marginal_dice_ce_loss(logits, labels, annotated, eps=0.0)
        tensor(1.1365)
    """
    return _partial("marginal", input, target, annotated, mask, config, options, with_ce=True)


@config_signature(DiceConfig, CEConfig)
def leaf_dice_ce_loss(
    input, target, annotated=None, *, mask=None, config: DiceConfig | None = None, **options
) -> torch.Tensor:
    """λ_dice · leaf Dice + λ_ce · marginal cross-entropy (for sigmoid: BCE over the annotated channels).

    Cross-entropy is voxel-wise, so it cannot drop a class the way the leaf Dice drops an entry; the
    marginal form (unannotated classes summed into the background) is the standard counterpart.

    Args:
        input, target, annotated, mask, config: as :func:`leaf_dice_loss`.
        phi, eps, …, lambda_dice, lambda_ce, ce_weight, label_smoothing: as :func:`phidice.dice_ce_loss`.

    Returns:
        The loss, a 0-d tensor.

    Raises:
        ValueError / TypeError: as :func:`leaf_dice_loss` and :func:`phidice.dice_ce_loss`.

    Example:
        >>> import torch
        >>> from phidice.missing.functional import leaf_dice_ce_loss
        >>> logits = torch.zeros(1, 3, 3)  # (B, C, voxels): softmax ⅓ everywhere
        >>> labels = torch.tensor([[0, 1, 0]])  # class 2 is not annotated: its voxel reads 0
        >>> annotated = torch.tensor([[True, True, False]])  # (B, C)
        >>> leaf_dice_ce_loss(logits, labels, annotated, eps=0.0)  # leaf Dice 1 − (2/3)/(1 + 1), + CE
        tensor(1.3032)
    """
    return _partial("leaf", input, target, annotated, mask, config, options, with_ce=True)


def _partial_focal(kind: str, input, target, annotated, mask, config, options):
    dice_options, focal_options = split_focal_options(options)
    config = DiceConfig.build(config, dice_options)
    what = f"the {kind} Dice + focal loss"
    if kind == "marginal":
        check_marginal(config.activation, what)
        check_marginal_fused(config, what)
    focal = FocalConfig(**focal_options)
    check_focal(config, focal, what)
    return partial_loss(kind, input, target, annotated, config, config_smoothing(config), mask, focal=focal)


def leaf_dice_focal_loss(
    input, target, annotated=None, *, mask=None, config: DiceConfig | None = None, **options
) -> torch.Tensor:
    """λ_dice · leaf Dice + λ_focal · focal loss on the marginal probabilities (sigmoid: over the annotated
    channels); options of :func:`phidice.dice_focal_loss`."""
    return _partial_focal("leaf", input, target, annotated, mask, config, options)


def marginal_dice_focal_loss(
    input, target, annotated=None, *, mask=None, config: DiceConfig | None = None, **options
) -> torch.Tensor:
    """λ_dice · marginal Dice + λ_focal · focal loss on the marginal probabilities (softmax)."""
    return _partial_focal("marginal", input, target, annotated, mask, config, options)
