"""The few array operations of Eq. 3/4 (:mod:`phidice.equations`) and of the steps before them
(:mod:`phidice.core.steps`), for torch tensors, channels-first.

The equations and steps are written once against this small namespace; :mod:`phidice.keras` gives the same
operations on ``keras.ops`` (channels-last), so the numbers of both frameworks come from one definition.
"""

from __future__ import annotations

import builtins

import torch
import torch.nn.functional as F


class TorchOps:
    """Array operations on torch tensors; reductions keep their axis. The classes lie on dim 1."""

    class_axis = 1

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

    @staticmethod
    def float32(x):
        """``x`` in float32, float64 kept (the dtype every activation and loss term runs in)."""
        return x if x.dtype == torch.float64 else x.float()

    @staticmethod
    def constant(value, like):
        """A number, tuple or tensor as a tensor of ``like``'s dtype on its device."""
        if isinstance(value, torch.Tensor):
            return value.to(like.device, like.dtype)
        return torch.tensor(value, dtype=like.dtype, device=like.device)

    @staticmethod
    def softmax(x, axis: int):
        return torch.softmax(x, dim=axis)

    @staticmethod
    def log_softmax(x, axis: int):
        return torch.log_softmax(x, dim=axis)

    @staticmethod
    def sigmoid(x):
        return torch.sigmoid(x)

    @staticmethod
    def log_sigmoid(x):
        return F.logsigmoid(x)

    @staticmethod
    def softplus(x):
        """log(1 + eˣ) as logaddexp(x, 0): exact, where ``F.softplus`` cuts off at x > 20."""
        return torch.logaddexp(x, torch.zeros_like(x))

    @staticmethod
    def exp(x):
        return x.exp()

    @staticmethod
    def abs(x):
        return x.abs()

    @staticmethod
    def one_hot(labels, like, axis: int):
        """One-hot of integer ``labels`` along ``axis``, of ``like``'s shape and dtype (a scatter, no copy)."""
        return torch.zeros_like(like).scatter_(axis, labels.unsqueeze(axis), 1.0)

    @staticmethod
    def expand_dims(x, axis: int):
        return x.unsqueeze(axis)

    @staticmethod
    def reshape(x, shape):
        return x.reshape(shape)

    @staticmethod
    def voxel_sum(x):
        """(B, C) Σ over the voxels of a (B, C, *S) tensor."""
        return x.reshape(x.shape[0], x.shape[1], -1).sum(-1)


TORCH = TorchOps()
