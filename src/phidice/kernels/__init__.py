"""Fused, one-hot-free kernels for the per-(b, c) sums (the caller is :func:`phidice.sums.sum_stats`).

Contract:

* ``fused_unsupported_reason(input, prepared, *, activation, squared) -> str | None`` — ``None`` when
  the fused path applies, else a short reason.
* ``fused_stats(logits, labels, *, activation, mask, check_range) -> DiceStats`` — (B, C) sums with an
  autograd backward that writes ∂L/∂logits directly from ∂L/∂(intersection, pred_sum). With
  ``check_range`` it checks that the labels lie in [0, C) ([0, 1] for one sigmoid channel) with the core's
  error, so the caller skips its own pass: the numba kernel gets the range in its forward pass, the others
  run aminmax.

Backends: ``"triton"`` (CUDA), ``"numba"`` (CPU, float32), ``"torch"`` (chunked PyTorch, any device and
dtype). ``"auto"`` picks Triton for CUDA tensors when it imports, numba for float32 CPU tensors, and the
torch fallback otherwise. Force one with :func:`set_backend` or ``PHIDICE_FUSED_BACKEND=torch|numba|triton``.

``fused="auto"`` (the losses' default) does not take the torch fallback on the CPU unless it is forced
(:func:`auto_prefers_reference`): there it is slower than the reference path, so without numba (the base install)
and for float64/fp16/bf16 CPU tensors ``"auto"`` runs the reference path; ``fused=True`` still runs the fallback,
whose extra memory is the gradient plus at most a quarter of the logits.

On the CPU the numba forward keeps the probabilities in a buffer of :mod:`phidice.kernels.buffers`, which becomes
the gradient; the pool hands that memory out again once the gradient is freed (``PHIDICE_CPU_BUFFER_POOL``
bytes, default 1 GiB; :func:`phidice.kernels.buffers.empty_cache`).
"""

from __future__ import annotations

import os

import torch

from phidice.core.checks import check_label_range, is_compiling, is_functorch_tensor
from phidice.core.deps import missing_dependency
from phidice.core.rules import label_upper
from phidice.core.types import DiceStats
from phidice.kernels import cpu, fallback
from phidice.kernels.function import FusedDiceStats, register_backend

BACKENDS = ("auto", "torch", "numba", "triton")
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
_forced: str | None = None
_triton_module = None
_triton_error: str | None = None

register_backend("torch", fallback)
register_backend("numba", cpu)

__all__ = [
    "fused_unsupported_reason",
    "auto_prefers_reference",
    "fused_stats",
    "set_backend",
    "get_backend",
    "select_backend",
    "BACKENDS",
]


def set_backend(name: str | None) -> str | None:
    """Force a backend for the fused path (``None`` or "auto": choose per call); returns the previous one."""
    global _forced
    if name is not None and name not in BACKENDS:
        raise ValueError(f"fused backend must be one of {', '.join(map(repr, BACKENDS))} or None; got {name!r}")
    previous, _forced = _forced, (None if name == "auto" else name)
    return previous


def get_backend() -> str:
    """The forced backend: :func:`set_backend`'s, else ``PHIDICE_FUSED_BACKEND``, else "auto"."""
    if _forced is not None:
        return _forced
    name = os.environ.get("PHIDICE_FUSED_BACKEND", "auto").strip().lower() or "auto"
    if name not in BACKENDS:
        raise ValueError(f"PHIDICE_FUSED_BACKEND must be one of {', '.join(BACKENDS)}; got {name!r}")
    return name


def _triton():
    """The Triton backend module, imported on first use; None when triton is not installed.

    Any other error in importing it (a broken kernel module, an incompatible triton) is raised, not
    hidden behind the slower fallback.
    """
    global _triton_module, _triton_error
    if _triton_module is None and _triton_error is None:
        try:
            from phidice.kernels import triton_dice  # optional backend: imported on first use

            _triton_module = triton_dice
            register_backend("triton", triton_dice)
        except ImportError as err:
            if not missing_dependency(err, "triton"):
                raise
            _triton_error = f"{type(err).__name__}: {err}"
    return _triton_module


