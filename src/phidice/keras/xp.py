"""The array operations of Eq. 3/4 (:mod:`phidice.equations`) on ``keras.ops``.

:class:`KerasOps` has the methods of :class:`phidice.core.xp.TorchOps`, so the Keras losses run the very
steps the PyTorch losses run — the probabilities, targets and sums of :mod:`phidice.core.steps`, subset sums
of Φ, inner and outer weights, ε per subset φ, the ratio — on any Keras back end. Reductions keep their axis;
the classes lie on the last axis (the losses move them there).
"""

from __future__ import annotations

import builtins
import math

import numpy as np

from keras import ops
from phidice.keras.checks import dtype_of


class KerasOps:
    """Array operations on Keras tensors (TensorFlow, JAX or PyTorch underneath), channels-last."""

    class_axis = -1

    @staticmethod
    def sum(x, axis):
        return ops.sum(x, axis=axis, keepdims=True)

    @staticmethod
    def total(x):
        """Σ over every element: a 0-d tensor."""
        return ops.sum(x)

    @staticmethod
    def amax(x, axis):
        return ops.max(x, axis=axis, keepdims=True)

    @staticmethod
    def all(x, axis):
        return ops.all(x, axis=axis, keepdims=True)

    @staticmethod
    def where(condition, a, b):
        return ops.where(condition, a, b)

    @staticmethod
    def ones_like(x):
        return ops.ones_like(x)

    @staticmethod
    def isinf(x):
        return ops.isinf(x)

    @staticmethod
    def float(x, like):
        """``x`` (bool or number tensor) in the dtype of the tensor ``like``."""
        return ops.cast(x, like.dtype)

    @staticmethod
    def stop_gradient(x):
        return ops.stop_gradient(x)

    @staticmethod
    def power(x, exponent: builtins.float):  # builtins: float is a method of this class
        return ops.power(x, exponent)

    @staticmethod
    def maximum(x, value: builtins.float):
        return ops.maximum(x, value)

    @staticmethod
    def size(x):
        """The number of elements: a Python int when the shape is static, else a tensor of ``x``'s dtype
        (TensorFlow may trace a function with an unknown batch size)."""
        if all(d is not None for d in x.shape):
            return math.prod(x.shape)
        return ops.cast(ops.size(x), x.dtype)

    @staticmethod
    def concat(xs, axis: int):
        return ops.concatenate(list(xs), axis=axis)

    @staticmethod
    def float32(x):
        """``x`` in float32, float64 kept (the dtype every activation and loss term runs in)."""
        return x if dtype_of(x) == "float64" else ops.cast(x, "float32")

    @staticmethod
    def constant(value, like):
        """A number or tuple as a tensor of ``like``'s dtype."""
        return ops.convert_to_tensor(np.asarray(value, dtype=dtype_of(like)))

    @staticmethod
    def softmax(x, axis: int):
        return ops.softmax(x, axis=axis)

    @staticmethod
    def log_softmax(x, axis: int):
        return ops.log_softmax(x, axis=axis)

    @staticmethod
    def sigmoid(x):
        return ops.sigmoid(x)

    @staticmethod
    def log_sigmoid(x):
        return ops.log_sigmoid(x)

    @staticmethod
    def softplus(x):
        return ops.softplus(x)

    @staticmethod
    def exp(x):
        return ops.exp(x)

    @staticmethod
    def abs(x):
        return ops.abs(x)

    @staticmethod
    def one_hot(labels, like, axis: int):
        """One-hot of integer ``labels`` along ``axis``, of ``like``'s shape and dtype."""
        return ops.one_hot(labels, like.shape[axis], axis=axis, dtype=dtype_of(like))

    @staticmethod
    def expand_dims(x, axis: int):
        return ops.expand_dims(x, axis)

    @staticmethod
    def reshape(x, shape):
        return ops.reshape(x, shape)

    @staticmethod
    def voxel_sum(x):
        """(B, C) Σ over the voxels of a (B, *S, C) tensor."""
        return ops.sum(x, axis=tuple(range(1, len(x.shape) - 1)))


KERAS = KerasOps()
