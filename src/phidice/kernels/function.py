"""The fused path as two PyTorch custom operators: one-hot-free sums forward, Eq. 4 through the activation backward.

``torch.ops.phidice.fused_sums`` returns, per image b and class c, I = Σ m·p_c·[y = c], P = Σ m·p_c and
Y = Σ m·[y = c] (Y carries no gradient). Since the loss depends on the logits only through I and P, its
backward, ``torch.ops.phidice.fused_sums_backward``, needs just the incoming (B, C) gradients gI = ∂L/∂I,
gP = ∂L/∂P — Eq. 4's two values per entry (y = 0: gP; y = 1: gP + gI), which autograd brings back through the
same Eq. 3 steps (:mod:`phidice.equations`) that :func:`phidice.dice_gradient` evaluates in closed form (tested
equal). With g_c = gP[b, c] + gI[b, c]·[y = c],

    softmax: ∂L/∂z_c = m·p_c·(g_c − Σ_k p_k g_k)        sigmoid: ∂L/∂z_c = m·g_c·p_c·(1 − p_c)

recomputed voxel by voxel from the logits; no one-hot is ever held.

Both are ``torch.library.custom_op``s with a fake (meta) implementation and a registered autograd formula, so
``torch.compile(..., fullgraph=True)`` and ``torch.export`` keep them in the graph as opaque nodes: the kernels
(numba, Triton, the chunked PyTorch path, chosen by the ``backend`` name) run inside them, on real tensors, and
so does the label range check (``check_range``), which therefore also holds in a compiled graph.

Eager calls on real tensors (no compiler, no fake or functional tensors) take :class:`EagerFusedSums`, an
``autograd.Function`` around the same backend functions and the same backward (:func:`_gradient`): it skips the
dispatcher's per-call work, and where the backend keeps them (numba: ``STORES_PROBABILITIES``) the forward
writes the probabilities into a (B, C, N) buffer that the backward overwrites with the gradient — one
activation per logit instead of two, for the memory the gradient needs anyway. On the CPU that buffer comes
from :mod:`phidice.kernels.buffers`, which reuses the memory of the previous step's once it is freed. A second
backward of the same graph (``retain_graph=True``) recomputes.

Higher-order gradients (``create_graph=True``: a Hessian, a gradient penalty, meta-learning): the registered
autograd formula then takes the backward of the chunked PyTorch path (:func:`phidice.kernels.fallback.backward`),
made of differentiable torch ops, so that autograd differentiates the gradient itself; the backward op's own
kernels have no graph. (``once_differentiable`` would not do: its error node hangs off detached copies of the
incoming gradients, so a second derivative came back as "unused", i.e. zeros in a Hessian.)
"""

from __future__ import annotations

import torch

from phidice.core.checks import check_label_range, is_compiling
from phidice.core.rules import label_upper
from phidice.kernels import buffers, fallback

__all__ = ["fused_sums", "fused_sums_backward", "EagerFusedSums", "FusedDiceStats", "register_backend"]

_BACKENDS: dict = {}  # name → module with forward/backward (filled by phidice.kernels)


def register_backend(name: str, module) -> None:
    """Make ``module`` (its ``forward``/``backward``) the kernels that the ops run for ``backend=name``."""
    _BACKENDS[name] = module


def _narrow_dtype(C: int) -> torch.dtype:
    return torch.uint8 if C <= 256 else torch.int32


