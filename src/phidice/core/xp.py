"""The few array operations of Eq. 3/4 (:mod:`phidice.equations`), for torch tensors.

The equations are written once against this small namespace; :mod:`phidice.keras` gives the same
operations on ``keras.ops``, so the numbers of both frameworks come from one definition.
"""

from __future__ import annotations

import builtins

import torch


class TorchOps:
    """Array operations on torch tensors; reductions keep their axis."""

    @staticmethod
    def sum(x, axis):
        return x.sum(axis, keepdim=True)

    @staticmethod
    def total(x):
        """Σ over every element: a 0-d tensor."""
        return x.sum()

    @staticmethod
    def amax(x, axis):
        return x.amax(axis, keepdim=True)

    @staticmethod
    def all(x, axis):
        return x.all(axis, keepdim=True)

    @staticmethod
    def where(condition, a, b):
        return torch.where(condition, a, b)

    @staticmethod
    def ones_like(x):
        return torch.ones_like(x)

    @staticmethod
    def isinf(x):
        return torch.isinf(x)

    @staticmethod
    def float(x, like):
        """``x`` (bool or number tensor) in the dtype of the tensor ``like``."""
        return x.to(like.dtype)

    @staticmethod
    def stop_gradient(x):
        return x.detach()

    @staticmethod
    def power(x, exponent: builtins.float):  # builtins: float is a method of this class
        return x.pow(exponent)

    @staticmethod
    def maximum(x, value: builtins.float):
        return x.clamp_min(value)

    @staticmethod
    def size(x) -> int:
        return x.numel()

    @staticmethod
    def concat(xs, axis: int):
        return torch.cat(list(xs), dim=axis)


TORCH = TorchOps()
