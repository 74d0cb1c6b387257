"""Argument checking shared by every loss, metric and diagnostic: clear errors that name the argument."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

ACTIVATIONS = ("softmax", "sigmoid", None)
REDUCTIONS = ("mean", "sum", "none")
EMPTY_MODES = ("smooth", "skip")
WEIGHTINGS = (None, "generalized", "generalized_simple")


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        shown = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {shown}; got {value!r}")


def check_activation(activation):
    if isinstance(activation, str):
        activation = activation.lower()
    check_choice("activation", activation, ACTIVATIONS)
    return activation


def per_class(value, name: str, num_channels: int, include_background: bool, *, device, dtype,
              allow_none: bool = False) -> torch.Tensor | None:
    """A float or a per-class sequence → a scalar tensor () or a (C',) tensor aligned with the class axis.

    A per-class value may have length C (the input's channels; the background entry is dropped when
    ``include_background=False``) or C − 1 (already without background). Values must be finite and ≥ 0.
    """
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a non-negative number or a sequence of one per class; got None")
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a sequence of numbers; got bool")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be finite and ≥ 0; got {value}")
        return torch.tensor(float(value), device=device, dtype=dtype)
    if isinstance(value, torch.Tensor):
        t = value.detach().to(device=device, dtype=dtype)
    elif isinstance(value, Sequence) or hasattr(value, "__array__"):
        try:
            t = torch.as_tensor(value, dtype=dtype, device=device)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a number or a sequence of numbers; got {value!r}") from err
    else:
        raise TypeError(f"{name} must be a number or a sequence of numbers; got {type(value).__name__}")
    if t.ndim == 0:
        t = t.reshape(())
    elif t.ndim != 1:
        raise ValueError(f"{name} must be a scalar or 1-D (one value per class); got shape {tuple(t.shape)}")
    else:
        drop_bg = not include_background and num_channels > 1
        expected = num_channels - 1 if drop_bg else num_channels
        if t.numel() == num_channels and drop_bg:
            t = t[1:]
        elif t.numel() != expected:
            extra = f" or {num_channels} (with background, dropped)" if drop_bg else ""
            raise ValueError(
                f"{name} has {t.numel()} values but the input has {num_channels} classes: expected "
                f"{expected}{extra} values, one per class along dim 1"
            )
    if not _is_compiling():
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} must be finite; got {value!r}")
        if bool((t < 0).any()):
            raise ValueError(f"{name} must be ≥ 0; got {value!r}")
    return t
