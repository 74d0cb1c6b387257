"""The per-(image, class) sums of Eq. 3 from Keras logits and targets: the only numbers the Keras losses
compute themselves.

For probabilities ỹ (after the activation, in float32), targets y and a voxel mask m (``ignore_index``),
per image b and class c: I = Σ m·y·ỹ, P = Σ m·ỹ (Σ m·ỹ² when squared) and Y = Σ m·y (Σ m·y²), as (B, C)
tensors — the :class:`~phidice.core.types.DiceStats` that :mod:`phidice.equations` turns into the loss.
Target preparation mirrors :func:`phidice.sums.prepare_target`: integer labels (B, *S) or with a
one-wide class axis, float labels holding integers, one-hot or soft maps, bool maps as float.
"""

from __future__ import annotations

from typing import NamedTuple

from keras import ops
from phidice.core import steps
from phidice.core.config import DiceConfig
from phidice.core.rules import label_upper
from phidice.core.types import DiceStats
from phidice.keras.checks import Checks, dtype_of, is_float, is_integer, nonfinite_where, shapes_agree, value_range
from phidice.keras.layout import Layout
from phidice.keras.xp import KERAS


class Prepared(NamedTuple):
    """A target in one of two forms, channels-last: labels (B, *S) int32 with ignored voxels set to 0, or a
    dense (B, *S, C) float map; ``mask`` (B, *S, 1) float marks the voxels that count (None: all)."""

    labels: object
    dense: object
    mask: object


def check_pred(y_pred, config: DiceConfig, layout: Layout, checks: Checks) -> int:
    """``y_pred`` is a float (B, *spatial, C) (or channels-first) tensor that fits the activation; returns C."""
    shape = tuple(y_pred.shape)
    if len(shape) < 3:
        raise ValueError(f"y_pred must have shape {layout.pred} with at least one spatial dim; got shape {shape}")
    if shape[0] == 0:
        raise ValueError(f"y_pred is an empty batch (B = 0); got shape {shape}")
    if any(d == 0 for d in shape[1:]):
        raise ValueError(f"y_pred has a zero-sized class or spatial dim; got shape {shape}")
    C = layout.channels(shape)
    if C is None:
        raise ValueError(f"y_pred must have a known number of classes C on {layout.axis_name}; got shape {shape}")
    dtype = dtype_of(y_pred)
    if not is_float(dtype):
        if config.activation is not None:
            raise TypeError(
                f"y_pred has integer dtype {dtype} but activation={config.activation!r} expects float logits"
            )
        raise TypeError(f"y_pred must be a floating-point tensor of probabilities; got dtype {dtype}")
    if config.activation == "softmax" and C < 2:
        raise ValueError(
            "activation='softmax' needs at least 2 channels (softmax over one channel is constant 1); "
            "use activation='sigmoid' for a single binary channel"
        )
    if config.check_finite:
        checks.require(
            ops.logical_not(ops.isfinite(y_pred)),
            lambda: ValueError(
                "y_pred contains NaN or Inf (check_finite=True)" + nonfinite_where(y_pred, layout.first)
            ),
            always=True,
        )
    return C


def is_map(y_true, pred_shape, layout: Layout) -> bool:
    """A ``y_true`` of ``y_pred``'s shape is a one-hot or soft map — float, bool, or integer with C > 1
    (``one_hot(y, C)``; with C = 1 integers are the labels {0, 1}); anything else holds labels."""
    dtype = dtype_of(y_true)
    if not shapes_agree(tuple(y_true.shape)[1:], tuple(pred_shape)[1:]):
        return False
    return not is_integer(dtype) or (layout.channels(pred_shape) or 0) > 1