def select_backend(device: torch.device, dtype: torch.dtype):
    """(name, module) of the backend that runs tensors of this device and dtype; ValueError if forced and unfit."""
    forced = get_backend()
    if forced == "torch":
        return "torch", fallback
    if forced == "numba":
        if device.type != "cpu" or not cpu.supports(dtype) or not cpu.available():
            why = cpu._import_error or f"it runs float32 CPU tensors only (got {dtype} on {device.type})"
            raise ValueError(f"fused backend 'numba' forced but unavailable: {why}")
        return "numba", cpu
    if forced == "triton":
        if _triton() is None:
            raise ValueError(f"fused backend 'triton' forced but triton does not import: {_triton_error}")
        return "triton", _triton_module
    if device.type == "cuda" and _triton() is not None:
        return "triton", _triton_module
    if device.type == "cpu" and cpu.supports(dtype) and cpu.available():
        return "numba", cpu
    return "torch", fallback


def auto_prefers_reference(device: torch.device, dtype: torch.dtype) -> str | None:
    """Why ``fused="auto"`` takes the reference path although the fused one applies; None when it takes the fused.

    On the CPU, with no backend forced, the chunked PyTorch path (what the fused path is without numba, and for
    float64/fp16/bf16) recomputes the activation in its backward and runs about twice the ops of the reference
    path: measured 1.3–2.8× the reference path's time at (2, 4, 96³), (8, 2, 256²) and (2, 4, 64³) on 2 threads
    (BENCHMARKS.md, "Base install vs MONAI"), so ``"auto"`` must not pick it there. With many classes (C = 16)
    one quiet run had it ahead and a loaded one not; the rule keeps to the measured majority.
    Forcing the backend (:func:`set_backend`, ``PHIDICE_FUSED_BACKEND=torch``) or ``fused=True`` keeps it: it
    needs less memory than the reference path's one-hot and probabilities.
    """
    if device.type != "cpu" or get_backend() != "auto":
        return None
    if select_backend(device, dtype)[0] != "torch":
        return None
    return "on the CPU without numba (or for a dtype numba does not take) the reference path is faster"


def fused_unsupported_reason(input, prepared, *, activation, squared) -> str | None:
    """None when the fused path computes these sums exactly as the reference would; else why not."""
    if prepared.labels is None:
        return "the target is a dense (one-hot or soft) map; the fused path needs integer labels"
    if activation not in ("softmax", "sigmoid"):
        return f"activation={activation!r}; the fused path needs 'softmax' or 'sigmoid' logits"
    if squared:
        return "squared=True (Σ ỹ² denominators) is not fused"
    mask = prepared.mask
    if mask is not None:
        if mask.shape[1] != 1:
            return f"a per-class mask of shape {tuple(mask.shape)} is not fused; it needs one channel (B, 1, *S)"
        if mask.requires_grad:
            return "the mask requires grad; the fused path gives no gradient to the mask"
    if input.dtype not in SUPPORTED_DTYPES:
        return f"dtype {input.dtype} has no fused kernel (float32, float64, float16, bfloat16)"
    if input.device.type not in ("cpu", "cuda"):
        return f"device {input.device.type!r} has no fused kernel"
    if input.numel() == 0:
        return "empty input"
    if is_functorch_tensor(input):
        return (
            "a torch.func transform (grad, vmap, jacrev, ...) runs on the input and the fused kernels are opaque "
            "to it; fused='auto' or False takes the reference path there"
        )
    return None


def fused_stats(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    activation: str,
    mask: torch.Tensor | None = None,
    check_range: bool = True,
) -> DiceStats:
    """Per-(b, c) sums of all C classes via the fused kernels, differentiable w.r.t. ``logits``.

    ``labels`` (B, *S) integers (ignored voxels already 0 and masked out); ``mask`` (B, 1, *S) or None.
    ``check_range=False`` skips the label range check on the Triton and torch backends (one host
    synchronisation); the numba kernel gets the range in its own pass and always checks it.
    The kernels run inside the custom operators of :mod:`phidice.kernels.function`, which ``torch.compile`` keeps
    in its graph (no graph break) and ``torch.export`` exports.
    """
    B, C = logits.shape[:2]
    x = logits.reshape(B, C, -1)
    if not x.is_contiguous():
        x = x.contiguous()
    lab = labels.reshape(B, -1)
    if lab.dtype != torch.long or not lab.is_contiguous():
        lab = lab.long().contiguous()
    m = None
    if mask is not None:
        m = mask.detach().reshape(B, -1)
        m = m.to(torch.float64 if x.dtype == torch.float64 else torch.float32).contiguous()
    name, _ = select_backend(logits.device, logits.dtype)
    compiling = is_compiling()
    if name != "numba" and check_range and not compiling:  # eager: checked here, where dispatch modes see it
        check_label_range(lab, label_upper(C, activation))
    # in a compiled graph the op checks the range itself, on the real labels (numba: always, in its own pass)
    return DiceStats(*FusedDiceStats.apply(x, lab, m, activation, name, check_range and compiling))
