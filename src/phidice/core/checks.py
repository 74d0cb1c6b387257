"""Checks of tensors against each other and of their values, with errors that name the argument.

The value checks (label range, values in [0, 1], finiteness) read a tensor back to the host: one
synchronisation each on a GPU. Callers skip them with ``validate_args=False`` (see
:class:`phidice.core.config.DiceConfig`) and always skip them while ``torch.compile`` traces.
"""

from __future__ import annotations

import sys

import torch


def is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())


def is_functorch_tensor(t) -> bool:
    """Whether ``t`` is a tensor of a running ``torch.func`` transform (``grad``, ``vmap``, ...): its values
    cannot be read on the host (``.item()`` raises under ``vmap``), and opaque kernels cannot run on it.
    False while ``torch.compile`` traces (the functorch query is not traceable; a compiled graph's tensors are
    plain)."""
    if is_compiling():
        return False
    wrapped = getattr(getattr(torch._C, "_functorch", None), "is_functorch_wrapped_tensor", None)
    return bool(wrapped is not None and isinstance(t, torch.Tensor) and wrapped(t))


def plain_tensor(t):
    """``t`` as a plain ``torch.Tensor`` when it is a MONAI ``MetaTensor``; anything else as it is.

    A view (no copy) on the same autograd graph. MetaTensor's ``__torch_function__`` copies its metadata into
    the result of every op: about 10× the time of the reference path on a (2, 4, 32, 32) batch, and a
    MetaTensor loss. MONAI is never imported here: without it loaded, no MetaTensor exists.
    """
    if is_compiling():
        return t
    module = sys.modules.get("monai.data.meta_tensor")
    if module is not None and isinstance(t, module.MetaTensor):
        return t.as_subclass(torch.Tensor)
    return t


def check_input(input: torch.Tensor, activation, check_finite: bool = False) -> None:
    """``input`` is a float (B, C, *spatial) tensor that fits the activation."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"input must be a torch.Tensor of shape (B, C, *spatial); got {type(input).__name__}")
    if input.ndim < 3:
        raise ValueError(
            f"input must have shape (B, C, *spatial) with at least one spatial dim; got shape {tuple(input.shape)}"
        )
    if input.shape[0] == 0:
        raise ValueError(f"input is an empty batch (B = 0); got shape {tuple(input.shape)}")
    if input.shape[1] == 0 or any(s == 0 for s in input.shape[2:]):
        raise ValueError(f"input has a zero-sized class or spatial dim; got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        if activation is not None:
            raise TypeError(f"input has integer dtype {input.dtype} but activation={activation!r} expects float logits")
        raise TypeError(f"input must be a floating-point tensor of probabilities; got dtype {input.dtype}")
    if activation == "softmax" and input.shape[1] < 2:
        raise ValueError(
            "activation='softmax' needs at least 2 channels (softmax over one channel is constant 1); "
            "use activation='sigmoid' for a single binary channel"
        )
    if check_finite and not is_compiling():
        check_all_finite(input, "input")


def check_all_finite(t: torch.Tensor, name: str) -> None:
    """ValueError naming where ``t`` (B, C, *S) holds NaN or ±Inf: how many, and the first (image, channel, voxel).

    One reduction read back to the host (only ``check_finite=True`` calls it); the location is looked up
    only when the check fails.
    """
    finite = torch.isfinite(t)
    if bool(finite.all()):
        return
    bad = ~finite
    first = tuple(int(i) for i in bad.nonzero()[0])
    counts = ", ".join(
        f"{int(n)} {what}"
        for what, n in (
            ("NaN", torch.isnan(t).sum()),
            ("+Inf", torch.isposinf(t).sum()),
            ("-Inf", torch.isneginf(t).sum()),
        )
        if n
    )
    where = f"batch item {first[0]}" + (f", channel {first[1]}, voxel {first[2:]}" if t.ndim > 2 else "")
    raise ValueError(
        f"{name} contains NaN or Inf (check_finite=True): {counts} of {t.numel()} values; the first at {where}"
    )


def check_label_range(
    labels: torch.Tensor, upper: int, *, ignore_index: int | None = None, lo: int | None = None, hi: int | None = None
) -> None:
    """ValueError unless every label lies in [0, upper); ``lo``/``hi`` when the caller already has them."""
    if lo is None or hi is None:
        lo, hi = (int(v) for v in torch.aminmax(labels))  # one pass over the labels
    if lo < 0 or hi >= upper:
        extra = "" if ignore_index is None else f" (ignore_index={ignore_index} excepted)"
        raise ValueError(f"target labels must lie in [0, {upper - 1}]{extra}; got values in [{lo}, {hi}]")


def check_unit_interval(t: torch.Tensor, message: str) -> None:
    """ValueError(message) unless every value of ``t`` lies in [0, 1]; a NaN does not (it says how many)."""
    if not bool(((t >= 0) & (t <= 1)).all()):  # one reduction; NaN fails both comparisons
        nan = int(torch.isnan(t).sum()) if t.is_floating_point() else 0
        raise ValueError(message + (f" (it holds {nan} NaN)" if nan else ""))


def check_mask(mask: torch.Tensor, input: torch.Tensor, *, values: bool = True) -> torch.Tensor:
    """``mask`` as a float (B, 1, *S) or (B, C, *S) tensor fitting ``input``; ``values``: check it is in [0, 1]."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a torch.Tensor; got {type(mask).__name__}")
    B, C = input.shape[:2]
    spatial = tuple(input.shape[2:])
    if mask.ndim == input.ndim - 1 and tuple(mask.shape) == (B, *spatial):
        mask = mask.unsqueeze(1)
    if mask.ndim != input.ndim or mask.shape[0] != B or mask.shape[1] not in (1, C) or tuple(mask.shape[2:]) != spatial:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not fit input shape {tuple(input.shape)}: expected "
            f"(B, *spatial), (B, 1, *spatial) or (B, C, *spatial)"
        )
    if mask.dtype == torch.bool or not mask.is_floating_point():
        mask = mask.to(torch.float32)
    if values and not is_compiling():
        check_unit_interval(mask, "mask values must lie in [0, 1]")
    return mask
