"""Checks of Keras inputs: shapes when the graph is built, values when they exist.

Shapes are static in Keras (a dimension may be None while TensorFlow traces with an unknown batch size;
such a dimension is not compared). Values — the label range, maps in [0, 1], the ``annotated`` flags —
exist in an eager call (and always on the PyTorch back end), where a bad value raises the error the PyTorch
losses raise. Under ``jax.jit`` or ``tf.function`` (``model.fit`` on JAX and TensorFlow) they do not: there a
failed check makes the loss NaN instead of a silently wrong number (``keras.callbacks.TerminateOnNaN``
stops the run). ``validate_args=False`` skips the value checks altogether.
"""

from __future__ import annotations

import sys

import numpy as np

import keras
from keras import ops


def concrete(x):
    """``x`` as a NumPy array when its values exist now, else None (traced by jit, tf.function or Keras)."""
    if isinstance(x, keras.KerasTensor):
        return None
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    elif backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return None
    elif backend == "torch":
        compiler = getattr(sys.modules.get("torch"), "compiler", None)  # already imported by Keras
        if compiler is not None and compiler.is_compiling():
            return None
    return ops.convert_to_numpy(x)


class Checks:
    """The value checks of one loss call.

    ``require(bad, error)``: with concrete values, raise ``error()`` when ``bad`` holds anywhere; while traced,
    remember ``bad`` so that :meth:`guard` turns the loss into NaN. ``always=True`` marks a check that runs
    even with ``validate_args=False`` (``check_finite``, as in PyTorch).
    """

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.pending: list = []

    def require(self, bad, error, *, always: bool = False) -> None:
        if not (self.enabled or always):
            return
        flag = ops.any(bad)  # reduced where the tensor lives: one boolean reaches the host
        value = concrete(flag)
        if value is None:
            self.pending.append(flag)
        elif bool(value):
            raise error()

    def guard(self, loss):
        """``loss``, or NaN where a check that could not run eagerly failed."""
        if not self.pending:
            return loss
        bad = self.pending[0]
        for more in self.pending[1:]:
            bad = ops.logical_or(bad, more)
        return ops.where(bad, ops.cast(float("nan"), loss.dtype), loss)


def known_equal(a, b) -> bool:
    """Two dimensions agree, or one of them is not known yet."""
    return a is None or b is None or a == b


def shapes_agree(a, b) -> bool:
    return len(a) == len(b) and all(known_equal(x, y) for x, y in zip(a, b))


def dtype_of(x) -> str:
    return keras.backend.standardize_dtype(x.dtype)


def is_float(dtype: str) -> bool:
    return "float" in dtype


def is_integer(dtype: str) -> bool:
    return dtype.startswith(("int", "uint"))


def value_range(x) -> tuple[int, int]:
    """(min, max) of a concrete integer tensor, for an error message."""
    v = concrete(x)
    return int(np.min(v)), int(np.max(v))


def nonfinite_where(x, channels_first: bool) -> str:
    """Where a concrete ``x`` holds NaN or ±Inf, in the words of the PyTorch check: how many, and the first
    (batch item, channel, voxel). Empty when the values do not exist (traced)."""
    v = concrete(x)
    if v is None:
        return ""
    v = np.asarray(v, dtype=np.float64)
    if not channels_first:
        v = np.moveaxis(v, -1, 1)
    bad = np.argwhere(~np.isfinite(v))
    if not len(bad):
        return ""
    counts = ", ".join(
        f"{n} {what}"
        for what, n in (
            ("NaN", int(np.isnan(v).sum())),
            ("+Inf", int(np.isposinf(v).sum())),
            ("-Inf", int(np.isneginf(v).sum())),
        )
        if n
    )
    b, c, *voxel = (int(i) for i in bad[0])
    return f": {counts} of {v.size} values; the first at batch item {b}, channel {c}, voxel {tuple(voxel)}"