@torch.library.custom_op("phidice::fused_sums", mutates_args=())
def fused_sums(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    activation: str,
    backend: str,
    check_range: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(I, P, Y) (B, C) and the labels the backward reads: the numba kernel's narrowed uint8/int32 copy (B, N),
    an empty tensor for the other backends (their backward reads ``labels`` itself).

    logits (B, C, N) contiguous, labels (B, N) int64, mask (B, N) or None. ``check_range`` raises the core's
    error for a label outside [0, C) ([0, 1] for one sigmoid channel); the numba kernel always checks it.
    """
    inter, pred, tgt, saved = _forward(logits, labels, mask, activation, backend, check_range)
    return inter.clone(), pred.clone(), tgt.clone(), saved  # (B, C) each: outputs may not share storage


def _forward(logits, labels, mask, activation, backend, check_range, probs=None):
    """The backend's (I, P, Y) and the labels its backward reads (empty where that is ``labels`` itself), for the
    op and :class:`EagerFusedSums` alike; ``probs``: the buffer a storing backend writes p into."""
    if backend != "numba" and check_range:  # the numba forward gets the range in its own pass
        check_label_range(labels, label_upper(logits.shape[1], activation))
    stored = {} if probs is None else {"probs": probs}
    inter, pred, tgt, saved = _BACKENDS[backend].forward(logits, labels, mask, activation, **stored)
    return inter, pred, tgt, (saved if backend == "numba" else labels.new_empty(0))


def _save(ctx, logits, labels, saved, mask, activation, backend):
    """What both backwards read: the logits, the labels (numba's narrowed copy), the mask and the names."""
    ctx.save_for_backward(logits, saved if backend == "numba" else labels, mask)
    ctx.activation, ctx.backend = activation, backend
    ctx.set_materialize_grads(False)  # else autograd fills zero "gradients" of Y and the saved labels


@fused_sums.register_fake
def _(logits, labels, mask, activation, backend, check_range):
    B, C = logits.shape[:2]
    dt = torch.float64 if logits.dtype == torch.float64 else torch.float32
    sums = [logits.new_empty((B, C), dtype=dt) for _ in range(3)]
    saved = labels.new_empty(labels.shape, dtype=_narrow_dtype(C)) if backend == "numba" else labels.new_empty(0)
    return (*sums, saved)


@torch.library.custom_op("phidice::fused_sums_backward", mutates_args=())
def fused_sums_backward(
    logits: torch.Tensor,
    labels: torch.Tensor,
    mask: torch.Tensor | None,
    g_inter: torch.Tensor,
    g_pred: torch.Tensor,
    activation: str,
    backend: str,
) -> torch.Tensor:
    """∂L/∂logits (B, C, N) in the logits' dtype from gI = ∂L/∂I and gP = ∂L/∂P (both (B, C)); ``labels`` are
    those the forward saved (the narrowed copy for numba)."""
    return _BACKENDS[backend].backward(logits, labels, mask, g_inter, g_pred, activation)


@fused_sums_backward.register_fake
def _(logits, labels, mask, g_inter, g_pred, activation, backend):
    return torch.empty_like(logits)


def _setup_context(ctx, inputs, output):
    logits, labels, mask, activation, backend, _ = inputs
    _save(ctx, logits, labels, output[3], mask, activation, backend)
    ctx.mark_non_differentiable(output[2], output[3])


def _gradient(ctx, g_inter, g_pred, kernel) -> torch.Tensor:
    """∂L/∂logits from gI, gP (None: that sum is unused); ``kernel(logits, labels, mask, gI, gP)`` the
    recomputing backward, ``ctx.probs`` (when set) the stored probabilities to overwrite instead."""
    logits, labels, mask = ctx.saved_tensors
    if g_inter is None or g_pred is None:
        zero = logits.new_zeros(logits.shape[:2])
        g_inter, g_pred = (zero if g_inter is None else g_inter), (zero if g_pred is None else g_pred)
    if torch.is_grad_enabled():  # create_graph=True: a backward that autograd can differentiate again
        return fallback.backward(logits, labels.long(), mask, g_inter, g_pred, ctx.activation)
    probs = getattr(ctx, "probs", None)
    if probs is not None:  # taken over once; a second backward (retain_graph=True) recomputes
        ctx.probs = None
        _BACKENDS[ctx.backend].backward_stored(probs, labels, mask, g_inter, g_pred, ctx.activation)
        return probs
    return kernel(logits, labels, mask, g_inter, g_pred)


def _backward(ctx, g_inter, g_pred, g_tgt, g_saved):
    if not ctx.needs_input_grad[0]:
        return None, None, None, None, None, None

    def kernel(*args):
        return torch.ops.phidice.fused_sums_backward(*args, ctx.activation, ctx.backend)

    return _gradient(ctx, g_inter, g_pred, kernel), None, None, None, None, None


fused_sums.register_autograd(_backward, setup_context=_setup_context)


def _no_second_derivative(ctx, grad):
    raise RuntimeError(
        "the fused Dice gradient is once-differentiable: trying to differentiate twice (the kernels' "
        "gradient has no graph); use fused=False for second derivatives"
    )


def _setup_nothing(ctx, inputs, output):
    pass


fused_sums_backward.register_autograd(_no_second_derivative, setup_context=_setup_nothing)


class EagerFusedSums(torch.autograd.Function):
    """(I, P, Y) as ``fused_sums`` gives them, in eager mode on real tensors, without the dispatcher; with a
    gradient to come, a backend with ``STORES_PROBABILITIES`` keeps p for an in-place backward."""

    @staticmethod
    def forward(ctx, logits, labels, mask, activation, backend, check_range):
        stores = ctx.needs_input_grad[0] and getattr(_BACKENDS[backend], "STORES_PROBABILITIES", False)
        ctx.probs = _buffer_like(logits) if stores else None
        inter, pred, tgt, saved = _forward(logits, labels, mask, activation, backend, check_range, ctx.probs)
        _save(ctx, logits, labels, saved, mask, activation, backend)
        ctx.mark_non_differentiable(tgt)
        return inter, pred, tgt

    @staticmethod
    def backward(ctx, g_inter, g_pred, g_tgt):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None, None

        def kernel(*args):
            return _BACKENDS[ctx.backend].backward(*args, ctx.activation)

        return _gradient(ctx, g_inter, g_pred, kernel), None, None, None, None, None


def _buffer_like(logits: torch.Tensor) -> torch.Tensor:
    """The stored-probabilities buffer: pooled on the CPU (:mod:`phidice.kernels.buffers`: no page faults
    for a buffer of the same size in every step)."""
    if logits.device.type == "cpu":
        return buffers.empty(tuple(logits.shape), logits.dtype)
    return torch.empty_like(logits)


def _eager(*tensors) -> bool:
    """Real tensors outside a compiler: no fake, functional or other subclass that the kernels cannot read."""
    return not is_compiling() and all(t is None or type(t) is torch.Tensor for t in tensors)


class FusedDiceStats:
    """``apply(logits, labels, mask, activation, backend, check_range=False)`` → (I, P, Y): the forward op with the
    saved labels dropped (:class:`EagerFusedSums` in eager mode); ``backend`` a name or a backend module."""

    @staticmethod
    def apply(logits, labels, mask, activation, backend, check_range=False):
        name = backend if isinstance(backend, str) else _name_of(backend)
        if _eager(logits, labels, mask):
            return EagerFusedSums.apply(logits, labels, mask, activation, name, check_range)
        inter, pred, tgt, _ = torch.ops.phidice.fused_sums(logits, labels, mask, activation, name, check_range)
        return inter, pred, tgt


def _name_of(module) -> str:
    for name, known in _BACKENDS.items():
        if known is module:
            return name
    raise ValueError(f"{module!r} is not a registered fused backend ({', '.join(_BACKENDS)})")
