"""The steps before Eq. 3, written once for torch and Keras: probabilities ỹ, the dense target y, the
per-(image b, class c) sums I = Σ m·y·ỹ, P = Σ m·ỹ, Y = Σ m·y, and the missing-label steps (leaf keep,
marginal merge).

Every function takes ``xp``, an array namespace (:data:`phidice.core.xp.TORCH`, channels-first, or
:data:`phidice.keras.xp.KERAS`, channels-last); ``xp.class_axis`` is where the classes are (1 or −1).
Checks, the fused kernels and target preparation stay with each framework: they differ there.
"""

from __future__ import annotations

from phidice.core.rules import has_background
from phidice.core.types import DiceStats


def class_shape(ndim: int, length: int, axis: int, batch: int = 1) -> tuple[int, ...]:
    """The shape that lays ``length`` values along the class ``axis`` of an ``ndim``-d tensor (and ``batch``
    along axis 0; −1 for a batch known only at run time), for broadcasting a per-class vector or (B, C) flags."""
    shape = [1] * ndim
    shape[0] = batch
    shape[axis] = length
    return tuple(shape)


def activate(x, activation, xp):
    """Probabilities ỹ in float32 (float64 kept): the activation never runs in fp16/bf16; a callable
    activation (MONAI's other_act) gets the float32 (float64) input, in the namespace's layout."""
    x = xp.float32(x)
    if activation == "softmax":
        return xp.softmax(x, xp.class_axis)
    if activation == "sigmoid":
        return xp.sigmoid(x)
    if callable(activation):
        return activation(x)
    return x


def dense_target(prepared, probs, activation, xp):
    """The target y as a map of ``probs``' shape and dtype: one-hot for labels, the labels themselves for a
    single non-softmax channel; ``prepared`` has ``labels`` (B, *S) or a ``dense`` map."""
    if prepared.dense is not None:
        return xp.float(prepared.dense, probs)
    axis = xp.class_axis
    if probs.shape[axis] == 1 and activation != "softmax":
        return xp.float(xp.expand_dims(prepared.labels, axis), probs)
    return xp.one_hot(prepared.labels, probs, axis)


def reference_stats(probs, target, mask, squared: bool, soft: bool, xp) -> DiceStats:
    """Sums of Eq. 3 per (b, c) from dense probabilities ỹ and targets y (the readable reference path).

    ``soft`` (``soft_label=True``): I = Σ m·min(ỹ, y), MONAI's (‖ỹ‖₁ + ‖y‖₁ − ‖ỹ − y‖₁)/2 per voxel, which
    for y ∈ (0, 1) peaks at ỹ = y where Σ y·ỹ would reward ỹ = 1; for y ∈ {0, 1} it is Σ m·y·ỹ exactly.
    Squared sums keep Σ y·ỹ: MONAI's L2 form (‖ỹ‖² + ‖y‖² − ‖ỹ − y‖²)/2 is that identity. ``mask`` m has
    one channel or one per class.
    """
    m = None if mask is None else xp.float(mask, probs)
    pm, ym = (probs, target) if m is None else (probs * m, target * m)
    if soft and not squared:
        intersection = xp.voxel_sum(soft_intersection(probs, target, m, xp))
    else:
        intersection = xp.voxel_sum(pm * target)
    pred_sum = xp.voxel_sum(pm * probs if squared else pm)
    target_sum = xp.voxel_sum(ym * target if squared else ym)
    return DiceStats(intersection, pred_sum, target_sum)


def soft_intersection(p, y, m, xp):
    """m·min(ỹ, y) per voxel, as (ỹ + y − |ỹ − y|)/2: the gradient ½ at ỹ = y is MONAI's (|·|' = 0 at 0)."""
    per = (p + y - xp.abs(p - y)) * 0.5
    return per if m is None else per * m


def leaf_keep(annotated, activation, xp):
    """(B, C) entries of the leaf Dice: annotated classes, and the background only in fully annotated samples
    (elsewhere its label 0 may hide an unannotated class)."""
    if not has_background(annotated.shape[1], activation):
        return annotated
    complete = xp.all(annotated[:, 1:], 1)
    return xp.concat([complete, annotated[:, 1:]], 1)


def merge_probabilities(probs, annotated, xp):
    """Shi et al.'s marginalisation: ỹ'_0 = ỹ_0 + Σ_{u unannotated} ỹ_u per sample; unannotated channels → 0.

    Done in probability space (adding logits would be wrong). ∂ỹ'_0/∂ỹ_u = 1, so an unannotated class's
    probability receives exactly the background's gradient.
    """
    axis, ndim = xp.class_axis, len(probs.shape)
    C = probs.shape[axis]
    a = xp.reshape(xp.float(annotated, probs), class_shape(ndim, C, axis, batch=-1))
    to_background = xp.sum((1 - a) * probs, axis)
    e0 = xp.reshape(xp.constant((1.0,) + (0.0,) * (C - 1), probs), class_shape(ndim, C, axis))
    return probs * a + e0 * to_background


def merged_stats(x, prepared, annotated, config, xp) -> DiceStats:
    """(B, C) sums of the marginal Dice with the background scored: unannotated probabilities merged into the
    background (dense: the merged background's I needs Σ_{y=0} ỹ_u, which per-(b, c) sums do not hold)."""
    probs = activate(x, config.activation, xp)
    y = dense_target(prepared, probs, config.activation, xp)
    return reference_stats(
        merge_probabilities(probs, annotated, xp), y, prepared.mask, config.squared, config.soft_label, xp
    )


PARTIAL_KINDS = ("leaf", "marginal")


def merges_background(kind: str, config) -> bool:
    """Whether the ``kind`` Dice sums merged probabilities: the marginal Dice with the background scored. The
    merged background's I needs Σ_{y=0} ỹ_u, which per-(b, c) sums do not hold, so this path is dense."""
    if kind not in PARTIAL_KINDS:
        raise ValueError(f"kind must be one of {PARTIAL_KINDS}; got {kind!r}")
    return kind == "marginal" and config.include_background


def partial_keep(kind: str, annotated, activation, xp):
    """(B, C) entries in Eq. 3 of the ``kind`` Dice: :func:`leaf_keep` for the leaf Dice; the annotated
    classes for the marginal Dice (its merged background is always annotated)."""
    return leaf_keep(annotated, activation, xp) if kind == "leaf" else annotated


def partial_stats(kind: str, x, prepared, annotated, config, sums, xp) -> tuple[DiceStats, object]:
    """(B, C) sums of every channel and the (B, C) ``keep`` of the leaf or marginal Dice (``kind``).

    The sums are the framework's per-(b, c) ones, ``sums(x, prepared, config)`` (torch: fused where it can),
    except for the marginal Dice with the background scored: there unannotated ỹ_u join ỹ_0 first
    (:func:`merged_stats`). Without the background the merged ỹ_0 leaves the loss, so the marginal Dice is
    the leaf Dice on the foreground. Checks of ``annotated`` and the labels stay with each framework.
    """
    if merges_background(kind, config):
        stats = merged_stats(x, prepared, annotated, config, xp)
    else:
        stats = sums(x, prepared, config)
    return stats, partial_keep(kind, annotated, config.activation, xp)


def scored(stats: DiceStats, keep, config, num_channels: int):
    """The sums and (B, C) ``keep`` of the classes the loss scores (background dropped unless included)."""
    if not config.include_background and num_channels > 1:
        return stats.select_classes(slice(1, None)), keep[:, 1:]
    return stats, keep