def label_tensor(y_true, pred_shape, layout: Layout, checks: Checks):
    """A label target (B, *S) or with a one-wide class axis, integer or integer-valued float, as (B, *S) int32."""
    tshape = tuple(y_true.shape)
    lab = y_true
    if len(tshape) == len(pred_shape) and layout.channels(tshape) == 1:
        lab = layout.squeeze_channel(y_true)
    spatial = layout.spatial(pred_shape)
    if not shapes_agree(tuple(lab.shape)[1:], spatial):
        B = pred_shape[0]
        first = (B, 1, *spatial) if layout.first else (B, *spatial, 1)
        raise ValueError(
            f"y_true shape {tshape} (dtype {dtype_of(y_true)}) does not fit y_pred shape {tuple(pred_shape)}: "
            f"expected labels "
            f"{layout.labels} = {(B, *spatial)} or {first}, or a float map {layout.pred} = {tuple(pred_shape)}"
        )
    if is_float(dtype_of(lab)):
        checks.require(
            ops.not_equal(lab, ops.round(lab)),
            lambda: ValueError(
                f"y_true of shape {tshape} is read as labels (y_pred has C={layout.channels(pred_shape)} classes), "
                f"yet it holds non-integer values"
            ),
        )
    return ops.cast(lab, "int32")


def prepare_target(y_true, pred_shape, config: DiceConfig, layout: Layout, checks: Checks) -> Prepared:
    """Check ``y_true`` against ``y_pred``'s shape and bring it to labels or a dense map, channels-last.

    Value checks (label range, maps in [0, 1], integer-valued float labels) run through ``checks``.
    """
    y_true = ops.convert_to_tensor(y_true)
    dtype = dtype_of(y_true)
    if "complex" in dtype or dtype == "string":
        raise TypeError(f"y_true must be integer labels or a float/bool map; got dtype {dtype}")
    tshape, B = tuple(y_true.shape), pred_shape[0]
    if not tshape or (tshape[0] is not None and B is not None and tshape[0] != B):
        raise ValueError(
            f"y_true batch size {tshape[0] if tshape else None} does not match y_pred batch size {B} "
            f"(y_pred {tuple(pred_shape)}, y_true {tshape})"
        )
    if dtype == "bool" or (is_integer(dtype) and is_map(y_true, pred_shape, layout)):
        y_true = ops.cast(y_true, "float32")
    if is_map(y_true, pred_shape, layout):
        if config.ignore_index is not None:
            raise ValueError(
                "ignore_index applies to integer label targets; a one-hot/soft y_true (a map of "
                "y_pred's shape) has no labels to ignore"
            )
        if config.check_finite:
            checks.require(
                ops.logical_not(ops.isfinite(y_true)),
                lambda: ValueError("y_true contains NaN or Inf (check_finite=True)"),
                always=True,
            )
        checks.require(
            ops.logical_not(ops.logical_and(y_true >= 0, y_true <= 1)),  # NaN fails both
            lambda: ValueError("y_true values must lie in [0, 1] (one-hot or soft maps)"),
        )
        return Prepared(None, layout.to_last(y_true), None)
    labels = label_tensor(y_true, pred_shape, layout, checks)
    valid = None
    if config.ignore_index is not None:
        valid = ops.not_equal(labels, config.ignore_index)
        labels = ops.where(valid, labels, 0)
    check_label_range(labels, label_upper(layout.channels(pred_shape), config.activation), config.ignore_index, checks)
    mask = None if valid is None else ops.cast(ops.expand_dims(valid, -1), "float32")
    return Prepared(labels, None, mask)


def check_label_range(labels, upper: int, ignore_index, checks: Checks) -> None:
    extra = "" if ignore_index is None else f" (ignore_index={ignore_index} excepted)"

    def error():
        lo, hi = value_range(labels)
        return ValueError(f"y_true labels must lie in [0, {upper - 1}]{extra}; got values in [{lo}, {hi}]")

    checks.require(ops.logical_or(labels < 0, labels >= upper), error)


def sum_stats(y_pred, prepared: Prepared, config: DiceConfig) -> DiceStats:
    """(B, C) sums of every channel from channels-last logits (or probabilities), differentiable."""
    probs = steps.activate(y_pred, config.activation, KERAS)
    y = steps.dense_target(prepared, probs, config.activation, KERAS)
    return steps.reference_stats(probs, y, prepared.mask, config.squared, config.soft_label, KERAS)
