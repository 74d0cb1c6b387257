"""The focal term of the Keras Dice + focal loss, as :mod:`phidice.losses.focal` defines it (MONAI's conventions).

sigmoid, per (voxel, class): BCE(x, y)·exp(γ·log σ(−x·(2y − 1))), α for y = 1 and 1 − α for y = 0 (per-class
α: α_c where y = 1), channel 0 left out with ``include_background=False``; averaged over the (voxel, class)
pairs. softmax, per voxel: −Σ_c α_c (1 − p_c)^γ y_c log p_c over every class (scalar α: 1 − α for the
background, α for the others); averaged over the voxels. ``focal_weight`` multiplies class c's terms;
``ignore_index`` voxels leave the mean. Computed in float32 (float64 kept), channels-last.
"""

from __future__ import annotations

import numpy as np

from keras import ops
from phidice.core import steps
from phidice.core.config import DiceConfig, FocalConfig, class_slice
from phidice.equations import FOCAL_FLOOR
from phidice.keras.checks import dtype_of
from phidice.keras.sums import Prepared
from phidice.keras.xp import KERAS


def _row(value, name: str, length: int, C: int, include_background: bool, dtype: str, axis: str):
    """A per-class value as a (C',) tensor for the term's channels (scalars stay floats, None stays None)."""
    if not isinstance(value, tuple):
        return value
    sl = class_slice(name, len(value), C, include_background, axis=axis)
    row = np.asarray(value[sl], dtype=dtype)
    if row.shape[0] != length:
        raise ValueError(f"{name} has {len(value)} values; the focal term scores {length} classes")
    return ops.convert_to_tensor(row)


def _sigmoid(x, y, focal: FocalConfig, include_background: bool, C: int, axis: str):
    if not include_background and C > 1:
        x, y = x[..., 1:], y[..., 1:]
    dtype, n = dtype_of(x), x.shape[-1]
    zero = ops.zeros_like(x)  # BCE with logits, 0·log 0 = 0 so that a ±inf logit at its own label costs 0
    per = -(ops.where(y > 0, y * ops.log_sigmoid(x), zero) + ops.where(y < 1, (1 - y) * ops.log_sigmoid(-x), zero))
    if focal.gamma:
        per = ops.exp(ops.log_sigmoid(-x * (2 * y - 1)) * focal.gamma) * per
    alpha = _row(focal.alpha, "alpha", n, C, include_background, dtype, axis)
    if isinstance(focal.alpha, tuple):
        per = ops.where(y == 1, alpha, ops.ones_like(alpha)) * per
    elif alpha is not None:
        per = (y * alpha + (1 - y) * (1 - alpha)) * per
    weight = _row(focal.focal_weight, "focal_weight", n, C, include_background, dtype, axis)
    return per if weight is None else per * weight


def _softmax(x, prepared: Prepared, focal: FocalConfig, C: int, axis: str):
    dtype = dtype_of(x)
    logp = ops.log_softmax(x, axis=-1)
    y = steps.dense_target(prepared, logp, "softmax", KERAS)
    per = ops.where(y > 0, -logp * y, ops.zeros_like(logp))  # 0·log 0 = 0 at a −inf logit
    if focal.gamma:
        base = 1 - ops.exp(logp)
        base = ops.maximum(base, FOCAL_FLOOR) if focal.gamma < 1 else base
        per = ops.power(base, focal.gamma) * per
    alpha = focal.alpha
    if alpha is not None and not isinstance(alpha, tuple):
        alpha = (1 - alpha,) + (alpha,) * (C - 1)
    for name, value in (("alpha", alpha), ("focal_weight", focal.focal_weight)):
        row = _row(value, name, C, C, True, dtype, axis)
        if row is not None:
            per = per * row
    return ops.sum(per, axis=-1, keepdims=True)


def focal_term(y_pred, prepared: Prepared, config: DiceConfig, focal: FocalConfig, axis: str = "the last axis"):
    """The mean focal term of channels-last logits ``y_pred`` against a prepared target."""
    x = y_pred if dtype_of(y_pred) == "float64" else ops.cast(y_pred, "float32")
    C = x.shape[-1]
    if focal.activation_for(config) == "softmax":
        per = _softmax(x, prepared, focal, C, axis)
    else:
        per = _sigmoid(x, steps.dense_target(prepared, x, "sigmoid", KERAS), focal, config.include_background, C, axis)
    norm = ops.ones_like(per)
    if prepared.mask is not None:
        m = ops.cast(prepared.mask, dtype_of(x))
        per, norm = per * m, norm * m
    total, count = ops.sum(per), ops.stop_gradient(ops.sum(norm))
    return total / ops.where(count > 0, count, 1.0)
