"""The cross-entropy term of the Keras Dice + CE loss, as :mod:`phidice.losses.ce` defines it.

softmax: −log ỹ_y per voxel; with ``ce_weight`` a weighted mean (Σ w_y·(−log ỹ_y) / Σ w_y, as torch's
``cross_entropy``); ``label_smoothing`` s: (1 − s)·w_y·(−log ỹ_y) + s/C·Σ_k w_k·(−log ỹ_k) for labels, targets
(1 − s)·y + s/C for maps. sigmoid: binary cross-entropy per (voxel, class), targets y·(1 − s) + s/2, weighted
by class, averaged over every (voxel, class). ``ignore_index`` voxels leave the mean. Computed in float32
(float64 kept), channels-last.
"""

from __future__ import annotations

import numpy as np

from keras import ops
from phidice.core import steps
from phidice.core.config import CEConfig, DiceConfig
from phidice.keras.checks import dtype_of
from phidice.keras.sums import Prepared
from phidice.keras.xp import KERAS


def ce_weight_row(weight, num_channels: int, dtype: str):
    """``ce_weight`` as a (C,) tensor, one value per class."""
    if weight is None:
        return None
    if len(weight) != num_channels:
        raise ValueError(f"ce_weight must have one value per class ({num_channels}); got shape ({len(weight)},)")
    return ops.convert_to_tensor(np.asarray(weight, dtype=dtype))


def xlogy_sum(y, log_p):
    """Σ_c y_c·log p_c (last axis, kept) with 0·log 0 = 0: a −Inf logit where y = 0 adds nothing, not NaN."""
    return ops.sum(ops.where(ops.equal(y, 0), 0.0, y * log_p), axis=-1, keepdims=True)


def cross_entropy(y_pred, prepared: Prepared, config: DiceConfig, ce: CEConfig):
    """The (weighted) mean cross-entropy of channels-last logits ``y_pred`` against a prepared target."""
    x = y_pred if dtype_of(y_pred) == "float64" else ops.cast(y_pred, "float32")
    dtype = dtype_of(x)
    C = x.shape[-1]
    w = ce_weight_row(ce.ce_weight, C, dtype)
    s = ce.label_smoothing
    if config.activation == "softmax":
        logp = ops.log_softmax(x, axis=-1)
        weighted = logp if w is None else logp * w
        if prepared.labels is not None:
            onehot = ops.one_hot(prepared.labels, C, dtype=dtype)
            per = -xlogy_sum(onehot, weighted)
            norm = ops.ones_like(per) if w is None else ops.sum(onehot * w, axis=-1, keepdims=True)
            if s:
                per = (1 - s) * per - s * ops.sum(weighted, axis=-1, keepdims=True) / C
        else:
            y = ops.cast(prepared.dense, dtype)
            if s:
                y = (1 - s) * y + s / C
            per = -xlogy_sum(y, weighted)
            norm = ops.ones_like(per)
    else:  # sigmoid: y·log(1 + e^−x) + (1 − y)·log(1 + e^x), each term 0 where its factor is (±Inf logits)
        y = steps.dense_target(prepared, x, "sigmoid", KERAS)
        if s:
            y = y * (1 - s) + 0.5 * s
        per = ops.where(ops.equal(y, 0), 0.0, y * ops.softplus(-x)) + ops.where(
            ops.equal(y, 1), 0.0, (1 - y) * ops.softplus(x)
        )
        if w is not None:
            per = per * w
        norm = ops.ones_like(per)
    if prepared.mask is not None:
        m = ops.cast(prepared.mask, dtype)
        per, norm = ops.where(ops.equal(m, 0), 0.0, per * m), norm * m  # an ignored voxel's ∞ term: 0
    total, count = ops.sum(per), ops.stop_gradient(ops.sum(norm))
    return total / ops.where(count > 0, count, 1.0)
