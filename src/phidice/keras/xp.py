"""The array operations of Eq. 3/4 (:mod:`phidice.equations`) on ``keras.ops``.

:class:`KerasOps` has the methods of :class:`phidice.core.xp.TorchOps`, so the Keras losses run the very
steps the PyTorch losses run — subset sums of Φ, inner and outer weights, ε per subset φ, the ratio — on
any Keras back end. Reductions keep their axis.
"""

from __future__ import annotations

import builtins
import math

from keras import ops


class KerasOps:
    """Array operations on Keras tensors (TensorFlow, JAX or PyTorch underneath)."""

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


KERAS = KerasOps()
